//! edgeswarm-mcp
