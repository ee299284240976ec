//! The edgeswarm home store: schema and migrations, the batching `StorageActor` (single
//! writer, group commit, acks after COMMIT), the `ReadPool`, the change log and the SQL
//! guard. See docs/ARCHITECTURE.md for the write path.

pub mod actor;
pub mod checkpoint;
pub mod conn;
pub mod conversations;
pub mod error;
pub mod files;
pub mod guard;
pub mod inspect;
pub mod kv;
pub mod metrics;
pub mod queue;
pub mod raw;
pub mod read_pool;
pub mod retention;
pub mod schema;
pub mod store;
pub mod value;
pub mod writer;

pub use error::{Result, SqliteFailure, StoreError};
pub use read_pool::Reader;
pub use retention::Swept;
pub use store::{PendingAck, Store, StoreStats};
pub use value::{QueryResult, SqlValue};
pub use writer::{ChangeRef, CommitEvent, Inserted, KnowledgeWriter, OpOutput, TxCtx, WriteOp};
