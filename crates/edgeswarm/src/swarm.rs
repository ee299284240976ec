//! `Swarm`: the handle hosts embed. Starts the store, the agent supervisor and the
//! background loops; spawns and addresses agents; serves memory and metrics.

use crate::agent::{
    Agent, AgentActor, AgentCounters, AgentEntry, AgentInfo, AgentOptions, AgentStatus, AgentSupervisor, SwarmEvent, TaskSender,
};
use crate::ctx::AgentCtx;
use crate::error::{Error, Result};
use crate::memory::{watch_loop, KvWatch, Page, Watcher};
use dashmap::DashMap;
use edgeswarm_core::{BatchConfig, CacheConfig, Durability, Knowledge, KvEntry, Limits, Message, Metric, RetentionConfig, StoreConfig};
use edgeswarm_core::{LatencyHistogram, ReadConsistency, Record, SharedLatency, WriteConsistency};
use edgeswarm_search::{
    knowledge, EmbedderChoice, KnowledgeEntry, KnowledgeUpdate, Search, SearchConfig, SearchRequest, SearchResponse, SharedEmbedder,
};
use edgeswarm_store::inspect::{self, DatabaseInfo, RegionRow, TableDescription, TableInfo};
use edgeswarm_store::kv::CasOutcome;
use edgeswarm_store::{conversations, metrics, Inserted, QueryResult, SqlValue, Store, StoreStats};
use edgeswarm_sync::{ReadTarget, RegionConfig, Replicated, SyncConfig, SyncHandle, SyncStatus, SyncSystem};
use ractor::{Actor, ActorCell, ActorId, ActorRef};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, RwLock, Semaphore};

/// Builds a swarm. Every setting has a documented default.
#[derive(Clone)]
pub struct SwarmBuilder {
    store: StoreConfig,
    agent_defaults: AgentOptions,
    /// How often expired kv entries are deleted for good. Default 1 s.
    kv_sweep_interval: Duration,
    /// The search actor's settings. Default: no embedder (lexical search, no vector
    /// work): the hash embedder measured worse than lexical on LoCoMo (see
    /// `EmbedderChoice`), so it is opt-in.
    search: SearchConfig,
    /// The embedder asked for by name (`embedder_choice`), resolved at `start` so a
    /// missing model fails the start with a clear message. `None`: keep `search.embedder`.
    embedder_choice: Option<EmbedderChoice>,
    /// Edge regions to replicate to, one SyncActor each. Default none (local only).
    regions: Vec<RegionConfig>,
    /// Replication settings (batch sizes, probe intervals, timeouts); see `SyncConfig`.
    sync: SyncConfig,
    /// Start replication even with no region configured, so regions can be added to
    /// the running swarm ([`Swarm::add_region`]). Default false: no region, no sync.
    live_regions: bool,
}

/// Prints a `SearchConfig` (which holds a trait object) by its embedder id.
struct SearchConfigDebug<'a>(&'a SearchConfig);

impl std::fmt::Debug for SearchConfigDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchConfig")
            .field("embedder", &self.0.embedder.as_ref().map(|e| e.id().to_string()))
            .field("cache_capacity", &self.0.cache_capacity)
            .finish()
    }
}

impl Default for SwarmBuilder {
    fn default() -> Self {
        SwarmBuilder {
            store: StoreConfig::default(),
            agent_defaults: AgentOptions::default(),
            kv_sweep_interval: Duration::from_secs(1),
            search: SearchConfig::new(),
            embedder_choice: None,
            regions: Vec::new(),
            sync: SyncConfig::default(),
            live_regions: false,
        }
    }
}

impl std::fmt::Debug for SwarmBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmBuilder")
            .field("store", &self.store)
            .field("agent_defaults", &self.agent_defaults)
            .field("kv_sweep_interval", &self.kv_sweep_interval)
            .field("search", &SearchConfigDebug(&self.search))
            .field("regions", &self.regions.iter().map(|r| &r.name).collect::<Vec<_>>())
            .finish()
    }
}

impl SwarmBuilder {
    /// Adds an edge region (`RegionConfig::local(name, path, latency_ms)` for a libSQL
    /// file behind a simulated link, `RegionConfig::http(name, url, token_env)` for a
    /// Hrana server such as Turso Cloud, sqld or `tursodb --sync-server`).
    pub fn region(mut self, r: RegionConfig) -> Self {
        self.regions.push(r);
        self
    }
    pub fn regions(mut self, rs: impl IntoIterator<Item = RegionConfig>) -> Self {
        self.regions.extend(rs);
        self
    }
    pub fn sync_config(mut self, c: SyncConfig) -> Self {
        self.sync = c;
        self
    }
    /// Starts replication even when no region is configured, so that
    /// [`Swarm::add_region`] works on a swarm that starts with none.
    pub fn live_regions(mut self) -> Self {
        self.live_regions = true;
        self
    }
    /// The search actor's settings (cache size, embedder, rank window).
    pub fn search_config(mut self, c: SearchConfig) -> Self {
        self.search = c;
        self
    }
    /// The embedder for vector and hybrid search (`None`: lexical only).
    pub fn embedder(mut self, e: Option<SharedEmbedder>) -> Self {
        self.search.embedder = e;
        self
    }
    /// The embedder by name (`none`, `hash`, `semantic`), as edgeswarm.toml, the
    /// `EDGESWARM_EMBEDDER` variable and `--embedder` give it. Resolved at `start`:
    /// `semantic` with no installed model fails there, saying how to install it.
    pub fn embedder_choice(mut self, c: EmbedderChoice) -> Self {
        self.embedder_choice = Some(c);
        self
    }
    /// The home libSQL file. Default `./edgeswarm.db`.
    pub fn path(mut self, p: impl Into<PathBuf>) -> Self {
        self.store.path = p.into();
        self
    }
    pub fn durability(mut self, d: Durability) -> Self {
        self.store.durability = d;
        self
    }
    pub fn batch(mut self, b: BatchConfig) -> Self {
        self.store.batch = b;
        self
    }
    pub fn limits(mut self, l: Limits) -> Self {
        self.store.limits = l;
        self
    }
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.store.queue_capacity = n;
        self
    }
    pub fn read_pool_size(mut self, n: usize) -> Self {
        self.store.read_pool_size = n;
        self
    }
    /// How long conversations and metrics are kept (default: forever); see
    /// [`RetentionConfig`]. A sweeper task deletes older rows every
    /// `sweep_interval`, and the sync layer's compaction applies the same rule in every
    /// region.
    pub fn retention(mut self, r: RetentionConfig) -> Self {
        self.store.retention = r;
        self
    }
    /// Page caches and memory map of the home file's connections; see [`CacheConfig`].
    pub fn cache(mut self, c: CacheConfig) -> Self {
        self.store.cache = c;
        self
    }
    /// The whole store config at once.
    pub fn store_config(mut self, c: StoreConfig) -> Self {
        self.store = c;
        self
    }
    /// Default options for agents spawned without their own.
    pub fn agent_defaults(mut self, o: AgentOptions) -> Self {
        self.agent_defaults = o;
        self
    }
    /// How often expired kv entries are deleted for good; `Duration::ZERO` turns the
    /// sweeper off (expired entries still read as absent), as the CLI's inspection
    /// commands do so they leave the file as it was.
    pub fn kv_sweep_interval(mut self, d: Duration) -> Self {
        self.kv_sweep_interval = d;
        self
    }

    /// Opens the home file and starts the runtime.
    pub async fn start(mut self) -> Result<Swarm> {
        if let Some(c) = self.embedder_choice {
            self.search.embedder = c.resolve()?;
        }
        let store = Store::open(self.store.clone()).await?;
        let search = match Search::start(store.clone(), self.search.clone()).await {
            Ok(s) => s,
            Err(e) => {
                let _ = store.shutdown().await;
                return Err(e.into());
            }
        };
        let sync = if self.regions.is_empty() && !self.live_regions {
            None
        } else {
            match SyncSystem::start(store.clone(), self.regions.clone(), self.sync.clone()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    search.stop();
                    let _ = store.shutdown().await;
                    return Err(e.into());
                }
            }
        };
        let (events, _) = broadcast::channel(store.config().channels.swarm_events.max(1));
        let inner = Arc::new_cyclic(|_| SwarmInner {
            store,
            search,
            search_latency: SharedLatency::new(),
            sync,
            agents: DashMap::new(),
            by_actor: DashMap::new(),
            watchers: Arc::new(DashMap::new()),
            next_watch: AtomicU64::new(1),
            events,
            supervisor: RwLock::new(None),
            shutting_down: AtomicBool::new(false),
            agent_defaults: self.agent_defaults.clone(),
        });
        let (sup, _) = Actor::spawn(
            None,
            AgentSupervisor {
                swarm: Arc::downgrade(&inner),
            },
            (),
        )
        .await
        .map_err(|e| Error::Spawn(e.to_string()))?;
        *inner.supervisor.write().await = Some(sup);
        tokio::spawn(watch_loop(Arc::downgrade(&inner), inner.store.subscribe()));
        let weak = Arc::downgrade(&inner);
        let every = self.kv_sweep_interval;
        let sweep = !every.is_zero();
        tokio::spawn(async move {
            if !sweep {
                return;
            }
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.is_shutting_down() {
                    return;
                }
                if let Err(e) = inner.store.kv_sweep_expired().await {
                    tracing::debug!(error = %e, "kv sweep skipped");
                }
            }
        });
        let weak = Arc::downgrade(&inner);
        let retention = inner.store.config().retention.clone();
        tokio::spawn(async move {
            if !retention.enabled() || retention.sweep_interval.is_zero() {
                return;
            }
            let mut t = tokio::time::interval(retention.sweep_interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.is_shutting_down() {
                    return;
                }
                match inner.store.retention_sweep().await {
                    Ok(s) if s != edgeswarm_store::Swept::default() => tracing::debug!(swept = ?s, "retention sweep"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "retention sweep skipped"),
                }
            }
        });
        Ok(Swarm { inner })
    }
}

pub(crate) struct SwarmInner {
    pub store: Store,
    pub search: Search,
    /// Latency of every search through this handle, for the metrics endpoint
    /// (`search_latency_hist`, `search_latency`).
    pub search_latency: SharedLatency,
    pub sync: Option<SyncHandle>,
    pub agents: DashMap<String, Arc<AgentEntry>>,
    pub by_actor: DashMap<ActorId, String>,
    pub watchers: Arc<DashMap<u64, Watcher>>,
    pub next_watch: AtomicU64,
    pub events: broadcast::Sender<SwarmEvent>,
    pub supervisor: RwLock<Option<ActorRef<()>>>,
    pub shutting_down: AtomicBool,
    pub agent_defaults: AgentOptions,
}

impl SwarmInner {
    pub(crate) fn entry_by_cell(&self, cell: &ActorCell) -> Option<Arc<AgentEntry>> {
        let id = self.by_actor.get(&cell.get_id())?.clone();
        self.agents.get(&id).map(|e| e.clone())
    }
    pub(crate) fn emit(&self, e: SwarmEvent) {
        let _ = self.events.send(e);
    }
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// One hit of a knowledge search.
#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeHit {
    pub id: String,
    pub category: String,
    pub topic: String,
    /// A short preview with the matched terms in `[` `]`.
    pub snippet: String,
    pub score: f64,
}

/// count / mean / percentiles of task durations for one group.
#[derive(Debug, Clone, Serialize)]
pub struct MetricAgg {
    pub key: String,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub tokens: i64,
}

/// Aggregates over `agent_metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSummary {
    pub overall: MetricAgg,
    pub by_agent: Vec<MetricAgg>,
    pub by_task_type: Vec<MetricAgg>,
    pub by_region: Vec<MetricAgg>,
}

/// What `Swarm::import_records` stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportCounts {
    /// Knowledge entries newly stored.
    pub knowledge: u64,
    /// Conversation messages newly stored.
    pub conversations: u64,
    /// Other records (metrics) newly stored.
    pub other: u64,
    /// Records whose id was already stored (left as they were).
    pub already_present: u64,
}

impl ImportCounts {
    /// Adds another batch's counts to these.
    pub fn add(&mut self, o: &ImportCounts) {
        self.knowledge += o.knowledge;
        self.conversations += o.conversations;
        self.other += o.other;
        self.already_present += o.already_present;
    }
}

/// Where an import of one source stopped: recorded in `_meta` (key `import:<source>`)
/// after each committed batch, so an interrupted import restarted on the same source
/// continues there instead of from the top. Records are idempotent by id, so the one
/// batch that may have committed after the last recorded position is stored once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportProgress {
    /// Bytes of the source consumed by committed batches.
    pub offset: u64,
    /// Lines of the source consumed by committed batches (blank ones too).
    pub lines: u64,
    /// Records among those lines.
    pub records: u64,
    /// A hash of the first `offset` bytes (FNV-1a 64, hex): a restarted import checks that
    /// the source still begins with them before it skips them.
    pub prefix_hash: String,
    /// What the committed batches stored.
    pub counts: ImportCounts,
}

/// The `_meta` key of an import's progress.
fn import_key(source: &str) -> String {
    format!("import:{source}")
}

/// The runtime handle. Cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<SwarmInner>,
}

impl Swarm {
    pub fn builder() -> SwarmBuilder {
        SwarmBuilder::default()
    }
    pub(crate) fn from_inner(inner: Arc<SwarmInner>) -> Self {
        Swarm { inner }
    }
    /// The home store itself, for the runtime's own tools (benchmarks, the metrics
    /// endpoint). Hosts use the `Swarm` methods (kv, metrics, conversations, knowledge,
    /// SQL, schema), which cover what the store offers.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// Lifecycle events (agent started / restarted / stopped).
    pub fn events(&self) -> broadcast::Receiver<SwarmEvent> {
        self.inner.events.subscribe()
    }

    /// True once `shutdown` has begun (the dashboard then stops sampling).
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shutting_down()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.is_shutting_down() {
            return Err(Error::ShutDown);
        }
        Ok(())
    }

    // ---- agents ---------------------------------------------------------------------

    /// Spawns an agent with the swarm's default options.
    pub async fn spawn_agent<A: Agent>(&self, id: &str, region: &str, behaviour: A) -> Result<()> {
        self.spawn_agent_with(id, region, behaviour, self.inner.agent_defaults.clone())
            .await
    }

    /// Spawns an agent with its own options (restart policy, mailbox size).
    pub async fn spawn_agent_with<A: Agent>(&self, id: &str, region: &str, behaviour: A, options: AgentOptions) -> Result<()> {
        self.check_open()?;
        let limits = &self.inner.store.config().limits;
        edgeswarm_core::record::name("agent id", id, limits)?;
        edgeswarm_core::record::name("region", region, limits)?;
        if options.mailbox == 0 {
            return Err(Error::Invalid("mailbox must hold at least one task".into()));
        }
        let sup = self.inner.supervisor.read().await.clone().ok_or(Error::ShutDown)?;
        let sender = Arc::new(TaskSender::<A::Task> {
            actor: RwLock::new(None),
            permits: Arc::new(Semaphore::new(options.mailbox)),
            capacity: options.mailbox,
        });
        let counters = Arc::new(AgentCounters::default());
        let weak = Arc::downgrade(&self.inner);
        let (sid, sreg) = (id.to_string(), region.to_string());
        let respawn_sender = sender.clone();
        let respawn_counters = counters.clone();
        let record = options.record_task_metrics;
        let respawn = Arc::new(move |sup: ActorCell| {
            let (weak, sid, sreg, behaviour, sender, counters) = (
                weak.clone(),
                sid.clone(),
                sreg.clone(),
                behaviour.clone(),
                respawn_sender.clone(),
                respawn_counters.clone(),
            );
            Box::pin(async move {
                let actor = AgentActor::<A> {
                    ctx: AgentCtx::new(&sid, &sreg, weak.clone()),
                    counters,
                    record_metrics: record,
                    _p: std::marker::PhantomData,
                };
                let (r, _) = Actor::spawn_linked(None, actor, behaviour, sup)
                    .await
                    .map_err(|e| Error::Spawn(e.to_string()))?;
                if let Some(inner) = weak.upgrade() {
                    inner.by_actor.insert(r.get_id(), sid.clone());
                }
                *sender.actor.write().await = Some(r.clone());
                Ok(r.get_cell())
            }) as futures::future::BoxFuture<'static, Result<ActorCell>>
        });
        let permits = sender.permits.clone();
        let cap = options.mailbox;
        let entry = Arc::new(AgentEntry {
            id: id.to_string(),
            region: region.to_string(),
            status: std::sync::Mutex::new(AgentStatus::Running),
            counters,
            options,
            sender,
            task_type_name: std::any::type_name::<A::Task>(),
            respawn: respawn.clone(),
            cell: std::sync::Mutex::new(None),
            restarts: Default::default(),
            mailbox_depth: Box::new(move || cap - permits.available_permits()),
        });
        match self.inner.agents.entry(id.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(_) => return Err(Error::DuplicateAgent(id.to_string())),
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(entry.clone());
            }
        }
        match respawn(sup.get_cell()).await {
            Ok(cell) => {
                *entry.cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(cell);
                self.inner.emit(SwarmEvent::AgentStarted { id: id.to_string() });
                Ok(())
            }
            Err(e) => {
                self.inner.agents.remove(id);
                Err(e)
            }
        }
    }

    fn sender<T: Send + 'static>(&self, id: &str) -> Result<(Arc<AgentEntry>, Arc<TaskSender<T>>)> {
        self.check_open()?;
        let entry = self
            .inner
            .agents
            .get(id)
            .map(|e| e.clone())
            .ok_or_else(|| Error::UnknownAgent(id.to_string()))?;
        if *entry.status.lock().unwrap_or_else(|p| p.into_inner()) == AgentStatus::Stopped {
            return Err(Error::AgentStopped(id.to_string()));
        }
        let s = entry.sender.clone().downcast::<TaskSender<T>>().map_err(|_| Error::WrongTaskType {
            id: id.to_string(),
            expected: entry.task_type_name,
            given: std::any::type_name::<T>(),
        })?;
        Ok((entry, s))
    }

    /// Sends a task; fails at once with `MailboxFull` if the agent is behind.
    pub async fn send<T: Send + 'static>(&self, id: &str, task: T) -> Result<()> {
        let (_, s) = self.sender::<T>(id)?;
        s.try_send(id, task).await
    }

    /// Sends a task, waiting for mailbox space.
    pub async fn send_wait<T: Send + 'static>(&self, id: &str, task: T) -> Result<()> {
        let (_, s) = self.sender::<T>(id)?;
        s.send_wait(id, task).await
    }

    /// Sends a task to every running agent that takes tasks of type `T`. Returns how
    /// many received it and the errors of those that did not (e.g. full mailboxes).
    pub async fn broadcast<T: Clone + Send + 'static>(&self, task: T) -> Result<(usize, Vec<Error>)> {
        self.check_open()?;
        let ids: Vec<String> = self.inner.agents.iter().map(|e| e.key().clone()).collect();
        let (mut ok, mut errs) = (0, Vec::new());
        for id in ids {
            match self.sender::<T>(&id) {
                Ok((_, s)) => match s.try_send(&id, task.clone()).await {
                    Ok(()) => ok += 1,
                    Err(e) => errs.push(e),
                },
                Err(Error::WrongTaskType { .. }) | Err(Error::AgentStopped(_)) => {}
                Err(e) => errs.push(e),
            }
        }
        Ok((ok, errs))
    }

    /// Stops one agent cleanly (its `on_stop` runs) and removes it from the registry.
    pub async fn stop_agent(&self, id: &str) -> Result<()> {
        let entry = self
            .inner
            .agents
            .get(id)
            .map(|e| e.clone())
            .ok_or_else(|| Error::UnknownAgent(id.to_string()))?;
        *entry.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Stopped;
        let cell = entry.cell.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(c) = cell {
            let _ = c.stop_and_wait(Some("stopped".into()), Some(Duration::from_secs(10))).await;
        }
        self.inner.agents.remove(id);
        Ok(())
    }

    /// Every agent with its status and counters.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let mut v: Vec<AgentInfo> = self
            .inner
            .agents
            .iter()
            .map(|e| AgentInfo {
                id: e.id.clone(),
                region: e.region.clone(),
                status: *e.status.lock().unwrap_or_else(|p| p.into_inner()),
                tasks_ok: e.counters.tasks_ok.load(Ordering::Relaxed),
                tasks_failed: e.counters.tasks_failed.load(Ordering::Relaxed),
                restarts: e.counters.restarts.load(Ordering::Relaxed),
                mailbox_depth: (e.mailbox_depth)(),
                last_error: e.counters.last_error(),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn agent(&self, id: &str) -> Result<AgentInfo> {
        self.agents()
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| Error::UnknownAgent(id.to_string()))
    }

    // ---- memory ---------------------------------------------------------------------

    /// Appends a message to its session; returns the message id once committed.
    pub async fn add_conversation(&self, m: Message) -> Result<String> {
        self.check_open()?;
        let id = m.id.clone();
        self.inner.store.publish(m).await?;
        Ok(id)
    }

    /// A session's messages in (created_at, id) order. `cursor` comes from the previous
    /// page's `next_cursor`; `limit` is capped at 1000.
    pub async fn get_conversations(&self, session_id: &str, cursor: Option<&str>, limit: usize) -> Result<Page<Message>> {
        edgeswarm_core::record::name("session_id", session_id, &self.inner.store.config().limits)?;
        let limit = limit.clamp(1, 1000);
        let (after_ts, after_id) = match cursor {
            None | Some("") => (i64::MIN, String::new()),
            Some(c) => {
                let (ts, id) = c
                    .split_once(':')
                    .ok_or_else(|| Error::Invalid(format!("cursor `{c}` is not one this server issued")))?;
                (
                    ts.parse::<i64>()
                        .map_err(|_| Error::Invalid(format!("cursor `{c}` is not one this server issued")))?,
                    id.to_string(),
                )
            }
        };
        let mut items = conversations::page(&self.inner.store, session_id, after_ts, &after_id, limit + 1).await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|m| format!("{}:{}", m.created_at, m.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Every session's messages, a page at a time, in the order they were stored.
    /// `cursor` comes from the previous page's `next_cursor` (`None` to start); `limit` is
    /// capped at 10 000.
    pub async fn list_conversations(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Message>> {
        let limit = limit.clamp(1, 10_000);
        let after = scan_cursor(cursor)?;
        let rows = conversations::scan(&self.inner.store, after, limit).await?;
        let next_cursor = (rows.len() == limit).then(|| rows.last().map(|(r, _)| r.to_string())).flatten();
        Ok(Page {
            items: rows.into_iter().map(|(_, m)| m).collect(),
            next_cursor,
        })
    }

    /// How many conversation messages are stored.
    pub async fn conversation_count(&self) -> Result<i64> {
        Ok(conversations::count(&self.inner.store).await?)
    }

    /// Adds a knowledge entry; returns its id once committed. The same content
    /// (normalised) in the same category is one entry: its tags and metadata are merged
    /// and the existing id is returned (see `search().add_knowledge` for the flag).
    pub async fn add_knowledge(&self, k: Knowledge) -> Result<String> {
        self.check_open()?;
        Ok(self.inner.search.add_knowledge(k).await?.id)
    }

    /// The whole live knowledge entry with this id, or `None`.
    pub async fn get_knowledge(&self, id: &str) -> Result<Option<KnowledgeEntry>> {
        Ok(self.inner.search.get_knowledge(id).await?)
    }

    /// The live knowledge entries with these ids (missing ones skipped), in no set order.
    pub async fn get_knowledge_many(&self, ids: &[String]) -> Result<Vec<KnowledgeEntry>> {
        Ok(knowledge::get_many(&self.inner.store, ids).await?)
    }

    /// Changes fields of a live entry (re-indexed at once); `NotFound` if there is none.
    pub async fn update_knowledge(&self, id: &str, update: KnowledgeUpdate) -> Result<()> {
        self.check_open()?;
        Ok(self.inner.search.update_knowledge(id, update).await?)
    }

    /// Deletes a live entry (a tombstone, so the delete replicates); false if there was none.
    pub async fn delete_knowledge(&self, id: &str) -> Result<bool> {
        self.check_open()?;
        Ok(self.inner.search.delete_knowledge(id).await?)
    }

    /// Every live entry, a page at a time, in the order they were first stored. `cursor`
    /// comes from the previous page's `next_cursor` (`None` to start); `limit` is capped
    /// at 10 000.
    pub async fn list_knowledge(&self, cursor: Option<&str>, limit: usize) -> Result<Page<KnowledgeEntry>> {
        let limit = limit.clamp(1, 10_000);
        let after = scan_cursor(cursor)?;
        let rows = knowledge::scan(&self.inner.store, after, limit).await?;
        let next_cursor = (rows.len() == limit).then(|| rows.last().map(|(r, _)| r.to_string())).flatten();
        Ok(Page {
            items: rows.into_iter().map(|(_, e)| e).collect(),
            next_cursor,
        })
    }

    /// How many live knowledge entries there are.
    pub async fn knowledge_count(&self) -> Result<i64> {
        Ok(knowledge::count_live(&self.inner.store).await?)
    }

    /// The search actor: filters, modes (lexical, vector, hybrid), cursors, updates,
    /// deletes, full entries by id.
    pub fn search(&self) -> &Search {
        &self.inner.search
    }

    /// Searches the knowledge base in the default mode (hybrid when an embedder is set,
    /// else lexical; no embedder is set by default). Any text is a valid query.
    pub async fn search_knowledge(&self, query: &str, limit: usize) -> Result<Vec<KnowledgeHit>> {
        let resp = self
            .search_with(SearchRequest::new(query).limit(limit.clamp(1, 100) as i64))
            .await?;
        Ok(resp
            .hits
            .into_iter()
            .map(|h| KnowledgeHit {
                id: h.id,
                category: h.category,
                topic: h.topic,
                snippet: h.snippet,
                score: h.score,
            })
            .collect())
    }

    /// Runs a full search request.
    pub async fn search_with(&self, req: SearchRequest) -> Result<SearchResponse> {
        let t = std::time::Instant::now();
        let r = self.inner.search.search(req).await;
        self.inner.search_latency.record(t.elapsed());
        Ok(r?)
    }

    /// Depth and capacity of every named channel (see `ChannelConfig`): the store's,
    /// the search mailbox, swarm events, kv watchers (the deepest watcher's queue and
    /// the per-watcher bound) and each `file:` region's link. Agent mailboxes are per
    /// agent in [`Swarm::agents`].
    pub fn channels(&self) -> Vec<edgeswarm_core::ChannelStats> {
        use edgeswarm_core::ChannelStats;
        let mut v = self.inner.store.stats().channels();
        v.push(self.inner.search.mailbox());
        let ev = &self.inner.events;
        v.push(ChannelStats::new(
            "swarm_events",
            ev.len(),
            self.inner.store.config().channels.swarm_events.max(1),
        ));
        let deepest = self
            .inner
            .watchers
            .iter()
            .map(|w| w.tx.max_capacity() - w.tx.capacity())
            .max()
            .unwrap_or(0);
        v.push(ChannelStats::new(
            "kv_watch",
            deepest,
            self.inner.store.config().channels.kv_watch.max(1),
        ));
        if let Some(s) = &self.inner.sync {
            v.extend(s.channels());
        }
        v
    }

    /// Search latency so far: counts per power-of-two µs bucket (index i: ≤ 2^i µs) and
    /// the sum in µs.
    pub fn search_latency_hist(&self) -> (Vec<u64>, u64) {
        self.inner.search_latency.pow2_buckets(24)
    }

    /// A copy of the search latency histogram so far (count, sum, percentiles, bucket
    /// counts at any bound; see `edgeswarm_core::latency`).
    pub fn search_latency(&self) -> LatencyHistogram {
        self.inner.search_latency.snapshot()
    }

    // ---- regions ----------------------------------------------------------------------

    /// Replication to edge regions, if any are configured.
    pub fn sync(&self) -> Option<&SyncHandle> {
        self.inner.sync.as_ref()
    }

    fn sync_or(&self, what: &'static str) -> Result<&SyncHandle> {
        self.inner.sync.as_ref().ok_or(Error::NoRegions(what))
    }

    /// Per-region status, lag, throughput and conflicts (`None` without regions).
    pub fn sync_status(&self) -> Option<SyncStatus> {
        self.inner.sync.as_ref().map(|s| s.sync_status())
    }

    /// Writes a record and acks at the chosen consistency: `Local` after the home
    /// commit, `Quorum`/`All` once that many regions hold it. On timeout the error says
    /// which regions were reached; the write stays durable at home and keeps replicating.
    pub async fn publish_with(&self, record: impl Into<Record>, level: WriteConsistency, timeout: Duration) -> Result<Option<Replicated>> {
        self.check_open()?;
        self.inner.store.publish(record).await?;
        if level == WriteConsistency::Local {
            return Ok(None);
        }
        let sync = self.sync_or("Quorum/All writes")?;
        let seq = sync.latest_seq().await?;
        Ok(Some(sync.wait_replicated(seq, level, timeout).await?))
    }

    /// Runs read-only SQL where `rc` says: `Local` (home, read-your-writes), `Nearest`
    /// (lowest-latency healthy region, optionally under a lag bound), `Region(name)`.
    pub async fn read_sql_with(&self, rc: &ReadConsistency, sql: &str, params: Vec<SqlValue>) -> Result<(ReadTarget, QueryResult)> {
        match (&self.inner.sync, rc) {
            (None, ReadConsistency::Local) => Ok((ReadTarget::Local, self.inner.store.read_sql(sql, params).await?)),
            (None, _) => Err(Error::NoRegions("Nearest/Region reads")),
            (Some(s), rc) => Ok(s.read_sql(rc, sql, params).await?),
        }
    }

    /// Replicates a user table (it needs a primary key): rows written by raw SQL travel too.
    pub async fn replicate_table(&self, name: &str) -> Result<()> {
        Ok(self.sync_or("replicate_table")?.replicate_table(name).await?)
    }

    /// Starts replicating to one more region without a restart. The region is seeded
    /// from home (a full copy, as a region new at startup). Needs a swarm started with
    /// at least one region or with [`SwarmBuilder::live_regions`]. Not remembered
    /// across restarts: configure the region to keep it.
    pub async fn add_region(&self, r: RegionConfig) -> Result<()> {
        self.check_open()?;
        Ok(self
            .sync_or("add_region (or start with SwarmBuilder::live_regions())")?
            .add_region(r)
            .await?)
    }

    /// Stops replicating to a region without a restart: it leaves routing, status and
    /// consistency waits at once, drains for at most `SyncConfig::remove_drain`
    /// (pushing what home held when the removal started), then stops; anything it did
    /// not get by then is abandoned for it (home keeps everything).
    pub async fn remove_region(&self, name: &str) -> Result<edgeswarm_sync::RegionRemoved> {
        Ok(self.sync_or("remove_region")?.remove_region(name).await?)
    }

    /// Cuts (`true`) or heals (`false`) the simulated link to a `file:` region.
    pub fn partition(&self, region: &str, partitioned: bool) -> Result<()> {
        Ok(self.sync_or("partition")?.partition(region, partitioned)?)
    }

    /// Watches `namespace` keys starting with `prefix`.
    pub fn watch(&self, namespace: &str, prefix: &str) -> KvWatch {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.store.config().channels.kv_watch.max(1));
        let id = self.inner.next_watch.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.inner.watchers.insert(
            id,
            Watcher {
                namespace: namespace.into(),
                prefix: prefix.into(),
                tx,
                dropped: dropped.clone(),
            },
        );
        KvWatch {
            rx,
            id,
            watchers: self.inner.watchers.clone(),
            dropped,
        }
    }

    /// Task-duration aggregates, optionally only for tasks since `since_ms` (epoch ms).
    pub async fn metrics(&self, since_ms: Option<i64>) -> Result<MetricsSummary> {
        let rows = metrics::rows_since(&self.inner.store, since_ms.unwrap_or(i64::MIN)).await?;
        Ok(summarise(&rows))
    }

    /// Records one task measurement (a row of `agent_metrics`); returns its id once
    /// committed.
    pub async fn record_metric(&self, m: Metric) -> Result<String> {
        self.check_open()?;
        let id = m.id.clone();
        self.inner.store.publish(m).await?;
        Ok(id)
    }

    /// Distinct agents and tasks recorded since `since_ms` (epoch ms).
    pub async fn metric_activity(&self, since_ms: i64) -> Result<(i64, i64)> {
        Ok(metrics::activity_since(&self.inner.store, since_ms).await?)
    }

    /// How many task measurements are stored.
    pub async fn metric_count(&self) -> Result<i64> {
        Ok(metrics::count(&self.inner.store).await?)
    }

    // ---- shared memory (kv) -----------------------------------------------------------

    /// The live entry under (`namespace`, `key`), or `None` if missing, deleted or expired.
    pub async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<KvEntry>> {
        Ok(self.inner.store.kv_get(namespace, key).await?)
    }

    /// Sets an entry (any JSON value), optionally expiring after `ttl`; returns its new version.
    pub async fn kv_set(&self, namespace: &str, key: &str, value: serde_json::Value, ttl: Option<Duration>) -> Result<i64> {
        self.check_open()?;
        Ok(self.inner.store.kv_set(namespace, key, value, ttl).await?)
    }

    /// Writes `value` only if the entry's version is `expected` (`None`: only if absent).
    pub async fn kv_cas(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<i64>,
        value: serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome> {
        self.check_open()?;
        Ok(self.inner.store.kv_cas(namespace, key, expected, value, ttl).await?)
    }

    /// Deletes an entry; true if it existed.
    pub async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        self.check_open()?;
        Ok(self.inner.store.kv_delete(namespace, key).await?)
    }

    /// Live entries of `namespace` whose key starts with `prefix`, by key (at most `limit`).
    pub async fn kv_list(&self, namespace: &str, prefix: &str, limit: usize) -> Result<Vec<KvEntry>> {
        Ok(self.inner.store.kv_list(namespace, prefix, limit).await?)
    }

    /// How many kv entries are not deleted.
    pub async fn kv_count(&self) -> Result<i64> {
        Ok(self.inner.store.kv_count_live().await?)
    }

    // ---- raw SQL and the schema -------------------------------------------------------

    /// Runs one statement that SQLite reports read-only, on the home file; anything else
    /// is refused. Results are capped at `Limits::max_result_rows`.
    pub async fn read_sql(&self, sql: impl Into<String>, params: Vec<SqlValue>) -> Result<QueryResult> {
        Ok(self.inner.store.read_sql(sql, params).await?)
    }

    /// Runs one statement of any kind: reads on the read pool, writes through the storage
    /// actor (committed, and replicated like every write, before this returns).
    pub async fn execute_sql(&self, sql: impl Into<String>, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.check_open()?;
        Ok(self.inner.store.execute_sql(sql, params).await?)
    }

    /// Tables and views of the home file, by name; runtime-internal and FTS shadow tables
    /// only when `include_internal`.
    pub async fn list_tables(&self, include_internal: bool) -> Result<Vec<TableInfo>> {
        Ok(inspect::tables(&self.inner.store, include_internal).await?)
    }

    /// Rows in one table (any name; it is quoted).
    pub async fn row_count(&self, table: &str) -> Result<i64> {
        Ok(inspect::row_count(&self.inner.store, table).await?)
    }

    /// Columns, primary key, indexes, foreign keys and CREATE statement of a table or
    /// view; `None` if there is none with that (case-sensitive) name.
    pub async fn describe_table(&self, table: &str) -> Result<Option<TableDescription>> {
        Ok(inspect::describe_table(&self.inner.store, table).await?)
    }

    /// The CREATE statements of `table` with its indexes and triggers, or of the whole
    /// schema when `None`.
    pub async fn schema_sql(&self, table: Option<&str>) -> Result<Vec<String>> {
        Ok(inspect::schema_sql(&self.inner.store, table).await?)
    }

    /// Page count and size, free pages, journal mode and schema version of the home file.
    pub async fn database_info(&self) -> Result<DatabaseInfo> {
        Ok(inspect::database_info(&self.inner.store).await?)
    }

    /// Every region recorded in the home file (by this swarm's sync actors or an earlier
    /// run's), nearest first, with changes not yet pushed. Works without configured regions.
    pub async fn recorded_regions(&self) -> Result<Vec<RegionRow>> {
        Ok(inspect::regions(&self.inner.store).await?)
    }

    /// The store's limits (row cap, statement and content sizes, query time limit).
    pub fn limits(&self) -> &Limits {
        &self.inner.store.config().limits
    }

    /// The home file's path as configured.
    pub fn path(&self) -> &Path {
        &self.inner.store.config().path
    }

    /// The whole store configuration (path, durability, batching, limits).
    pub fn store_config(&self) -> &StoreConfig {
        self.inner.store.config()
    }

    /// This node's origin id, stamped on every row it writes (replication tells writers apart by it).
    pub fn origin(&self) -> &str {
        self.inner.store.origin()
    }

    /// Write-queue depth, batches and commit counters of the storage actor.
    pub fn store_stats(&self) -> StoreStats {
        self.inner.store.stats()
    }

    /// Stores records as given, ids kept: a record whose id is already stored is left as
    /// it was and counted in `already_present`. Records are validated first; any invalid
    /// one fails the call before anything is written. Queues up to 1024 at a time.
    pub async fn import_records(&self, records: Vec<Record>) -> Result<ImportCounts> {
        self.check_open()?;
        let limits = self.limits().clone();
        for r in &records {
            r.validate(&limits)?;
        }
        let mut c = ImportCounts::default();
        for chunk in records.chunks(1024) {
            let mut acks = Vec::with_capacity(chunk.len());
            for r in chunk {
                let which = match r {
                    Record::Knowledge(_) => 0,
                    Record::Message(_) => 1,
                    _ => 2,
                };
                acks.push((which, self.inner.store.enqueue_record(r.clone()).await?));
            }
            for (which, ack) in acks {
                match ack.wait().await? {
                    Inserted { duplicate: true } => c.already_present += 1,
                    _ if which == 0 => c.knowledge += 1,
                    _ if which == 1 => c.conversations += 1,
                    _ => c.other += 1,
                }
            }
        }
        Ok(c)
    }

    /// The recorded progress of an interrupted import of `source` (a file's canonical
    /// path), if there is one.
    pub async fn import_progress(&self, source: &str) -> Result<Option<ImportProgress>> {
        self.check_open()?;
        let key = import_key(source);
        let r = self
            .inner
            .store
            .read(move |rd| rd.query("SELECT value FROM _meta WHERE key = ?1", vec![SqlValue::Text(key)]))
            .await?;
        let Some(v) = r
            .rows
            .first()
            .and_then(|row| row.first())
            .and_then(|v| v.as_str().map(str::to_owned))
        else {
            return Ok(None);
        };
        // A record this build cannot read is treated as absent: the import starts over,
        // which stores nothing twice (records are idempotent by id).
        Ok(serde_json::from_str(&v).ok())
    }

    /// Records (`Some`) or clears (`None`, the import finished) the progress of an
    /// import of `source`; returns once committed.
    pub async fn set_import_progress(&self, source: &str, progress: Option<&ImportProgress>) -> Result<()> {
        self.check_open()?;
        let key = import_key(source);
        let value = match progress {
            Some(p) => Some(serde_json::to_string(p).map_err(|e| Error::Invalid(format!("cannot encode import progress: {e}")))?),
            None => None,
        };
        self.inner
            .store
            .transact(move |ctx| {
                match value {
                    Some(v) => ctx.execute(
                        "INSERT INTO _meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        vec![SqlValue::Text(key), SqlValue::Text(v)],
                    )?,
                    None => ctx.execute("DELETE FROM _meta WHERE key = ?1", vec![SqlValue::Text(key)])?,
                };
                Ok(())
            })
            .await?;
        Ok(())
    }

    // ---- lifecycle ------------------------------------------------------------------

    /// Stops every agent (running `on_stop`), drains and flushes the store, and returns
    /// once all acked data is on disk. Calls after this fail with `ShutDown`.
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let cells: Vec<ActorCell> = self
            .inner
            .agents
            .iter()
            .filter_map(|e| e.cell.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        for c in &cells {
            c.stop(Some("swarm shutdown".into()));
        }
        for c in cells {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while c.get_status() != ractor::ActorStatus::Stopped {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
        }
        for e in self.inner.agents.iter() {
            *e.status.lock().unwrap_or_else(|p| p.into_inner()) = AgentStatus::Stopped;
        }
        if let Some(s) = self.inner.supervisor.write().await.take() {
            s.stop(None);
        }
        self.inner.watchers.clear();
        self.inner.search.stop();
        if let Some(sync) = &self.inner.sync {
            sync.shutdown().await;
        }
        self.inner.store.shutdown().await?;
        Ok(())
    }
}

/// The position a `list_*` cursor stands for (a rowid; 0 before the first row).
fn scan_cursor(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None | Some("") => Ok(0),
        Some(c) => c.parse().map_err(|_| {
            Error::Invalid(format!(
                "cursor `{c}` is not one this server issued; pass a page's next_cursor unchanged"
            ))
        }),
    }
}

fn summarise(rows: &[metrics::MetricRow]) -> MetricsSummary {
    use std::collections::BTreeMap;
    let mut all = Vec::new();
    let mut groups: [BTreeMap<String, (Vec<f64>, i64)>; 3] = Default::default();
    for r in rows {
        all.push(r.duration_ms);
        for (g, key) in groups.iter_mut().zip([&r.agent_id, &r.task_type, &r.region]) {
            let e = g.entry(key.clone()).or_default();
            e.0.push(r.duration_ms);
            // Saturating: tokens_used may be any i64 (found by the mcp fuzz target: two
            // metrics of i64::MAX tokens overflowed the sum and panicked get_metrics).
            e.1 = e.1.saturating_add(r.tokens_used);
        }
    }
    let total_tokens = rows.iter().fold(0i64, |s, r| s.saturating_add(r.tokens_used));
    let [a, t, rg] = groups;
    let to = |m: BTreeMap<String, (Vec<f64>, i64)>| m.into_iter().map(|(k, (v, tok))| agg(k, v, tok)).collect();
    MetricsSummary {
        overall: agg("all".into(), all, total_tokens),
        by_agent: to(a),
        by_task_type: to(t),
        by_region: to(rg),
    }
}

/// One group's figures. Percentiles by the one definition in `edgeswarm_core::latency`
/// (nearest rank at 3 significant digits); the mean is exact to the microsecond.
fn agg(key: String, v: Vec<f64>, tokens: i64) -> MetricAgg {
    let h = LatencyHistogram::from_ms(v);
    MetricAgg {
        key,
        count: h.count(),
        mean_ms: h.mean_ms(),
        p50_ms: h.percentile_ms(0.50),
        p95_ms: h.percentile_ms(0.95),
        p99_ms: h.percentile_ms(0.99),
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let a = agg("x".into(), (1..=100).map(|i| i as f64).collect(), 7);
        assert_eq!((a.count, a.tokens), (100, 7));
        // Nearest rank at the histogram's resolution (exact below 2.048 ms, within 0.1% above).
        for (got, want) in [(a.p50_ms, 50.0), (a.p95_ms, 95.0), (a.p99_ms, 99.0)] {
            assert!(got >= want && got <= want * 1.001, "{got} vs {want}");
        }
        let a = agg("x".into(), (1..=100).map(|i| i as f64 / 100.0).collect(), 7);
        assert_eq!((a.count, a.p50_ms, a.p95_ms, a.p99_ms, a.tokens), (100, 0.5, 0.95, 0.99, 7));
        assert_eq!(agg("e".into(), vec![], 0).p99_ms, 0.0);
    }

    #[test]
    fn token_sums_saturate_instead_of_overflowing() {
        let row = |t| metrics::MetricRow {
            agent_id: "a".into(),
            task_type: "t".into(),
            region: String::new(),
            duration_ms: 1.0,
            tokens_used: t,
        };
        let s = summarise(&[row(i64::MAX), row(i64::MAX), row(1)]);
        assert_eq!(s.overall.tokens, i64::MAX);
        assert_eq!(s.by_agent[0].tokens, i64::MAX);
    }
}
