//! edgeswarm: an actor runtime for agent swarms. Agents publish metrics, conversations
//! and knowledge through a supervised storage actor that batches writes into libSQL.
//!
//! ```no_run
//! use edgeswarm::{Agent, AgentCtx, BoxError, Knowledge, Swarm, TaskReport};
//!
//! #[derive(Clone)]
//! struct Analyst;
//! impl Agent for Analyst {
//!     type Task = String;
//!     async fn on_task(&mut self, ctx: &AgentCtx, file: String) -> Result<TaskReport, BoxError> {
//!         ctx.add_knowledge(Knowledge::new("code", file, "no issues found")).await?;
//!         Ok(TaskReport::new("code-analysis", 120))
//!     }
//! }
//!
//! # async fn run() -> edgeswarm::Result<()> {
//! let swarm = Swarm::builder().path("./edgeswarm.db").start().await?;
//! swarm.spawn_agent("analyst-1", "us-west-2", Analyst).await?;
//! swarm.send("analyst-1", "src/main.rs".to_string()).await?;
//! let hits = swarm.search_knowledge("issues", 5).await?;
//! swarm.shutdown().await?;
//! # Ok(()) }
//! ```

/// The README's code blocks, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod agent;
pub mod ctx;
pub mod dashboard;
pub mod error;
pub mod memory;
pub mod swarm;

pub use agent::{Agent, AgentInfo, AgentOptions, AgentStatus, BoxError, RestartPolicy, SwarmEvent, TaskReport};
pub use ctx::AgentCtx;
pub use dashboard::{Dashboard, DashboardConfig, DashboardError};
// The types hosts need to call the `Swarm` API, named one by one: the lower crates stay
// behind the facade (reach them through `Swarm`'s methods, not their modules).
pub use edgeswarm_core::record::now_millis;
pub use edgeswarm_core::{
    BatchConfig, CacheConfig, ChannelConfig, ChannelStats, Durability, Hlc, Knowledge, KvEntry, Limits, Message, Metric, ReadConsistency,
    Record, RetentionConfig, StoreConfig, ValidationError, WriteConsistency,
};
pub use edgeswarm_search::{
    AddOutcome, Embedder, EmbedderChoice, Filters, HashEmbedder, JsonScalar, KnowledgeEntry, KnowledgeUpdate, Mode, Search, SearchConfig,
    SearchError, SearchHit, SearchRequest, SearchResponse, SearchStatus, SharedEmbedder,
};
pub use edgeswarm_store::inspect::{ColumnInfo, DatabaseInfo, ForeignKeyInfo, IndexInfo, RegionRow, TableDescription, TableInfo};
pub use edgeswarm_store::{kv::CasOutcome, QueryResult, SqlValue, Store, StoreError, StoreStats, Swept};
pub use edgeswarm_sync::link::tls::redact_url;
pub use edgeswarm_sync::{
    HranaLink, LinkProfile, ReadTarget, RegionConfig, RegionLink, RegionRemoved, Replicated, SyncConfig, SyncError, SyncHandle, SyncStatus,
    TlsMode,
};
pub use error::{Error, ErrorKind, Result};

/// Whole-file operations that start no swarm: a consistent backup copy, files written
/// atomically beside their destination, the check that a destination is not the
/// database, and the read-only probes behind `edgeswarm doctor` (nothing is migrated or
/// written).
pub mod files {
    pub use edgeswarm_store::files::{
        backup, backup_checked, orphan_wal_bytes, probe_engine, probe_file, probe_readable, refuse_database_path, AtomicFile, BackupReport,
        EngineProbe, FileOpError, FileProbe,
    };
    /// The schema version this build creates and migrates to.
    pub use edgeswarm_store::schema::SCHEMA_VERSION;
}
pub use memory::{KvChange, KvWatch, Page};
pub use swarm::{ImportCounts, ImportProgress, KnowledgeHit, MetricAgg, MetricsSummary, Swarm, SwarmBuilder};
