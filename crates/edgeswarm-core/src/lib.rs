//! Core types shared by every edgeswarm crate: ids, the hybrid logical clock, record
//! types, consistency levels, configuration and validation errors. No I/O lives here.

pub mod config;
pub mod consistency;
pub mod error;
pub mod hlc;
pub mod id;
pub mod latency;
pub mod record;

pub use config::{BatchConfig, CacheConfig, ChannelConfig, ChannelStats, Durability, Limits, RetentionConfig, StoreConfig};
pub use consistency::{ReadConsistency, WriteConsistency};
pub use error::ValidationError;
pub use hlc::{Hlc, HybridClock};
pub use id::new_id;
pub use latency::{LatencyHistogram, LatencySummary, SharedLatency};
pub use record::{Knowledge, KvEntry, Message, Metric, Record};
