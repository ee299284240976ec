//! `StorageActor` and its supervisor.
//!
//! The StorageActor owns the writer thread (and so the only write connection). The hot
//! path does not go through ractor's mailbox, which is unbounded: publishers put writes
//! on the actor's bounded queue (`queue.rs`), which the writer thread drains. The actor
//! is the lifecycle: it starts the thread, learns when the thread dies, fails every
//! write still queued, and fails itself so `StoreSupervisor` restarts it with a fresh
//! connection and queue. Mailboxes die with their actor; durability lives in the file.

use crate::conn::{self, CachedConn};
use crate::error::{Result, StoreError};
use crate::queue::{self, QueueSender};
use crate::writer::{CommitEvent, Faults, KnowledgeWriter, Writer, WriterMsg, WriterStats};
use edgeswarm_core::{HybridClock, StoreConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Restarts allowed within `RESTART_WINDOW` before the supervisor gives up and closes
/// the store (a writer that keeps dying means the disk or file is broken).
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Where the current writer queue is; publishers follow it across restarts.
#[derive(Clone)]
pub enum Inbox {
    Running {
        tx: QueueSender<WriterMsg>,
        generation: u64,
    },
    /// The writer died and is being restarted; wait for `Running`.
    Restarting {
        generation: u64,
    },
    /// Shut down, or the supervisor gave up (`reason`).
    Closed {
        reason: Option<String>,
    },
}

/// Read-only setup shared by every generation of the StorageActor.
pub struct WriterSetup {
    pub cfg: StoreConfig,
    pub clock: Arc<HybridClock>,
    pub origin: String,
    pub events: broadcast::Sender<Arc<CommitEvent>>,
    pub inbox: watch::Sender<Inbox>,
    pub faults: Arc<Faults>,
    pub stats: Arc<WriterStats>,
    /// The knowledge writer edgeswarm-search installs (`Store::install_knowledge_writer`);
    /// shared so it survives writer restarts.
    pub knowledge: Arc<OnceLock<KnowledgeWriter>>,
    /// Generations started so far (restarts = generations - 1).
    pub generations: AtomicU64,
}

pub struct StorageActor;

pub struct StorageState {
    setup: Arc<WriterSetup>,
    /// Our clone of the queue's receiver, used to drain it if the writer dies.
    rx: crossbeam_channel::Receiver<queue::Slot<WriterMsg>>,
    tx: QueueSender<WriterMsg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub enum StorageMsg {
    /// The writer thread ended; `panic` holds the panic message if it crashed.
    WriterExited { panic: Option<String> },
}

// With ractor's `cluster` feature there is no blanket `Message` impl; this message is
// local-only (never serialized), so the trait's defaults are right.
#[cfg(feature = "cluster")]
impl ractor::Message for StorageMsg {}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Actor for StorageActor {
    type Msg = StorageMsg;
    type State = StorageState;
    type Arguments = Arc<WriterSetup>;

    async fn pre_start(&self, myself: ActorRef<StorageMsg>, setup: Arc<WriterSetup>) -> Result<StorageState, ActorProcessingErr> {
        let generation = setup.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = queue::bounded_bytes::<WriterMsg>("storage_writer", setup.cfg.queue_capacity, setup.cfg.queue_bytes);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
        let s = setup.clone();
        let thread_rx = rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("edgeswarm-writer-{generation}"))
            .spawn(move || {
                let opened = conn::open_writer_vfs(&s.cfg.path, s.cfg.durability, s.cfg.vfs.as_deref())
                    .and_then(|(db, c)| conn::set_cache(&c, &s.cfg.path, s.cfg.cache.writer_kib, None).map(|_| (db, c)));
                let (db, c) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let writer = Writer {
                    cfg: s.cfg.clone(),
                    conn: CachedConn::new(db, c),
                    clock: s.clock.clone(),
                    origin: s.origin.clone(),
                    rx: thread_rx,
                    events: s.events.clone(),
                    faults: s.faults.clone(),
                    stats: s.stats.clone(),
                    knowledge: s.knowledge.clone(),
                    checkpoint: None,
                    since_checkpoint: 0,
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run()));
                let panic = r.err().map(|p| panic_message(&*p));
                if let Some(p) = &panic {
                    tracing::error!(panic = %p, "storage writer crashed; its batch rolled back");
                }
                let _ = myself.cast(StorageMsg::WriterExited { panic });
            })?;
        ready_rx.await.map_err(|_| "writer thread died while opening")??;
        setup.inbox.send_replace(Inbox::Running {
            tx: tx.clone(),
            generation,
        });
        tracing::info!(generation, "storage actor started");
        Ok(StorageState {
            setup,
            rx,
            tx,
            thread: Some(thread),
        })
    }

    async fn handle(&self, myself: ActorRef<StorageMsg>, msg: StorageMsg, state: &mut StorageState) -> Result<(), ActorProcessingErr> {
        match msg {
            StorageMsg::WriterExited { panic: None } => {
                if let Some(t) = state.thread.take() {
                    let _ = tokio::task::spawn_blocking(move || t.join()).await;
                }
                myself.stop(Some("writer shut down".into()));
                Ok(())
            }
            StorageMsg::WriterExited { panic: Some(p) } => {
                let generation = state.setup.generations.load(Ordering::SeqCst);
                state.setup.inbox.send_replace(Inbox::Restarting { generation });
                state.tx.close();
                let mut failed = 0;
                while let Ok(slot) = state.rx.try_recv() {
                    slot.item.fail(StoreError::WriterCrashed(p.clone()));
                    failed += 1;
                }
                tracing::warn!(failed, "failed every queued write after a writer crash");
                Err(format!("storage writer crashed: {p}").into())
            }
        }
    }
}

/// Restarts the StorageActor when it fails, within a budget.
pub struct StoreSupervisor;

pub struct SupervisorState {
    setup: Arc<WriterSetup>,
    restarts: VecDeque<Instant>,
}

impl Actor for StoreSupervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = Arc<WriterSetup>;

    async fn pre_start(&self, myself: ActorRef<()>, setup: Arc<WriterSetup>) -> Result<SupervisorState, ActorProcessingErr> {
        Actor::spawn_linked(None, StorageActor, setup.clone(), myself.get_cell()).await?;
        Ok(SupervisorState {
            setup,
            restarts: VecDeque::new(),
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(_, err) => {
                let now = Instant::now();
                state.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                if state.restarts.len() >= MAX_RESTARTS {
                    let reason = format!("storage writer crashed {MAX_RESTARTS} times within {RESTART_WINDOW:?}; last: {err}. Check the disk and the database file (edgeswarm doctor)");
                    tracing::error!(%reason, "giving up on the storage writer");
                    state.setup.inbox.send_replace(Inbox::Closed { reason: Some(reason) });
                    myself.stop(None);
                    return Ok(());
                }
                state.restarts.push_back(now);
                tracing::warn!(%err, "restarting storage actor");
                if let Err(e) = Actor::spawn_linked(None, StorageActor, state.setup.clone(), myself.get_cell()).await {
                    let reason = format!("storage writer could not restart: {e}");
                    state.setup.inbox.send_replace(Inbox::Closed { reason: Some(reason) });
                    myself.stop(None);
                }
            }
            SupervisionEvent::ActorTerminated(..) => {
                // Clean exit only happens on shutdown.
                state.setup.inbox.send_replace(Inbox::Closed { reason: None });
                myself.stop(None);
            }
            _ => {}
        }
        Ok(())
    }
}
