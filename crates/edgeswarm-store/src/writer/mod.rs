//! The writer: the only code that writes the home file. Runs on a dedicated OS thread,
//! drains the bounded write queue into batches and commits each batch as one transaction
//! (group commit), then acks every sender, then publishes the commit event. An ack is
//! sent only after COMMIT returned.
//!
//! - `api`: the ops, replies and events callers see (`WriteOp`, `OpOutput`, `Inserted`,
//!   `CommitEvent`, `KnowledgeWriter`, `Faults`).
//! - `tx`: the open transaction as ops see it (`TxCtx`) and the batch's change log.
//! - `thread`: the writer thread's loop (drain, batch, BEGIN/COMMIT, acks, events).
//! - `records`: per-record SQL for conversations and agent_metrics.
//! - `stats`: the writer's counters.
//!
//! Opening and migrating the file is `schema::bootstrap`; knowledge SQL is in
//! edgeswarm-search (installed as the `KnowledgeWriter`); kv SQL is in `kv.rs`.

mod api;
mod records;
mod stats;
mod thread;
mod tx;

pub use api::{Ack, ChangeRef, CommitEvent, Faults, Inserted, KnowledgeWriter, OpOutput, TxFn, WriteOp, WriterMsg};
pub use stats::WriterStats;
pub use thread::Writer;
pub use tx::{BatchLog, TxCtx, APPEND_ONLY};
