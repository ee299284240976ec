//! edgeswarm-testkit
