//! edgeswarm-cli
