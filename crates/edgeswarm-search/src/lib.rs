//! edgeswarm-search
