//! What callers of the writer see: the write ops, the replies, the queue message, the
//! commit event, the knowledge-writer slot and the fault hooks. No SQL lives here.

use super::tx::TxCtx;
use crate::error::{Result, StoreError};
use crate::value::{QueryResult, SqlValue};
use edgeswarm_core::{Knowledge, Record};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A custom operation run inside a batch transaction, in its own savepoint: if it
/// returns an error only its own changes roll back and only its caller is told. Its
/// output is boxed here and unboxed to its own type by `Store::transact`.
pub type TxFn = Box<dyn FnOnce(&mut TxCtx<'_>) -> Result<Box<dyn Any + Send>> + Send>;

/// Writes one knowledge record inside the batch transaction. Knowledge SQL, with its
/// dedup by content hash, is defined in edgeswarm-search, which installs it on a store
/// (`edgeswarm_search::knowledge::install`); the writer only calls it. Like every
/// op it runs in its own savepoint: an error fails only its record.
pub type KnowledgeWriter = Arc<dyn Fn(&mut TxCtx<'_>, Knowledge) -> Result<Inserted> + Send + Sync>;

/// One write.
pub enum WriteOp {
    /// Insert a typed record; a second insert with the same id is a no-op (`duplicate`).
    Record(Record),
    /// A raw SQL write (already checked by the SQL guard).
    Sql { sql: String, params: Vec<SqlValue> },
    /// Custom logic (kv compare-and-swap, knowledge updates, replication apply, ...).
    Txn(TxFn),
}

impl WriteOp {
    /// Roughly how many bytes the op writes, to bound a batch (`BatchConfig::max_bytes`)
    /// and the queue (`StoreConfig::queue_bytes`).
    pub fn approx_bytes(&self) -> usize {
        match self {
            WriteOp::Record(r) => r.approx_bytes(),
            WriteOp::Sql { sql, params } => sql.len() + params.len() * 16,
            WriteOp::Txn(_) => 256,
        }
    }
}

/// What a committed record insert returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// True when nothing new was stored: a record with this id already existed, or (for
    /// knowledge) the same normalised content in the same category did, and the new
    /// record's tags and metadata were merged into it.
    pub duplicate: bool,
}

/// What a committed write returns to the writer's ack; callers get it already unpacked
/// (`PendingAck<T>`, `Store::transact::<T>`).
pub enum OpOutput {
    /// A record insert.
    Inserted(Inserted),
    /// A raw SQL statement's result.
    Sql(QueryResult),
    /// A custom op's output, boxed; `Store::transact` unboxes it to the op's own type.
    Txn(Box<dyn Any + Send>),
    /// Nothing to report (flush, shutdown).
    Unit,
}

impl std::fmt::Debug for OpOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpOutput::Inserted(i) => f.debug_tuple("Inserted").field(i).finish(),
            OpOutput::Sql(r) => f.debug_tuple("Sql").field(r).finish(),
            OpOutput::Txn(_) => f.write_str("Txn(..)"),
            OpOutput::Unit => f.write_str("Unit"),
        }
    }
}

impl OpOutput {
    /// A record insert's reply, or `Internal` for any other reply.
    pub fn into_inserted(self) -> Result<Inserted> {
        match self {
            OpOutput::Inserted(i) => Ok(i),
            other => Err(unexpected("a record insert", &other)),
        }
    }
    /// A raw SQL write's result, or `Internal` for any other reply.
    pub fn into_sql(self) -> Result<QueryResult> {
        match self {
            OpOutput::Sql(r) => Ok(r),
            other => Err(unexpected("a SQL write", &other)),
        }
    }
    /// A custom op's output as `T`, or `Internal` for any other reply.
    pub fn into_txn<T: 'static>(self) -> Result<T> {
        match self {
            OpOutput::Txn(b) => b.downcast::<T>().map(|b| *b).map_err(|_| {
                StoreError::Internal(format!(
                    "a custom op replied with a value that is not a {}",
                    std::any::type_name::<T>()
                ))
            }),
            other => Err(unexpected("a custom op", &other)),
        }
    }
    /// The reply itself (for `Store::enqueue` of any op).
    pub fn into_output(self) -> Result<OpOutput> {
        Ok(self)
    }
    /// Discards the reply.
    pub fn into_unit(self) -> Result<()> {
        Ok(())
    }
}

fn unexpected(what: &str, got: &OpOutput) -> StoreError {
    StoreError::Internal(format!("the writer replied {got:?} to {what}"))
}

/// The reply channel of one write.
pub type Ack = oneshot::Sender<Result<OpOutput>>;

/// A message on the writer queue.
pub enum WriterMsg {
    /// A write and where to send its reply.
    Op { op: WriteOp, ack: Ack },
    /// Acked once every write queued before it is committed.
    Flush { ack: Ack },
    /// Commit what is queued before it, ack, and exit the thread.
    Shutdown { ack: Ack },
}

impl WriterMsg {
    /// What the message counts against the queue's byte budget (0 for flush and shutdown).
    pub fn approx_bytes(&self) -> usize {
        match self {
            WriterMsg::Op { op, .. } => op.approx_bytes(),
            WriterMsg::Flush { .. } | WriterMsg::Shutdown { .. } => 0,
        }
    }
    /// Fails the message's sender with `err` (used when a queue is drained on a crash).
    pub fn fail(self, err: StoreError) {
        let ack = match self {
            WriterMsg::Op { ack, .. } | WriterMsg::Flush { ack } | WriterMsg::Shutdown { ack } => ack,
        };
        let _ = ack.send(Err(err));
    }
}

/// A reference to one changed row, as broadcast after commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRef {
    /// The table the row is in.
    pub tbl: &'static str,
    /// The row's `_changes.row_id` (its id; `namespace\x1fkey` for kv).
    pub row_id: String,
}

/// Published after every committed batch, once its writers are acked.
#[derive(Debug, Clone)]
pub struct CommitEvent {
    /// `_changes.seq` of the last change in this batch (0 if the batch logged none).
    pub last_seq: i64,
    /// Rows changed, in commit order.
    pub changes: Vec<ChangeRef>,
    /// Raw SQL writes in this batch (they may touch any table).
    pub raw_sql: bool,
}

/// Test-only fault hooks (set through `Store::faults` with the `fault-injection` feature).
#[derive(Debug)]
pub struct Faults {
    /// Panic after applying this many more ops inside a batch (< 0: off).
    pub panic_after_ops: AtomicI64,
    /// Fail the next COMMIT as if the disk refused it.
    pub fail_next_commit: AtomicBool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            panic_after_ops: AtomicI64::new(-1),
            fail_next_commit: AtomicBool::new(false),
        }
    }
}
