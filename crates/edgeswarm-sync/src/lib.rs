//! edgeswarm-sync
