//! Agents: the behaviour a host implements, the actor that runs it, and the supervisor
//! that restarts it one-for-one within a budget.

use crate::ctx::AgentCtx;
use crate::error::{Error, Result};
use crate::swarm::SwarmInner;
use edgeswarm_core::Metric;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore};

/// Error type agent behaviours return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a finished task reports, for the automatic `agent_metrics` row.
#[derive(Debug, Clone, Default)]
pub struct TaskReport {
    /// Task type recorded in `agent_metrics.task_type` (default: "task").
    pub task_type: Option<String>,
    /// Tokens the task used, if the behaviour knows.
    pub tokens_used: i64,
}

impl TaskReport {
    pub fn new(task_type: impl Into<String>, tokens_used: i64) -> Self {
        TaskReport {
            task_type: Some(task_type.into()),
            tokens_used,
        }
    }
}

/// The behaviour a host implements. A restart builds a fresh clone of the behaviour as
/// it was given to `spawn_agent` (like OTP restarting a child with its start args).
pub trait Agent: Clone + Send + Sync + 'static {
    /// The task message type this agent accepts.
    type Task: Send + 'static;

    /// Called once when the agent starts (and after each restart).
    fn on_start(&mut self, _ctx: &AgentCtx) -> impl std::future::Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }
    /// Handles one task. An `Err` is recorded and the agent goes on; a panic restarts it.
    fn on_task(&mut self, ctx: &AgentCtx, task: Self::Task) -> impl std::future::Future<Output = Result<TaskReport, BoxError>> + Send;
    /// Called when the agent stops cleanly.
    fn on_stop(&mut self, _ctx: &AgentCtx) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

/// One-for-one restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `within`; one more stops the agent for good. Default 3.
    pub max_restarts: usize,
    /// The sliding window. Default 10 s.
    pub within: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(10),
        }
    }
}

/// Options for one agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub restart: RestartPolicy,
    /// Tasks that may wait in the agent's mailbox. Default 1024. A full mailbox makes
    /// `send` fail with `MailboxFull` at once, so one slow agent never blocks others.
    pub mailbox: usize,
    /// Record an `agent_metrics` row for every task. Default true.
    pub record_task_metrics: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            restart: RestartPolicy::default(),
            mailbox: 1024,
            record_task_metrics: true,
        }
    }
}

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Running,
    Restarting,
    Stopped,
}

/// Per-agent counters.
#[derive(Debug, Default)]
pub struct AgentCounters {
    pub tasks_ok: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub restarts: AtomicU64,
    /// Tasks lost because the agent crashed with them in its mailbox.
    pub tasks_dropped: AtomicU64,
    /// The last task error or crash reason, for `AgentInfo::last_error` (dashboard,
    /// status): a counter says that something failed, this says what.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl AgentCounters {
    pub(crate) fn set_last_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Lifecycle events, broadcast on `Swarm::events`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SwarmEvent {
    AgentStarted { id: String },
    AgentRestarted { id: String, reason: String, restarts: u64 },
    AgentStopped { id: String, reason: String },
}

/// A snapshot of one agent, from `Swarm::agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub id: String,
    pub region: String,
    pub status: AgentStatus,
    pub tasks_ok: u64,
    pub tasks_failed: u64,
    pub restarts: u64,
    pub mailbox_depth: usize,
    /// The last task error or crash reason (`None` if it never failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Messages the agent actor handles.
pub enum AgentMsg<T> {
    Task(T, OwnedSemaphorePermit),
}

// With ractor's `cluster` feature there is no blanket `Message` impl; this message is
// local-only (never serialized), so the trait's defaults are right.
#[cfg(feature = "cluster")]
impl<T: Send + 'static> ractor::Message for AgentMsg<T> {}

/// Typed sender kept in the registry (behind `Any` so agents of different task types
/// share one map).
pub(crate) struct TaskSender<T: Send + 'static> {
    pub actor: RwLock<Option<ActorRef<AgentMsg<T>>>>,
    pub permits: Arc<Semaphore>,
    pub capacity: usize,
}

/// Type-erased parts of a registry entry.
pub(crate) struct AgentEntry {
    pub id: String,
    pub region: String,
    pub status: std::sync::Mutex<AgentStatus>,
    pub counters: Arc<AgentCounters>,
    pub options: AgentOptions,
    /// `TaskSender<A::Task>`, downcast by `Swarm::send`.
    pub sender: Arc<dyn std::any::Any + Send + Sync>,
    pub task_type_name: &'static str,
    /// Starts a fresh actor for this agent under the given supervisor.
    pub respawn: Arc<dyn Fn(ActorCell) -> futures::future::BoxFuture<'static, Result<ActorCell>> + Send + Sync>,
    /// Current actor cell (to match supervision events and to stop it).
    pub cell: std::sync::Mutex<Option<ActorCell>>,
    pub restarts: std::sync::Mutex<VecDeque<Instant>>,
    pub mailbox_depth: Box<dyn Fn() -> usize + Send + Sync>,
}

/// The actor running one behaviour. Read-only config: the id and swarm link.
pub(crate) struct AgentActor<A: Agent> {
    pub ctx: AgentCtx,
    pub counters: Arc<AgentCounters>,
    pub record_metrics: bool,
    pub _p: std::marker::PhantomData<fn() -> A>,
}

pub(crate) struct AgentState<A> {
    behaviour: A,
}

impl<A: Agent> Actor for AgentActor<A> {
    type Msg = AgentMsg<A::Task>;
    type State = AgentState<A>;
    type Arguments = A;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, mut behaviour: A) -> Result<AgentState<A>, ActorProcessingErr> {
        behaviour.on_start(&self.ctx).await.map_err(|e| format!("on_start failed: {e}"))?;
        Ok(AgentState { behaviour })
    }

    async fn handle(&self, _me: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut AgentState<A>) -> Result<(), ActorProcessingErr> {
        let AgentMsg::Task(task, permit) = msg;
        let started = Instant::now();
        let r = state.behaviour.on_task(&self.ctx, task).await;
        drop(permit);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (task_type, tokens, err) = match r {
            Ok(rep) => {
                self.counters.tasks_ok.fetch_add(1, Ordering::Relaxed);
                (rep.task_type.unwrap_or_else(|| "task".into()), rep.tokens_used, None)
            }
            Err(e) => {
                self.counters.tasks_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(agent = %self.ctx.id(), error = %e, "task failed");
                self.counters.set_last_error(format!("task failed: {e}"));
                ("task".to_string(), 0, Some(e.to_string()))
            }
        };
        if self.record_metrics {
            let mut m = Metric::new(self.ctx.id(), task_type, ms, tokens).region(self.ctx.region());
            if let Some(e) = err {
                m.extra = Some(serde_json::json!({ "error": e }));
            }
            // Queued without waiting for the commit so the agent is not slowed by
            // fsync; a failure is logged, never silent.
            if let Some(swarm) = self.ctx.swarm_inner() {
                match swarm.store.enqueue_record(m).await {
                    Ok(ack) => {
                        tokio::spawn(async move {
                            if let Err(e) = ack.wait().await {
                                tracing::error!(error = %e, "task metric not stored");
                            }
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "task metric not queued"),
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, state: &mut AgentState<A>) -> Result<(), ActorProcessingErr> {
        state.behaviour.on_stop(&self.ctx).await;
        Ok(())
    }
}

/// Restarts failed agents one-for-one within their policy.
pub(crate) struct AgentSupervisor {
    pub swarm: Weak<SwarmInner>,
}

impl Actor for AgentSupervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(&self, me: ActorRef<()>, evt: SupervisionEvent, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let Some(swarm) = self.swarm.upgrade() else {
            return Ok(());
        };
        let (cell, failure) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            // A clean stop (shutdown or stop_agent) is not a failure, whatever its reason.
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let Some(entry) = swarm.entry_by_cell(&cell) else {
            return Ok(());
        };
        let Some(reason) = failure else {
            // Clean stop (shutdown or stop_agent).
            *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Stopped;
            return Ok(());
        };
        let now = Instant::now();
        let allowed = {
            let mut r = entry.restarts.lock().unwrap_or_else(|p| p.into_inner());
            r.retain(|t| now.duration_since(*t) < entry.options.restart.within);
            if r.len() < entry.options.restart.max_restarts && !swarm.is_shutting_down() {
                r.push_back(now);
                true
            } else {
                false
            }
        };
        entry.counters.set_last_error(format!("crashed: {reason}"));
        let dropped = (entry.mailbox_depth)() as u64;
        entry.counters.tasks_dropped.fetch_add(dropped, Ordering::Relaxed);
        if !allowed {
            *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Stopped;
            let why = format!(
                "crashed more than {} times within {:?}; last failure: {reason}",
                entry.options.restart.max_restarts, entry.options.restart.within
            );
            tracing::error!(agent = %entry.id, %why, "agent stopped");
            swarm.emit(SwarmEvent::AgentStopped {
                id: entry.id.clone(),
                reason: why,
            });
            return Ok(());
        }
        *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Restarting;
        let n = entry.counters.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(agent = %entry.id, %reason, restarts = n, "restarting agent");
        match (entry.respawn)(me.get_cell()).await {
            Ok(new_cell) => {
                *entry.cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(new_cell);
                *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Running;
                swarm.emit(SwarmEvent::AgentRestarted {
                    id: entry.id.clone(),
                    reason,
                    restarts: n,
                });
            }
            Err(e) => {
                *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Stopped;
                swarm.emit(SwarmEvent::AgentStopped {
                    id: entry.id.clone(),
                    reason: format!("restart failed: {e}"),
                });
            }
        }
        Ok(())
    }
}

impl<T: Send + 'static> TaskSender<T> {
    pub(crate) async fn try_send(&self, id: &str, task: T) -> Result<()> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| Error::MailboxFull {
            id: id.to_string(),
            capacity: self.capacity,
        })?;
        self.deliver(id, task, permit).await
    }

    pub(crate) async fn send_wait(&self, id: &str, task: T) -> Result<()> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::AgentStopped(id.to_string()))?;
        self.deliver(id, task, permit).await
    }

    async fn deliver(&self, id: &str, task: T, permit: OwnedSemaphorePermit) -> Result<()> {
        let actor = self.actor.read().await;
        match actor.as_ref() {
            Some(a) => a
                .cast(AgentMsg::Task(task, permit))
                .map_err(|_| Error::AgentStopped(id.to_string())),
            None => Err(Error::AgentStopped(id.to_string())),
        }
    }
}
