//! edgeswarm
