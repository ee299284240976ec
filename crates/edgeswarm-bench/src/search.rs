//! The search benchmark behind `edgeswarm bench search --json`.
//!
//! Generates knowledge entries with a fixed seed (Zipf-distributed words over a
//! synthetic vocabulary), then measures lexical search through the [`Search`] handle
//! (actor + read pool, cache off) from several threads, and in the same run on the same
//! data the `LIKE '%term%'` scan the Turso MCP servers use. Also: how p50 grows with the
//! corpus size, and ingest throughput with the FTS index on and off.

use crate::error::{BenchError, Result};
use crate::util::{loadavg, round3, scratch_dir};
use edgeswarm_core::{Durability, Knowledge, LatencyHistogram, StoreConfig};
use edgeswarm_search::{Mode, Search, SearchConfig, SearchRequest};
use edgeswarm_store::{PendingAck, SqlValue, Store};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::Instrument;

/// Benchmark settings. `Default` is the documented run (about a minute in release mode on
/// a 2-core machine).
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Entries in the main corpus. Default 100,000.
    pub entries: usize,
    /// Search queries measured on the main corpus. Default 10,000.
    pub queries: usize,
    /// Client threads issuing queries concurrently. Default 2.
    pub threads: usize,
    /// `LIKE` queries measured (each is a table scan, so fewer). Default 200.
    pub like_queries: usize,
    /// Largest corpus for the scale curve: 100,000 by default; 1,000,000 adds the 1M point
    /// (`--scale`; takes several minutes).
    pub scale_max: usize,
    /// Queries per scale point. Default 2,000.
    pub scale_queries: usize,
    /// Rows inserted for each of the FTS-on / FTS-off ingest runs. Default 20,000.
    pub ingest_rows: usize,
    /// RNG seed for data and queries. Default 42.
    pub seed: u64,
    /// Where the scratch databases go; default a fresh directory under the system temp
    /// dir, removed afterwards.
    pub dir: Option<PathBuf>,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            entries: 100_000,
            queries: 10_000,
            threads: 2,
            like_queries: 200,
            scale_max: 100_000,
            scale_queries: 2_000,
            ingest_rows: 20_000,
            seed: 42,
            dir: None,
        }
    }
}

/// splitmix64: small, fast, deterministic.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const VOCAB: usize = 5_000;
/// Query words are drawn from ranks >= this (the most frequent words act as stop words).
const QUERY_MIN_RANK: usize = 100;

pub(crate) struct Corpus {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Corpus {
    pub(crate) fn new(seed: u64) -> Corpus {
        let syll = [
            "ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "pe", "da", "zu", "qui", "ber", "lan", "tor", "mex", "sa", "fi", "gon", "dre",
            "ul", "ax", "em", "io",
        ];
        let mut rng = Rng(seed ^ 0x5eed);
        let mut words = Vec::with_capacity(VOCAB);
        let mut seen = std::collections::HashSet::new();
        while words.len() < VOCAB {
            let n = 2 + rng.below(3);
            let w: String = (0..n).map(|_| syll[rng.below(syll.len())]).collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        // Zipf, s = 1.
        let mut cdf = Vec::with_capacity(VOCAB);
        let mut acc = 0.0;
        for r in 1..=VOCAB {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Corpus { words, cdf }
    }
    fn word(&self, rng: &mut Rng) -> &str {
        let u = rng.unit();
        let i = self.cdf.partition_point(|c| *c < u).min(VOCAB - 1);
        &self.words[i]
    }
    fn sentence(&self, rng: &mut Rng, n: usize) -> String {
        let mut s = String::with_capacity(n * 8);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.word(rng));
        }
        s
    }
    pub(crate) fn entry(&self, rng: &mut Rng, i: usize) -> Knowledge {
        const CATS: [&str; 8] = ["architecture", "ops", "research", "bugs", "howto", "design", "data", "security"];
        const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
        let topic_len = 3 + rng.below(4);
        let content_len = 20 + rng.below(41);
        let topic = self.sentence(rng, topic_len);
        let content = self.sentence(rng, content_len);
        let ntags = 1 + rng.below(3);
        let tags: Vec<String> = (0..ntags).map(|_| format!("tag{}", rng.below(50))).collect();
        let mut k = Knowledge::new(CATS[rng.below(CATS.len())], topic, content)
            .tags(tags)
            .region(REGIONS[rng.below(REGIONS.len())]);
        k.id = format!("bench-{i:08}");
        k
    }
    /// A query: one word (70%) or two (30%), drawn uniformly from vocabulary ranks
    /// 100..5000.
    pub(crate) fn query(&self, rng: &mut Rng) -> String {
        let two = rng.below(10) >= 7;
        let mut pick = || self.words[QUERY_MIN_RANK + rng.below(VOCAB - QUERY_MIN_RANK)].clone();
        if two {
            let a = pick();
            format!("{a} {}", pick())
        } else {
            pick()
        }
    }
}

async fn open(path: &Path) -> Result<Store> {
    let mut cfg = StoreConfig::at(path);
    cfg.durability = Durability::Normal;
    let store = Store::open(cfg).await?;
    edgeswarm_search::knowledge::install(&store);
    Ok(store)
}

/// Inserts entries `from..to` through the typed write path; returns rows/s.
async fn ingest(store: &Store, corpus: &Corpus, seed: u64, from: usize, to: usize) -> Result<f64> {
    let started = Instant::now();
    let mut rng = Rng(seed.wrapping_add(from as u64).wrapping_mul(0x2545f4914f6cdd1d));
    let mut acks: Vec<PendingAck> = Vec::with_capacity(4096);
    for i in from..to {
        acks.push(store.enqueue_record(corpus.entry(&mut rng, i)).await?);
        if acks.len() == 4096 {
            for a in acks.drain(..) {
                a.wait().await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.wait().await?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok((to - from) as f64 / secs)
}

/// Runs `queries` from `threads` OS threads; returns (qps, latencies).
async fn measure(search: &Search, queries: Vec<String>, threads: usize) -> Result<(f64, LatencyHistogram)> {
    let handle = tokio::runtime::Handle::current();
    let threads = threads.max(1);
    let chunk = queries.len().div_ceil(threads);
    let parts: Vec<Vec<String>> = queries.chunks(chunk.max(1)).map(|c| c.to_vec()).collect();
    let started = Instant::now();
    let mut joins = Vec::new();
    for part in parts {
        let (h, s) = (handle.clone(), search.clone());
        joins.push(std::thread::spawn(move || -> Result<LatencyHistogram> {
            let mut lat = LatencyHistogram::new();
            for q in part {
                let t = Instant::now();
                h.block_on(s.search(SearchRequest::new(q).mode(Mode::Lexical)))?;
                lat.record(t.elapsed());
            }
            Ok(lat)
        }));
    }
    let all = tokio::task::spawn_blocking(move || {
        let mut all = LatencyHistogram::new();
        for j in joins {
            all.merge(&j.join().map_err(|_| BenchError::Other("a query thread panicked".into()))??);
        }
        Ok::<_, BenchError>(all)
    })
    .await??;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok((all.count() as f64 / secs, all))
}

/// Round-trip latency (ms, p50) of an empty read-pool job and of an actor status call,
/// from a client thread: the fixed cost every query pays before any SQL runs.
async fn overhead(search: &Search, n: usize) -> Result<(f64, f64)> {
    let (h, s) = (tokio::runtime::Handle::current(), search.clone());
    let j = std::thread::spawn(move || -> Result<(LatencyHistogram, LatencyHistogram)> {
        let mut read = LatencyHistogram::new();
        let mut actor = LatencyHistogram::new();
        for _ in 0..n {
            let t = Instant::now();
            h.block_on(s.store().read(|_| Ok(())))?;
            read.record(t.elapsed());
            let t = Instant::now();
            h.block_on(s.status())?;
            actor.record(t.elapsed());
        }
        Ok((read, actor))
    });
    let (read, actor) =
        tokio::task::spawn_blocking(move || j.join().map_err(|_| BenchError::Other("overhead thread panicked".into()))).await???;
    Ok((read.percentile_ms(0.5), actor.percentile_ms(0.5)))
}

/// The LIKE search agent-memory MCP servers run: substring match on content, topic and
/// tags, newest first.
const LIKE_ORDERED: &str =
    "SELECT id, topic, content FROM knowledge WHERE content LIKE ?1 OR topic LIKE ?1 OR tags LIKE ?1 ORDER BY created_at DESC LIMIT 10";
/// The same without an order: stops at the 10th match (cheaper for common words).
const LIKE_FIRST10: &str = "SELECT id, topic, content FROM knowledge WHERE content LIKE ?1 OR topic LIKE ?1 LIMIT 10";

/// A LIKE scan from `threads` concurrent tasks.
async fn measure_like(store: &Store, terms: Vec<String>, threads: usize, sql: &'static str) -> Result<(f64, f64)> {
    let threads = threads.max(1);
    let chunk = terms.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in terms.chunks(chunk).map(|c| c.to_vec()) {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = LatencyHistogram::new();
            for t in part {
                let s = Instant::now();
                st.read(move |r| r.query(sql, vec![SqlValue::Text(format!("%{t}%"))])).await?;
                lat.record(s.elapsed());
            }
            Ok::<_, BenchError>(lat)
        }));
    }
    let mut all = LatencyHistogram::new();
    for t in tasks {
        all.merge(&t.await??);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok((all.count() as f64 / secs, all.percentile_ms(0.5)))
}

async fn ingest_run(dir: &Path, name: &str, corpus: &Corpus, opts: &BenchOpts, fts: bool) -> Result<f64> {
    let store = open(&dir.join(name)).await?;
    if !fts {
        store
            .transact(|ctx| {
                ctx.execute("DROP TRIGGER IF EXISTS knowledge_fts_ai", vec![])?;
                Ok(())
            })
            .await?;
    }
    let r = ingest(&store, corpus, opts.seed, 0, opts.ingest_rows).await;
    store.shutdown().await?;
    r
}

/// Runs the benchmark; returns one JSON object (see the fields' `*_note`s).
pub async fn bench(opts: BenchOpts) -> Result<Value> {
    let span = tracing::info_span!("search_bench", entries = opts.entries);
    let dir = scratch_dir(opts.dir.as_deref(), "search-bench")?;
    let out = run(&opts, &dir).instrument(span).await;
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

async fn run(opts: &BenchOpts, dir: &Path) -> Result<Value> {
    let total = Instant::now();
    let load_start = loadavg();
    let corpus = Corpus::new(opts.seed);
    let mut qrng = Rng(opts.seed ^ 0x0051_ee7c_a11e_d5e7);

    // Ingest with and without the FTS index (separate scratch files).
    let fts_on = ingest_run(dir, "ingest_on.db", &corpus, opts, true).await?;
    let fts_off = ingest_run(dir, "ingest_off.db", &corpus, opts, false).await?;

    let store = open(&dir.join("bench.db")).await?;
    let search = Search::start(store.clone(), SearchConfig::new().cache_capacity(0)).await?;
    let mut scale = serde_json::Map::new();
    let mut have = 0usize;
    let mut points: Vec<usize> = vec![10_000, opts.entries];
    if opts.scale_max > opts.entries {
        points.push(opts.scale_max);
    }
    points.retain(|p| *p <= opts.scale_max.max(opts.entries));
    points.sort_unstable();
    points.dedup();
    let mut main: Option<Value> = None;
    for p in points {
        ingest(&store, &corpus, opts.seed, have, p).await?;
        have = p;
        let _ = store
            .transact(|ctx| {
                ctx.execute("INSERT INTO knowledge_fts(knowledge_fts) VALUES ('optimize')", vec![])?;
                Ok(())
            })
            .await;
        if p == opts.entries {
            let queries: Vec<String> = (0..opts.queries).map(|_| corpus.query(&mut qrng)).collect();
            // Warm up caches (page cache, prepared statements) before timing.
            let warm: Vec<String> = queries.iter().take(200).cloned().collect();
            measure(&search, warm, opts.threads).await?;
            let (qps, lat) = measure(&search, queries.clone(), opts.threads).await?;
            let hot = search.status().await?;
            let like_terms: Vec<String> = queries
                .iter()
                .take(opts.like_queries)
                .map(|q| q.split(' ').next().unwrap_or_default().to_string())
                .collect();
            // What agent-memory MCP servers run: newest matching entries first, which
            // scans every row. The unordered variant stops at the 10th match.
            let (like_qps, like_p50) = measure_like(&store, like_terms.clone(), opts.threads, LIKE_ORDERED).await?;
            let (like_first_qps, like_first_p50) = measure_like(&store, like_terms, opts.threads, LIKE_FIRST10).await?;
            // Baseline, same run and data: FTS5 ranks every match itself (`ORDER BY rank`,
            // bm25() per row, snippet()), i.e. the engine without the fast ranker.
            let fts5 = Search::start(store.clone(), SearchConfig::new().cache_capacity(0).fast_lexical(false)).await?;
            let sub: Vec<String> = queries.iter().take(opts.scale_queries).cloned().collect();
            let (ex_qps, ex_lat) = measure(&fts5, sub.clone(), opts.threads).await?;
            fts5.stop();
            // Same run, same queries, every word required (the behaviour before sentence
            // handling): two-word queries are sentences now (any word, coverage re-rank),
            // which matches more rows; this line shows the engine itself beside it.
            let all_words = Search::start(store.clone(), SearchConfig::new().cache_capacity(0).natural_language(false)).await?;
            measure(&all_words, queries.iter().take(200).cloned().collect(), opts.threads).await?;
            let (aw_qps, aw_lat) = measure(&all_words, queries.clone(), opts.threads).await?;
            all_words.stop();
            let (read_rt, actor_rt) = overhead(&search, 1000).await?;
            main = Some(json!({
                "qps": round3(qps),
                "p50_ms": round3(lat.percentile_ms(0.5)),
                "p90_ms": round3(lat.percentile_ms(0.9)),
                "p99_ms": round3(lat.percentile_ms(0.99)),
                "max_ms": round3(lat.max_ms()),
                "like_qps": round3(like_qps),
                "like_p50_ms": round3(like_p50),
                "like_first10_qps": round3(like_first_qps),
                "like_first10_p50_ms": round3(like_first_p50),
                "speedup_vs_first10": round3(qps / like_first_qps.max(1e-9)),
                "speedup": round3(qps / like_qps.max(1e-9)),
                "rank_window": edgeswarm_search::actor::DEFAULT_RANK_WINDOW,
                "hot_terms": hot.hot_terms,
                "hot_instances": hot.hot_instances,
                "read_pool_roundtrip_p50_ms": round3(read_rt),
                "actor_roundtrip_p50_ms": round3(actor_rt),
                "all_words": {
                    "qps": round3(aw_qps),
                    "p50_ms": round3(aw_lat.percentile_ms(0.5)),
                    "p99_ms": round3(aw_lat.percentile_ms(0.99)),
                },
                "fts5_rank": {
                    "queries": opts.scale_queries,
                    "qps": round3(ex_qps),
                    "p50_ms": round3(ex_lat.percentile_ms(0.5)),
                    "p99_ms": round3(ex_lat.percentile_ms(0.99)),
                    "speedup": round3(ex_qps / like_qps.max(1e-9)),
                },
            }));
            scale.insert(format!("p50_ms_at_{p}"), json!(round3(lat.percentile_ms(0.5))));
        } else {
            let queries: Vec<String> = (0..opts.scale_queries).map(|_| corpus.query(&mut qrng)).collect();
            let warm: Vec<String> = queries.iter().take(100).cloned().collect();
            measure(&search, warm, opts.threads).await?;
            let (_, lat) = measure(&search, queries, opts.threads).await?;
            scale.insert(format!("p50_ms_at_{p}"), json!(round3(lat.percentile_ms(0.5))));
            scale.insert(format!("p99_ms_at_{p}"), json!(round3(lat.percentile_ms(0.99))));
        }
    }
    search.stop();
    store.shutdown().await?;
    let mut v = main.ok_or_else(|| BenchError::Other("the main corpus size was not measured".into()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("bench".into(), json!("search"));
        o.insert("mode".into(), json!("lexical"));
        o.insert("entries".into(), json!(opts.entries));
        o.insert("queries".into(), json!(opts.queries));
        o.insert("threads".into(), json!(opts.threads));
        o.insert("like_queries".into(), json!(opts.like_queries));
        o.insert("scale".into(), Value::Object(scale));
        o.insert("ingest_rows_per_sec_fts_on".into(), json!(round3(fts_on)));
        o.insert("ingest_rows_per_sec_fts_off".into(), json!(round3(fts_off)));
        o.insert("ingest_rows".into(), json!(opts.ingest_rows));
        o.insert("seed".into(), json!(opts.seed));
        o.insert(
            "cpus".into(),
            json!(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)),
        );
        o.insert("loadavg_1m_start_end".into(), json!([load_start, loadavg()]));
        o.insert("targets".into(), json!({"p99_ms_max": 2.0, "speedup_min": 50.0}));
        o.insert("elapsed_s".into(), json!(round3(total.elapsed().as_secs_f64())));
        o.insert(
            "notes".into(),
            json!(format!(
                "lexical BM25 (topic>tags>content weights, snippets) through the Search actor and read pool, hot-query cache OFF, \
                 exact BM25 over every match (rank_window 0) computed by the fast ranker (term instance lists + in-memory token counts; \
                 bit-identical scores and snippets to FTS5's; a term with >= 128 instances stays in memory after its first query (one under 1,000 only while 16 MiB are not yet held), patched on writes: \
                 `hot_terms`/`hot_instances` at the end; the first query of each such term reads it from the index); \
                 `fts5_rank` = the same queries with FTS5 ranking every match itself (`ORDER BY rank`); \
                 latency is per query seen by the caller; percentiles are nearest rank (edgeswarm_core::latency). Corpus: Zipf(s=1) over {VOCAB} synthetic words, topic 3-6 words, content 20-60, 1-3 tags. \
                 Queries: 70% one word, 30% two words, uniform over vocabulary ranks {QUERY_MIN_RANK}..{VOCAB} (the top 100 words act as stop words). \
                 like_qps: `SELECT id, topic, content FROM knowledge WHERE content LIKE '%t%' OR topic LIKE '%t%' OR tags LIKE '%t%' ORDER BY created_at DESC LIMIT 10` \
                 (newest matches first, as agent-memory MCP servers do; a full scan) with the first word of the same queries, {} of them, same threads, same data; \
                 like_first10_qps: the same without ORDER BY and tags (stops at the 10th match). Ingest: typed Store::enqueue_record, durability=normal, FTS-off = FTS insert trigger dropped.",
                opts.like_queries
            )),
        );
    }
    Ok(v)
}
