//! `SearchActor` and its typed handle [`Search`].
//!
//! The actor owns the mutable search state: the hot-query LRU cache, the active and
//! building vector spaces, and the embedding backlog. It never runs a query itself: each
//! query is handed to a task that runs it on the store's read pool, so several queries run
//! at once and none queues behind a write (readers use WAL snapshots).
//!
//! Cache freshness: commit events are drained before every cache lookup, and this crate's
//! own writes (`Search::add_knowledge` etc.) invalidate synchronously before returning.
//! Writes made elsewhere (raw SQL, replication) invalidate when their commit event is
//! broadcast; the store sends that event just *after* acking the write, so for a few
//! microseconds after such an ack one cached answer may still be served.
//!
//! Mailbox: ractor mailboxes are unbounded, so the [`Search`] handle bounds what callers
//! put in it. Every message a caller causes (query, status, embedder switch, the
//! invalidation after this crate's own writes) holds a permit of a semaphore of
//! `ChannelConfig::search_mailbox` permits until the actor has handled it: `search`
//! waits for a permit, `try_search` returns `Overloaded`. The other messages are bounded
//! by construction: `Poll` is coalesced (at most one queued, see `poll_pending`),
//! `CachePut` comes only from query tasks (one per counted query) and `SyncDone` from
//! the single background embedding pass.

use crate::embed::SharedEmbedder;
use crate::engine::{self, Plan, VectorQuery};
use crate::error::{Result, SearchError};
use crate::fastlex::DocLens;
use crate::knowledge::{self, AddOutcome, KnowledgeEntry, KnowledgeUpdate};
use crate::query::{self, Cursor, Mode, SearchRequest, SearchResponse};
use crate::vectors::{self, Space, SyncReport};
use edgeswarm_core::Knowledge;
use edgeswarm_store::{CommitEvent, Store};
use lru::LruCache;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::Instrument;

/// Batches of missing vectors filled per background pass (each batch is
/// [`crate::embed::EMBED_BATCH`] entries); passes repeat until nothing is missing.
const FILL_BATCHES_PER_PASS: usize = 8;

/// Default [`SearchConfig::rank_window`].
pub const DEFAULT_RANK_WINDOW: usize = 0;

/// How the search actor is set up. Use [`SearchConfig::new`] for the defaults.
#[derive(Clone)]
pub struct SearchConfig {
    /// Hot-query cache entries (LRU). 0 disables the cache. Default 1024: hot agent
    /// queries repeat, and a page of hits is a few KB.
    pub cache_capacity: usize,
    /// The embedder for vector and hybrid search; `None` = lexical only.
    pub embedder: Option<SharedEmbedder>,
    /// Most matches BM25 ranks for an unfiltered query; when a query matches more, only
    /// the most recent `rank_window` matches are ranked and the response says so. Bounds
    /// latency for very common words when FTS5 ranks them (~1 µs per match). 0 = rank
    /// every match. Default 0: exact BM25 over every match (a window can miss the best
    /// hit). Filtered queries always rank every match.
    pub rank_window: usize,
    /// Rank unfiltered word/phrase queries with the fast ranker (`fastlex`: the same BM25
    /// scores from the term's instance list and in-memory token counts) instead of FTS5's
    /// per-row `bm25()`. Default true; false is the baseline the benchmark compares with.
    pub fast_lexical: bool,
    /// Treat queries without explicit syntax (no quotes, `*`, upper-case AND/OR/NOT) as
    /// natural language: stop words dropped, any word may match, and BM25 sums the
    /// matched words so entries covering more of them rank first. Default true (agents ask
    /// in sentences); false = every word must match, relaxed to any word only when
    /// nothing matches (the `lexical_and` baseline of `bench quality`).
    pub natural_language: bool,
    /// Natural-language queries only: the best 50 BM25 matches are re-ranked by BM25 ×
    /// (1 + `coverage_boost` × share of the other query words the entry contains).
    /// 0 = plain BM25 order. Default chosen by `edgeswarm bench quality` (see
    /// [`DEFAULT_COVERAGE_BOOST`]).
    pub coverage_boost: f64,
    /// How hybrid search merges the lexical and vector rankings. Default
    /// [`crate::engine::DEFAULT_FUSION`] (chosen by `edgeswarm bench quality --sweep`).
    pub fusion: crate::engine::Fusion,
}

/// Default [`SearchConfig::coverage_boost`].
pub const DEFAULT_COVERAGE_BOOST: f64 = 1.0;

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig::new()
    }
}

impl SearchConfig {
    /// Default config: 1024 cached queries, no embedder, exact ranking (no rank window).
    pub fn new() -> Self {
        SearchConfig {
            cache_capacity: 1024,
            embedder: None,
            rank_window: DEFAULT_RANK_WINDOW,
            fast_lexical: true,
            natural_language: true,
            coverage_boost: DEFAULT_COVERAGE_BOOST,
            fusion: crate::engine::DEFAULT_FUSION,
        }
    }
    /// Sets how hybrid search merges the two rankings.
    pub fn fusion(mut self, f: crate::engine::Fusion) -> Self {
        self.fusion = f;
        self
    }
    /// Sets the coverage boost of natural-language queries (0 = plain BM25 order).
    pub fn coverage_boost(mut self, b: f64) -> Self {
        self.coverage_boost = b;
        self
    }
    /// Switches natural-language query handling on or off (see the field).
    pub fn natural_language(mut self, on: bool) -> Self {
        self.natural_language = on;
        self
    }
    /// Switches the fast ranker on or off (results are the same; off is slower).
    pub fn fast_lexical(mut self, on: bool) -> Self {
        self.fast_lexical = on;
        self
    }
    /// Sets the embedder (hybrid becomes the default mode).
    pub fn embedder(mut self, e: SharedEmbedder) -> Self {
        self.embedder = Some(e);
        self
    }
    /// Sets the rank window (0 = rank every match).
    pub fn rank_window(mut self, n: usize) -> Self {
        self.rank_window = n;
        self
    }
    /// Sets the cache size (0 disables it).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }
}

/// What the search actor is doing.
#[derive(Debug, Clone, Serialize)]
pub struct SearchStatus {
    /// The mode a request without `mode` gets.
    pub default_mode: Mode,
    /// Embedder whose vectors serve queries now (`id/dim`).
    pub active_embedder: Option<String>,
    /// Embedder whose vectors are being built in the background (`id/dim`).
    pub building_embedder: Option<String>,
    /// Live entries without a vector in the building (or else active) space, as of the
    /// last background pass.
    pub vectors_missing: i64,
    /// Answers in the hot-query cache.
    pub cache_entries: usize,
    /// The last background embedding error, if the last pass failed.
    pub last_error: Option<String>,
    /// Changed entries waiting to be (re-)embedded.
    pub pending_changes: usize,
    /// True while a background embedding pass runs.
    pub syncing: bool,
    /// Frequent terms whose instance lists the fast ranker holds in memory, and the
    /// instances held (16 bytes each; bounded at 4 Mi).
    pub hot_terms: usize,
    pub hot_instances: usize,
}

/// Messages of the search actor. Use [`Search`] instead of building these.
pub enum SearchMsg {
    /// Run a search.
    Query {
        /// The request.
        req: SearchRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<SearchResponse>>,
    },
    /// A query task's answer, cached if no write happened since it started.
    CachePut {
        /// Cache generation when the query started; stale answers are dropped.
        generation: u64,
        /// Cache key (request + resolved mode + vector space).
        key: String,
        /// The answer to cache.
        resp: SearchResponse,
    },
    /// A commit event is waiting in the broadcast receiver.
    Poll,
    /// Our own write to these entries committed: drop cached answers and (re-)embed them
    /// now, without waiting for the commit event.
    Wrote(Vec<String>),
    /// Switch embedder (or turn vectors off with `None`).
    SetEmbedder {
        /// The new embedder, or `None` for lexical only.
        embedder: Option<SharedEmbedder>,
        /// Told once the switch is registered (the re-embed continues in the background).
        reply: oneshot::Sender<Result<()>>,
    },
    /// A background embedding pass finished.
    SyncDone {
        /// Per vector space (slot): what the pass did, or why it failed.
        results: Vec<(i64, Result<SyncReport>)>,
        /// The building space that became active in this pass, if any.
        switched_to: Option<i64>,
    },
    /// Report status.
    Status {
        /// Where the status goes.
        reply: oneshot::Sender<SearchStatus>,
    },
    /// A caller's message with its mailbox permit, released once the message is handled
    /// (or dropped with the mailbox if the actor stops).
    Counted(Box<SearchMsg>, OwnedSemaphorePermit),
}

// With ractor's `cluster` feature there is no blanket `Message` impl; this message is
// local-only (never serialized), so the trait's defaults are right.
#[cfg(feature = "cluster")]
impl ractor::Message for SearchMsg {}

/// The actor: read-only configuration only; everything mutable is in [`SearchState`].
pub struct SearchActor {
    store: Store,
    cache_capacity: usize,
    rank_window: usize,
    /// [`SearchConfig::natural_language`].
    natural_language: bool,
    /// [`SearchConfig::coverage_boost`].
    coverage_boost: f64,
    /// [`SearchConfig::fusion`].
    fusion: crate::engine::Fusion,
    /// Token counts shared with the read-pool threads for the fast ranker (a cache with
    /// its own lock, filled by the threads that rank); None when the ranker is off.
    lens: Option<Arc<DocLens>>,
}

/// The actor's mutable state.
pub struct SearchState {
    cache: Option<LruCache<String, SearchResponse>>,
    generation: u64,
    events: broadcast::Receiver<Arc<CommitEvent>>,
    forwarder: tokio::task::JoinHandle<()>,
    /// True while a `Poll` is queued: the commit-event forwarder sends at most one, so
    /// a burst of commits cannot flood the (unbounded) mailbox. Cleared when it is handled.
    poll_pending: Arc<AtomicBool>,
    active: Option<Space>,
    building: Option<Space>,
    missing: i64,
    syncing: bool,
    pending: BTreeSet<String>,
    need_fill: bool,
    purge: bool,
    last_error: Option<String>,
}

fn label(s: &Space) -> String {
    format!("{}/{}", s.embedder.id(), s.embedder.dim())
}

/// What a response reports about vectors: the serving (else building) embedder, and
/// whether the active space holds a vector for every live entry.
fn vector_state(st: &SearchState) -> (Option<String>, bool) {
    let name = st.active.as_ref().or(st.building.as_ref()).map(label);
    let complete = st.active.is_some() && st.building.is_none() && st.missing == 0 && st.pending.is_empty() && !st.need_fill && !st.syncing;
    (name, complete)
}

impl SearchState {
    fn invalidate(&mut self) {
        self.generation += 1;
        if let Some(c) = &mut self.cache {
            c.clear();
        }
    }

    /// Applies every commit event waiting in the receiver.
    fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(ev) => {
                    let mut touched = ev.raw_sql;
                    for c in &ev.changes {
                        if c.tbl == "knowledge" {
                            touched = true;
                            if self.active.is_some() || self.building.is_some() {
                                self.pending.insert(c.row_id.clone());
                            }
                        }
                    }
                    if ev.raw_sql {
                        self.need_fill = true;
                        self.purge = true;
                    }
                    if touched {
                        self.invalidate();
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "search missed commit events; full resync");
                    self.invalidate();
                    self.need_fill = true;
                    self.purge = true;
                }
                Err(_) => break,
            }
        }
    }
}

impl SearchActor {
    fn maybe_sync(&self, myself: &ActorRef<SearchMsg>, st: &mut SearchState) {
        if st.syncing {
            return;
        }
        let spaces: Vec<Space> = st.active.iter().chain(st.building.iter()).cloned().collect();
        if spaces.is_empty() {
            st.pending.clear();
            st.need_fill = false;
            st.purge = false;
            return;
        }
        if st.pending.is_empty() && !st.need_fill && !st.purge {
            return;
        }
        st.syncing = true;
        let changed: Vec<String> = std::mem::take(&mut st.pending).into_iter().collect();
        let purge = std::mem::take(&mut st.purge);
        st.need_fill = false;
        let building = st.building.as_ref().map(|b| b.slot);
        let store = self.store.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut switched_to = None;
            for s in &spaces {
                let span = tracing::debug_span!("vector_sync", table = %s.table);
                let r = vectors::sync(&store, s, changed.clone(), FILL_BATCHES_PER_PASS, purge)
                    .instrument(span)
                    .await;
                if let (Ok(rep), Some(b)) = (&r, building) {
                    if b == s.slot && rep.missing == 0 {
                        match vectors::mark_active(&store, b).await {
                            Ok(()) => switched_to = Some(b),
                            Err(e) => results.push((b, Err(e))),
                        }
                    }
                }
                results.push((s.slot, r));
            }
            let _ = me.cast(SearchMsg::SyncDone { results, switched_to });
        });
    }

    fn query(&self, st: &mut SearchState, req: SearchRequest) -> Option<Task> {
        let checked = match query::check(&req) {
            Ok(c) => c,
            Err(e) => {
                return Some(Task::Reply(Err(e)));
            }
        };
        let cursor = match req.cursor.as_deref().map(Cursor::decode).transpose() {
            Ok(c) => c,
            Err(e) => return Some(Task::Reply(Err(e))),
        };
        let vectors_possible = st.active.is_some() || st.building.is_some();
        let wanted = req.mode.unwrap_or(if vectors_possible { Mode::Hybrid } else { Mode::Lexical });
        let mut fallback = None;
        let mode = match (wanted, &st.active) {
            (Mode::Lexical, _) => Mode::Lexical,
            (m, Some(_)) => m,
            (_, None) => {
                fallback = Some(match &st.building {
                    Some(b) => format!(
                        "vectors for embedder {} are still being built ({} entries left); answered lexically",
                        label(b),
                        st.missing
                    ),
                    None => "no embedder is configured (embedder \"none\"); answered lexically. Choose one with `embedder` in edgeswarm.toml [search], EDGESWARM_EMBEDDER, --embedder, or SearchConfig::embedder".to_string(),
                });
                Mode::Lexical
            }
        };
        let mut parsed = query::parse(&req.query);
        // Natural language: stop words out, any word may match (BM25 sums the matches).
        let nl = self.natural_language && parsed.terms.len() > 1 && !query::is_explicit(&req.query);
        if nl {
            parsed = parsed.without_stop_words();
        }
        let mut notes = checked.notes.clone();
        if parsed.dropped > 0 {
            notes.push(format!(
                "only the first {} terms were searched ({} ignored)",
                query::MAX_TERMS,
                parsed.dropped
            ));
        }
        if nl {
            notes.push(format!(
                "natural-language query: searched for {}; showing entries with any of them (entries matching more of them rank first)",
                parsed.terms.iter().map(|t| t.words.join(" ")).collect::<Vec<_>>().join(", ")
            ));
        }
        let fts_all = parsed.fts(nl);
        if fts_all.is_none() {
            notes.push("the query has no searchable words (only punctuation or symbols)".into());
        }
        let fts_any = if parsed.terms.len() > 1 && !nl { parsed.fts(true) } else { None };
        let space = if mode == Mode::Lexical { None } else { st.active.clone() };
        let key = serde_json::to_string(&(&req, mode, space.as_ref().map(|s| s.slot))).unwrap_or_default();
        let vs = vector_state(st);
        if let Some(c) = &mut st.cache {
            if let Some(hit) = c.get(&key) {
                let mut r = hit.clone();
                r.cached = true;
                (r.embedder, r.vectors_complete) = vs;
                return Some(Task::Reply(Ok(r)));
            }
        }
        let plan = Plan {
            fts_all,
            fts_any,
            filters: req.filters.clone(),
            limit: checked.limit,
            offset: checked.offset,
            cursor,
            mode,
            vector: None,
            rank_window: self.rank_window,
            fast_all: parsed.fast(nl),
            fast_any: if parsed.terms.len() > 1 && !nl { parsed.fast(true) } else { None },
            lens: self.lens.clone(),
            coverage_terms: if nl && parsed.terms.len() > 1 {
                let mut t: Vec<String> = parsed
                    .terms
                    .iter()
                    .map(|t| engine::light_stem(&t.words.join(" ").to_lowercase()))
                    .collect();
                t.sort();
                t.dedup();
                t
            } else {
                Vec::new()
            },
            coverage_boost: if nl { self.coverage_boost } else { 0.0 },
            fusion: self.fusion,
        };
        Some(Task::Run {
            plan: Box::new(plan),
            text: req.query,
            space,
            fallback,
            notes,
            key,
            generation: st.generation,
        })
    }
}

/// What handling a query produced.
enum Task {
    Reply(Result<SearchResponse>),
    Run {
        plan: Box<Plan>,
        text: String,
        space: Option<Space>,
        fallback: Option<String>,
        notes: Vec<String>,
        key: String,
        generation: u64,
    },
}

async fn run_query(
    store: Store,
    mut plan: Plan,
    text: String,
    space: Option<Space>,
    mut fallback: Option<String>,
    notes: Vec<String>,
    deliver: Deliver,
) {
    let rank_window = plan.rank_window;
    let started = Instant::now();
    if let Some(s) = &space {
        let e = s.embedder.clone();
        let t = text.clone();
        let emb = tokio::task::spawn_blocking(move || e.embed(&[t.as_str()]))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match emb {
            Ok(mut v) if v.len() == 1 && v[0].len() == s.embedder.dim() => {
                plan.vector = Some(VectorQuery {
                    table: s.table.clone(),
                    index: s.index.clone(),
                    blob: crate::embed::to_blob(&v.remove(0)),
                });
            }
            Ok(_) => {
                fallback = Some(format!(
                    "embedder {} returned a malformed query vector; answered lexically",
                    label(s)
                ));
                plan.mode = Mode::Lexical;
            }
            Err(e) => {
                fallback = Some(format!("embedder {} failed on the query ({e}); answered lexically", label(s)));
                plan.mode = Mode::Lexical;
            }
        }
    }
    let coverage = !plan.coverage_terms.is_empty() && plan.coverage_boost > 0.0;
    if plan.mode == Mode::Lexical && !coverage && plan.cursor.is_some_and(|c| matches!(c, Cursor::Offset(_))) {
        return deliver.send(Err(SearchError::BadCursor(
            "this cursor came from a vector/hybrid page but the search now runs lexically; start over without a cursor".into(),
        )));
    }
    let mode = plan.mode;
    // The reader thread builds the response and wakes the caller directly (one hop fewer
    // on the critical path than replying through this task).
    let _ = store
        .read(move |r| {
            let res = engine::run(r, &plan).map(|found| finish(found, mode, fallback, notes, rank_window, started));
            deliver.send(res);
            Ok(())
        })
        .await;
}

fn finish(
    found: engine::Found,
    mode: Mode,
    mut fallback: Option<String>,
    mut notes: Vec<String>,
    rank_window: usize,
    started: Instant,
) -> SearchResponse {
    let mut final_mode = mode;
    if let Some(err) = found.vector_error {
        final_mode = Mode::Lexical;
        fallback = Some(format!("the vector search failed ({err}); answered lexically"));
    }
    if found.windowed {
        notes.push(format!(
            "the query matches more than {rank_window} entries; the {rank_window} most recent matches were ranked (SearchConfig::rank_window)"
        ));
    }
    if found.relaxed {
        notes.push("no entry has every word; showing entries with any of them".into());
    }
    tracing::debug!(
        mode = ?final_mode,
        hits = found.hits.len(),
        us = started.elapsed().as_micros() as u64,
        "search"
    );
    SearchResponse {
        hits: found.hits,
        mode: final_mode,
        fallback_reason: fallback,
        next_cursor: found.next.map(|c| c.encode()),
        notes,
        cached: false,
        embedder: None,
        vectors_complete: false,
    }
}

/// Where a query's answer goes: the caller, and the actor's cache.
struct Deliver {
    reply: oneshot::Sender<Result<SearchResponse>>,
    me: ActorRef<SearchMsg>,
    cache: Option<(u64, String)>,
    /// The vector state when the query started: embedder label and whether its vectors
    /// are complete (copied into the response).
    vectors: (Option<String>, bool),
}

impl Deliver {
    fn send(self, mut r: Result<SearchResponse>) {
        if let Ok(resp) = &mut r {
            resp.embedder = self.vectors.0.clone();
            resp.vectors_complete = self.vectors.1;
        }
        if let (Some((generation, key)), Ok(resp)) = (self.cache, &r) {
            let _ = self.me.cast(SearchMsg::CachePut {
                generation,
                key,
                resp: resp.clone(),
            });
        }
        let _ = self.reply.send(r);
    }
}

/// Start-up arguments of the actor.
pub struct SearchArgs {
    embedder: Option<SharedEmbedder>,
}

impl Actor for SearchActor {
    type Msg = SearchMsg;
    type State = SearchState;
    type Arguments = SearchArgs;

    async fn pre_start(&self, myself: ActorRef<SearchMsg>, args: SearchArgs) -> Result<SearchState, ActorProcessingErr> {
        let events = self.store.subscribe();
        let mut fwd = self.store.subscribe();
        let me = myself.clone();
        let poll_pending = Arc::new(AtomicBool::new(false));
        let pending = poll_pending.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                match fwd.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !pending.swap(true, Ordering::AcqRel) && me.cast(SearchMsg::Poll).is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let mut st = SearchState {
            cache: NonZeroUsize::new(self.cache_capacity).map(LruCache::new),
            generation: 0,
            events,
            forwarder,
            poll_pending,
            active: None,
            building: None,
            missing: 0,
            syncing: false,
            pending: BTreeSet::new(),
            need_fill: false,
            purge: false,
            last_error: None,
        };
        if let Some(e) = args.embedder {
            let (space, active) = vectors::ensure_space(&self.store, e).await?;
            if active {
                st.active = Some(space);
            } else {
                st.building = Some(space);
            }
            st.need_fill = true;
            st.purge = true;
            self.maybe_sync(&myself, &mut st);
        }
        tracing::info!(
            cache = self.cache_capacity,
            active = ?st.active,
            building = ?st.building,
            "search actor started"
        );
        Ok(st)
    }

    async fn post_stop(&self, _myself: ActorRef<SearchMsg>, st: &mut SearchState) -> Result<(), ActorProcessingErr> {
        st.forwarder.abort();
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<SearchMsg>, msg: SearchMsg, st: &mut SearchState) -> Result<(), ActorProcessingErr> {
        // The permit is held until this message is handled.
        let (msg, _permit) = match msg {
            SearchMsg::Counted(m, permit) => (*m, Some(permit)),
            m => (m, None),
        };
        if matches!(msg, SearchMsg::Poll) {
            // Before draining: a commit after this point sends a new Poll.
            st.poll_pending.store(false, Ordering::Release);
        }
        st.drain();
        match msg {
            SearchMsg::Query { req, reply } => match self.query(st, req) {
                Some(Task::Reply(r)) => {
                    let _ = reply.send(r);
                }
                Some(Task::Run {
                    plan,
                    text,
                    space,
                    fallback,
                    notes,
                    key,
                    generation,
                }) => {
                    let deliver = Deliver {
                        reply,
                        me: myself.clone(),
                        cache: st.cache.is_some().then_some((generation, key)),
                        vectors: vector_state(st),
                    };
                    tokio::spawn(run_query(self.store.clone(), *plan, text, space, fallback, notes, deliver));
                }
                None => {}
            },
            SearchMsg::CachePut { generation, key, resp } => {
                if generation == st.generation {
                    if let Some(c) = &mut st.cache {
                        c.put(key, resp);
                    }
                }
            }
            SearchMsg::Poll => {}
            SearchMsg::Wrote(ids) => {
                st.invalidate();
                if st.active.is_some() || st.building.is_some() {
                    st.pending.extend(ids);
                }
            }
            SearchMsg::SetEmbedder { embedder, reply } => {
                let r = match embedder {
                    None => {
                        st.active = None;
                        st.building = None;
                        st.invalidate();
                        Ok(())
                    }
                    Some(e) => match vectors::ensure_space(&self.store, e).await {
                        Ok((space, _)) => {
                            let same = st.active.as_ref().is_some_and(|a| a.slot == space.slot);
                            if same {
                                st.building = None;
                            } else {
                                // Keep serving the old space until the new one is full.
                                st.building = Some(space);
                                st.need_fill = true;
                            }
                            st.purge = true;
                            st.invalidate();
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                let _ = reply.send(r);
            }
            SearchMsg::SyncDone { results, switched_to } => {
                st.syncing = false;
                st.last_error = None;
                for (slot, r) in results {
                    match r {
                        Ok(rep) => {
                            let is_target = st
                                .building
                                .as_ref()
                                .map(|b| b.slot == slot)
                                .unwrap_or_else(|| st.active.as_ref().is_some_and(|a| a.slot == slot));
                            if is_target {
                                st.missing = rep.missing;
                            }
                            if rep.missing > 0 {
                                st.need_fill = true;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(slot, error = %e, "background embedding failed");
                            st.last_error = Some(e.to_string());
                        }
                    }
                }
                if let Some(slot) = switched_to {
                    if let Some(b) = st.building.take_if(|b| b.slot == slot) {
                        tracing::info!(embedder = %label(&b), "vectors ready; switching");
                        st.active = Some(b);
                        st.missing = 0;
                        st.invalidate();
                    }
                }
                if st.last_error.is_some() {
                    // Do not spin on a failing embedder; the next write retries.
                    st.need_fill = false;
                }
            }
            SearchMsg::Counted(..) => {}
            SearchMsg::Status { reply } => {
                let _ = reply.send(SearchStatus {
                    default_mode: if st.active.is_some() || st.building.is_some() {
                        Mode::Hybrid
                    } else {
                        Mode::Lexical
                    },
                    active_embedder: st.active.as_ref().map(label),
                    building_embedder: st.building.as_ref().map(label),
                    vectors_missing: st.missing,
                    cache_entries: st.cache.as_ref().map(|c| c.len()).unwrap_or(0),
                    last_error: st.last_error.clone(),
                    pending_changes: st.pending.len() + st.need_fill as usize,
                    syncing: st.syncing,
                    hot_terms: self.lens.as_ref().map(|l| l.hot_stats().0).unwrap_or(0),
                    hot_instances: self.lens.as_ref().map(|l| l.hot_stats().1).unwrap_or(0),
                });
            }
        }
        self.maybe_sync(&myself, st);
        Ok(())
    }
}

/// The typed handle to the search actor. Cheap to clone.
#[derive(Clone)]
pub struct Search {
    actor: ActorRef<SearchMsg>,
    store: Store,
    /// Bounds the caller messages queued or being handled by the actor (channel
    /// `search_mailbox`, `ChannelConfig::search_mailbox` permits).
    mailbox: Arc<Semaphore>,
    /// The number of permits `mailbox` started with.
    mailbox_capacity: usize,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").field("store", &self.store).finish()
    }
}

impl Search {
    /// Starts a search actor over `store`. With an embedder, vectors missing for it are
    /// built in the background (searches fall back to lexical, saying why, until ready).
    pub async fn start(store: Store, cfg: SearchConfig) -> Result<Search> {
        // Knowledge published on the store directly takes the same insert path.
        knowledge::install(&store);
        let actor = SearchActor {
            store: store.clone(),
            cache_capacity: cfg.cache_capacity,
            rank_window: cfg.rank_window,
            natural_language: cfg.natural_language,
            coverage_boost: cfg.coverage_boost,
            fusion: cfg.fusion,
            lens: cfg.fast_lexical.then(|| Arc::new(DocLens::new(&store.config().path))),
        };
        let (actor, _join) = Actor::spawn(None, actor, SearchArgs { embedder: cfg.embedder })
            .await
            .map_err(|e| SearchError::ActorGone(format!("could not start: {e}")))?;
        let mailbox_capacity = store.config().channels.search_mailbox.max(1);
        Ok(Search {
            actor,
            store,
            mailbox: Arc::new(Semaphore::new(mailbox_capacity)),
            mailbox_capacity,
        })
    }

    /// Depth and capacity of the actor's bounded mailbox (channel `search_mailbox`):
    /// caller messages queued or being handled.
    pub fn mailbox(&self) -> edgeswarm_core::ChannelStats {
        let depth = self.mailbox_capacity.saturating_sub(self.mailbox.available_permits());
        edgeswarm_core::ChannelStats::new("search_mailbox", depth, self.mailbox_capacity)
    }

    /// Sends a caller message once a mailbox permit is free (waiting while it is full),
    /// or, with `wait == false`, fails with `Overloaded` when it is full.
    async fn send(&self, msg: SearchMsg, wait: bool) -> Result<()> {
        let permit = if wait {
            self.mailbox.clone().acquire_owned().await.ok()
        } else {
            match self.mailbox.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(TryAcquireError::NoPermits) => {
                    return Err(SearchError::Overloaded {
                        capacity: self.mailbox_capacity,
                    })
                }
                Err(TryAcquireError::Closed) => None,
            }
        };
        let permit = permit.ok_or_else(|| SearchError::ActorGone("its mailbox is closed".into()))?;
        self.actor
            .cast(SearchMsg::Counted(Box::new(msg), permit))
            .map_err(|e| SearchError::ActorGone(e.to_string()))
    }

    /// The store this search reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn call<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> SearchMsg) -> Result<T> {
        self.call_with(f, true).await
    }

    async fn call_with<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> SearchMsg, wait: bool) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(f(tx), wait).await?;
        rx.await
            .map_err(|_| SearchError::ActorGone("the request was dropped (the actor or the store stopped)".into()))
    }

    /// Runs a search.
    /// Waits while the actor's mailbox is full.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResponse> {
        self.call(|reply| SearchMsg::Query { req, reply }).await?
    }

    /// Runs a search, or returns [`SearchError::Overloaded`] at once when the actor's
    /// mailbox is full (`ChannelConfig::search_mailbox` requests waiting).
    pub async fn try_search(&self, req: SearchRequest) -> Result<SearchResponse> {
        self.call_with(|reply| SearchMsg::Query { req, reply }, false).await?
    }

    /// Runs a search given as JSON (`{"query": .., "mode": .., "filters": {..}, "limit": ..,
    /// "offset": .., "cursor": ..}`); unknown fields are an error.
    pub async fn search_json(&self, v: &serde_json::Value) -> Result<SearchResponse> {
        self.search(SearchRequest::from_json(v)?).await
    }

    /// Adds an entry with dedup (see [`knowledge::add_knowledge`]).
    pub async fn add_knowledge(&self, k: Knowledge) -> Result<AddOutcome> {
        let r = knowledge::add_knowledge(&self.store, k).await;
        self.wrote(r.as_ref().map(|o| o.id.clone()).ok()).await;
        r
    }

    /// Changes an entry (see [`knowledge::update_knowledge`]).
    pub async fn update_knowledge(&self, id: &str, upd: KnowledgeUpdate) -> Result<()> {
        let r = knowledge::update_knowledge(&self.store, id, upd).await;
        self.wrote(Some(id.to_string())).await;
        r
    }

    /// Tombstones an entry; false if there was no live entry with this id.
    pub async fn delete_knowledge(&self, id: &str) -> Result<bool> {
        let r = knowledge::delete_knowledge(&self.store, id).await;
        self.wrote(Some(id.to_string())).await;
        r
    }

    /// Tells the actor about our own write (waits for a mailbox permit: an
    /// invalidation must not be dropped).
    async fn wrote(&self, id: Option<String>) {
        let _ = self.send(SearchMsg::Wrote(id.into_iter().collect()), true).await;
    }

    /// The whole live entry with this id.
    pub async fn get_knowledge(&self, id: &str) -> Result<Option<KnowledgeEntry>> {
        knowledge::get_knowledge(&self.store, id).await
    }

    /// Switches embedder. Search keeps serving the current vectors while the new ones are
    /// built in the background, then switches. `None` turns vector search off.
    pub async fn set_embedder(&self, embedder: Option<SharedEmbedder>) -> Result<()> {
        self.call(|reply| SearchMsg::SetEmbedder { embedder, reply }).await?
    }

    /// What the actor is doing (active / building embedder, backlog, cache size).
    pub async fn status(&self) -> Result<SearchStatus> {
        self.call(|reply| SearchMsg::Status { reply }).await
    }

    /// Waits until no embedder is being built and no vectors are missing (or `timeout`).
    /// Returns whether vectors are ready.
    pub async fn wait_vectors_ready(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await?;
            if s.building_embedder.is_none()
                && s.vectors_missing == 0
                && s.active_embedder.is_some()
                && s.pending_changes == 0
                && !s.syncing
            {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            // Nudge the actor so queued changes get a pass.
            let _ = self.actor.cast(SearchMsg::Poll);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the actor (the store stays open).
    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
