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
pub mod error;
pub mod memory;
pub mod sim;
pub mod swarm;

pub use agent::{Agent, AgentInfo, AgentOptions, AgentStatus, BoxError, RestartPolicy, SwarmEvent, TaskReport};
pub use ctx::AgentCtx;
pub use edgeswarm_core::{
    self as core, BatchConfig, Durability, Hlc, Knowledge, KvEntry, Limits, Message, Metric, ReadConsistency, StoreConfig, WriteConsistency,
};
pub use edgeswarm_search::{
    self as search, Embedder, EmbedderChoice, Filters, HashEmbedder, Mode, SearchConfig, SearchHit, SearchRequest, SearchResponse,
    SharedEmbedder,
};
pub use edgeswarm_store::{self as store, kv::CasOutcome, QueryResult, SqlValue, Store, StoreError};
pub use edgeswarm_sync::{self as sync, LinkProfile, ReadTarget, RegionConfig, Replicated, SyncConfig, SyncHandle, SyncStatus};
pub use error::{Error, Result};
pub use memory::{KvChange, KvWatch, Page};
pub use swarm::{KnowledgeHit, MetricAgg, MetricsSummary, Swarm, SwarmBuilder};
