//! `edgeswarm bench mcp --peer`: edgeswarm and a peer agent-memory MCP server,
//! mcp-memory-libsql 0.0.17 (npm), driven by the same client ([`Rpc`], stdio,
//! one request at a time) in the same run, with the same documents and the same queries.
//!
//! Two corpora:
//! - `narrow`: every word of every document comes from one 60-word domain vocabulary,
//!   as one project's memories share their words; every query word matches a large share
//!   of the documents.
//! - `zipf`: the search bench's generator (Zipf(s=1) over 5,000 synthetic words).
//! - a file: the user's own documents and queries (JSON lines; see [`FileCorpus`]), so the
//!   comparison runs on the work a user brings.
//!
//! For each corpus: the first `docs[0]` documents are added one call each to both
//! servers (timed: the add figure), then `queries` searches of 1-3 words run against
//! both (timed). Each further scale adds documents up to its size (edgeswarm one call
//! each; the peer 50 entities a call, its maximum, so loading it takes minutes rather
//! than tens of minutes) and runs the same queries again.
//!
//! What each side does with a query is its own: edgeswarm ranks every match with BM25
//! (its default mode); the peer runs `LIKE '%w1%w2%'` over names, types and observations
//! and orders by its relevance score, then reads each hit's observations. Both return up
//! to 10 results; `mean_hits` says how many came back.

use crate::error::BenchError;
use crate::mcp::{edgeswarm_exe, summary, Rpc};
use crate::search::{Corpus, Rng};
use crate::util::{round3, scratch_dir};
use edgeswarm_core::LatencyHistogram;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The peer's npm package and version, as the issue measured it.
pub const PEER_PACKAGE: &str = "mcp-memory-libsql";
/// Pinned peer version.
pub const PEER_VERSION: &str = "0.0.17";

/// Targets the ratios are checked against (printed, never asserted).
const TARGET_ADD_AT_FIRST: f64 = 2.5;
const TARGET_SEARCH_AT_FIRST: f64 = 8.0;
const TARGET_SEARCH_AT_50K: f64 = 30.0;

/// Bench settings.
#[derive(Debug, Clone)]
pub struct PeerOpts {
    /// Corpus sizes, ascending; adds are timed up to the first. Default 5,000 and 50,000.
    pub docs: Vec<usize>,
    /// Timed searches per scale and corpus. Default 500.
    pub queries: usize,
    /// Untimed calls per tool first. Default 20.
    pub warmup: usize,
    /// Corpora to run: `narrow`, `zipf`, or the path of a JSON-lines corpus file
    /// ([`FileCorpus`]). Default `narrow` and `zipf`.
    pub corpora: Vec<String>,
    /// The `edgeswarm` binary; default `$EDGESWARM_BIN`, else this executable.
    pub exe: Option<PathBuf>,
    /// The peer's `dist/index.js`; default `$EDGESWARM_PEER_JS`, else installed with npm
    /// into [`peer_cache_dir`] on first use.
    pub peer_js: Option<PathBuf>,
    /// Seed for documents and queries. Default 7.
    pub seed: u64,
}

impl Default for PeerOpts {
    fn default() -> Self {
        PeerOpts {
            docs: vec![5_000, 50_000],
            queries: 500,
            warmup: 20,
            corpora: vec!["narrow".into(), "zipf".into()],
            exe: None,
            peer_js: None,
            seed: 7,
        }
    }
}

/// Where the peer is installed: `$EDGESWARM_CACHE/peer`, else `$XDG_CACHE_HOME/edgeswarm/peer`,
/// else `~/.cache/edgeswarm/peer`.
pub fn peer_cache_dir() -> PathBuf {
    let base = std::env::var_os("EDGESWARM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("edgeswarm")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("edgeswarm")))
        .unwrap_or_else(|| std::env::temp_dir().join("edgeswarm-cache"));
    base.join("peer").join(format!("{PEER_PACKAGE}-{PEER_VERSION}"))
}

/// Finds the peer's entry script, installing the pinned version with npm if needed.
pub fn ensure_peer(explicit: Option<PathBuf>) -> Result<PathBuf, BoxError> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("EDGESWARM_PEER_JS").map(PathBuf::from)) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("the peer script {} does not exist", p.display()).into())
        };
    }
    let dir = peer_cache_dir();
    let js = dir.join("node_modules").join(PEER_PACKAGE).join("dist").join("index.js");
    if js.is_file() {
        return Ok(js);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    eprintln!("installing {PEER_PACKAGE}@{PEER_VERSION} with npm into {}", dir.display());
    let st = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .arg(format!("{PEER_PACKAGE}@{PEER_VERSION}"))
        .status()
        .map_err(|e| format!("cannot run npm to install the peer ({e}); install Node.js and npm, or set EDGESWARM_PEER_JS"))?;
    if !st.success() || !js.is_file() {
        return Err(format!("npm install {PEER_PACKAGE}@{PEER_VERSION} failed ({st}); set EDGESWARM_PEER_JS to its dist/index.js").into());
    }
    Ok(js)
}

/// The 60-word vocabulary of the narrow corpus: one project's operations memory.
const NARROW: [&str; 60] = [
    "deploy",
    "rollback",
    "migration",
    "schema",
    "index",
    "latency",
    "cache",
    "replica",
    "region",
    "failover",
    "backup",
    "restore",
    "token",
    "session",
    "queue",
    "worker",
    "retry",
    "timeout",
    "budget",
    "alert",
    "metric",
    "dashboard",
    "incident",
    "owner",
    "release",
    "branch",
    "review",
    "test",
    "flaky",
    "build",
    "pipeline",
    "artifact",
    "config",
    "secret",
    "quota",
    "limit",
    "throttle",
    "batch",
    "stream",
    "partition",
    "shard",
    "leader",
    "follower",
    "consensus",
    "snapshot",
    "compaction",
    "vacuum",
    "checkpoint",
    "wal",
    "fsync",
    "disk",
    "memory",
    "cpu",
    "network",
    "dns",
    "certificate",
    "proxy",
    "gateway",
    "customer",
    "contract",
];

/// `n` words of the narrow vocabulary, uniformly drawn, space-separated.
fn narrow_words(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| NARROW[rng.below(NARROW.len())]).collect::<Vec<_>>().join(" ")
}

/// One generated document, shaped for both servers.
#[derive(Debug, Clone)]
struct Doc {
    category: String,
    topic: String,
    content: String,
    tags: Vec<String>,
}

impl Doc {
    /// `add_knowledge` arguments.
    fn edgeswarm_args(&self) -> Value {
        json!({"category": self.category, "topic": self.topic, "content": self.content, "tags": self.tags})
    }
    /// The peer's entity: the topic (made unique, as names are its keys) is the name, the
    /// category its type, the content and the tags its observations.
    fn peer_entity(&self, i: usize) -> Value {
        json!({
            "name": format!("{} {i}", self.topic),
            "entityType": self.category,
            "observations": [self.content, format!("tags: {}", self.tags.join(" "))],
        })
    }
}

/// A corpus file: one JSON object per line, either a document
/// `{"content": "...", "topic": "...", "category": "...", "tags": ["..."]}` (only
/// `content` is required; `topic` defaults to the content's first words, `category` to
/// `docs`) or a query `{"query": "..."}`. Documents are added in file order; queries
/// are asked in file order, repeated when `--peer-queries` asks for more.
#[derive(Debug, Clone)]
pub struct FileCorpus {
    /// The documents, in file order.
    docs: Vec<Doc>,
    /// The queries, in file order.
    queries: Vec<String>,
}

impl FileCorpus {
    /// Reads and checks a corpus file; errors name the line.
    pub fn load(path: &Path) -> Result<FileCorpus, BoxError> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the corpus {}: {e}", path.display()))?;
        let mut c = FileCorpus {
            docs: vec![],
            queries: vec![],
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{} line {}", path.display(), n + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| format!("{}: not JSON ({e})", at()))?;
            if let Some(q) = v.get("query") {
                let q = q
                    .as_str()
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| format!("{}: `query` must be a non-empty string", at()))?;
                c.queries.push(q.to_string());
                continue;
            }
            let content = v["content"]
                .as_str()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| format!("{}: a document needs a non-empty `content` string (or the line is a `query`)", at()))?;
            let text_of = |k: &str| v[k].as_str().map(str::to_string);
            let tags = match &v["tags"] {
                Value::Null => vec![],
                Value::Array(a) => a
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("{}: `tags` must be strings", at()))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("{}: `tags` must be an array of strings", at()).into()),
            };
            c.docs.push(Doc {
                category: text_of("category").unwrap_or_else(|| "docs".into()),
                topic: text_of("topic").unwrap_or_else(|| content.split_whitespace().take(6).collect::<Vec<_>>().join(" ")),
                content: content.to_string(),
                tags,
            });
        }
        if c.docs.is_empty() || c.queries.is_empty() {
            return Err(format!(
                "{}: a corpus needs documents and queries ({} documents, {} queries found)",
                path.display(),
                c.docs.len(),
                c.queries.len()
            )
            .into());
        }
        Ok(c)
    }
}

/// A corpus: generated documents and queries from one seed, or a file's.
enum Gen {
    Narrow,
    Zipf(Corpus),
    File(FileCorpus),
}

impl Gen {
    fn new(name: &str, seed: u64) -> Result<Gen, BoxError> {
        match name {
            "narrow" => Ok(Gen::Narrow),
            "zipf" => Ok(Gen::Zipf(Corpus::new(seed))),
            path if Path::new(path).is_file() => Ok(Gen::File(FileCorpus::load(Path::new(path))?)),
            other => Err(format!("unknown corpus {other:?}: narrow, zipf, or the path of a JSON-lines corpus file").into()),
        }
    }
    /// The most documents this corpus has (generated ones: no limit).
    fn max_docs(&self) -> usize {
        match self {
            Gen::File(f) => f.docs.len(),
            _ => usize::MAX,
        }
    }
    /// Document `i`; `i` past [`Gen::max_docs`] is a warm-up document (a file's get a
    /// marker so they never duplicate a timed one).
    fn doc(&self, rng: &mut Rng, i: usize) -> Doc {
        match self {
            Gen::File(f) => {
                let mut d = f.docs[i % f.docs.len()].clone();
                if i >= f.docs.len() {
                    d.content = format!("warm-up {i}: {}", d.content);
                }
                d
            }
            Gen::Narrow => {
                let topic = narrow_words(rng, 3);
                let content = narrow_words(rng, 20);
                let tags = vec![narrow_words(rng, 1), narrow_words(rng, 1)];
                let n = rng.below(21);
                let extra = narrow_words(rng, n);
                Doc {
                    category: format!("project-{}", i % 4),
                    topic,
                    content: if extra.is_empty() { content } else { format!("{content} {extra}") },
                    tags,
                }
            }
            Gen::Zipf(c) => {
                let k = c.entry(rng, i);
                Doc {
                    category: k.category,
                    topic: k.topic,
                    content: k.content,
                    tags: k.tags,
                }
            }
        }
    }
    /// Query number `n` (generated ones from `rng`).
    fn query(&self, rng: &mut Rng, n: usize) -> String {
        match self {
            Gen::File(f) => f.queries[n % f.queries.len()].clone(),
            Gen::Narrow => {
                let n = 1 + rng.below(3);
                narrow_words(rng, n)
            }
            Gen::Zipf(c) => c.query(rng),
        }
    }
}

/// One side of the comparison: its client and how it adds and searches.
struct Side {
    /// The client of the running server.
    rpc: Rpc,
    /// The peer's start command (node, its script, its database), to restart it; `None`
    /// for edgeswarm.
    peer: Option<(PathBuf, PathBuf)>,
}

/// Entities the peer takes between restarts while loading. mcp-memory-libsql opens a
/// libSQL connection per write transaction and leaves closing it to the garbage
/// collector: loading tens of thousands of entities in one process runs out of file
/// descriptors (SQLITE_CANTOPEN past ~20,000 on this machine). Restarting it between
/// chunks keeps the load going; its data is in its file.
const PEER_RESTART_EVERY: usize = 10_000;

/// Starts the peer on `db`.
async fn start_peer(js: &Path, db: &Path) -> Result<(Rpc, Value), BoxError> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(js).env("LIBSQL_URL", format!("file:{}", db.display()));
    Rpc::start(cmd, &format!("`node {}`", js.display())).await
}

impl Side {
    async fn add(&mut self, d: &Doc, i: usize) -> Result<(), BoxError> {
        if self.peer.is_some() {
            self.rpc.tool("create_entities", json!({"entities": [d.peer_entity(i)]})).await?;
        } else {
            self.rpc.tool("add_knowledge", d.edgeswarm_args()).await?;
        }
        Ok(())
    }
    /// Adds untimed, as fast as each side allows (the peer takes 50 entities a call).
    async fn load(&mut self, docs: &[(usize, Doc)]) -> Result<(), BoxError> {
        if let Some((js, db)) = self.peer.clone() {
            for part in docs.chunks(PEER_RESTART_EVERY) {
                let (rpc, _) = start_peer(&js, &db).await?;
                std::mem::replace(&mut self.rpc, rpc).close().await;
                for chunk in part.chunks(50) {
                    let entities: Vec<Value> = chunk.iter().map(|(i, d)| d.peer_entity(*i)).collect();
                    self.rpc.tool("create_entities", json!({ "entities": entities })).await?;
                }
            }
            // Searches run on a fresh process, as after the first load.
            let (rpc, _) = start_peer(&js, &db).await?;
            std::mem::replace(&mut self.rpc, rpc).close().await;
        } else {
            for (i, d) in docs {
                self.add(d, *i).await?;
            }
        }
        Ok(())
    }
    /// Runs a query; returns how many results came back.
    async fn search(&mut self, q: &str) -> Result<usize, BoxError> {
        if self.peer.is_some() {
            let r = self.rpc.tool("search_nodes", json!({"query": q, "limit": 10})).await?;
            let text = r["content"][0]["text"].as_str().unwrap_or("{}");
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            Ok(v["entities"].as_array().map_or(0, |a| a.len()))
        } else {
            let r = self.rpc.tool("search_knowledge", json!({"query": q, "limit": 10})).await?;
            Ok(r["structuredContent"]["count"].as_u64().unwrap_or(0) as usize)
        }
    }
}

async fn time_searches(side: &mut Side, queries: &[String], warmup: usize) -> Result<Value, BoxError> {
    for q in queries.iter().take(warmup) {
        side.search(q).await?;
    }
    let mut lat = LatencyHistogram::new();
    let mut hits = 0usize;
    let t0 = Instant::now();
    for q in queries {
        let t = Instant::now();
        hits += side.search(q).await?;
        lat.record(t.elapsed());
    }
    let mut s = summary(&lat, t0.elapsed());
    s["mean_hits"] = json!(round3(hits as f64 / queries.len().max(1) as f64));
    Ok(s)
}

fn ratio(a: &Value, b: &Value) -> f64 {
    round3(a["calls_per_sec"].as_f64().unwrap_or(0.0) / b["calls_per_sec"].as_f64().unwrap_or(f64::INFINITY).max(1e-9))
}

/// Runs the comparison; one JSON object per corpus.
pub async fn bench(opts: PeerOpts) -> crate::Result<Vec<Value>> {
    let exe = edgeswarm_exe(opts.exe.clone())?;
    let js = ensure_peer(opts.peer_js.clone()).map_err(|e| BenchError::Other(e.to_string()))?;
    let mut out = Vec::new();
    for corpus in &opts.corpora {
        let dir = scratch_dir(None, "mcp-peer-bench")?;
        let r = run_corpus(&exe, &js, &dir, corpus, &opts).await;
        let _ = std::fs::remove_dir_all(&dir);
        out.push(r.map_err(|e| BenchError::Other(format!("corpus {corpus}: {e}")))?);
    }
    Ok(out)
}

async fn run_corpus(exe: &Path, js: &Path, dir: &Path, corpus: &str, opts: &PeerOpts) -> Result<Value, BoxError> {
    let gen = Gen::new(corpus, opts.seed)?;
    let mut docs = opts.docs.clone();
    docs.sort_unstable();
    docs.dedup();
    let first = *docs.first().ok_or("no corpus size given")?;
    if let Some(&last) = docs.last().filter(|&&n| n > gen.max_docs()) {
        return Err(format!(
            "the corpus has {} documents; --peer-docs asks for {last} (give sizes up to {})",
            gen.max_docs(),
            gen.max_docs()
        )
        .into());
    }

    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("mcp").arg("--db").arg(dir.join("edgeswarm.db"));
    let (rpc, _) = Rpc::start(cmd, &format!("`{} mcp`", exe.display())).await?;
    let mut ours = Side { rpc, peer: None };
    let peer_db = dir.join("peer.db");
    let (rpc, peer_init) = start_peer(js, &peer_db).await?;
    let mut peer = Side {
        rpc,
        peer: Some((js.to_path_buf(), peer_db)),
    };

    let mut rng = Rng(opts.seed ^ 0xd0c5);
    let mut qrng = Rng(opts.seed ^ 0x9e37);
    let queries: Vec<String> = (0..opts.queries.max(1)).map(|n| gen.query(&mut qrng, n)).collect();
    let warm: Vec<Doc> = (0..opts.warmup)
        .map(|i| gen.doc(&mut rng, gen.max_docs().min(10_000_000) + i))
        .collect();
    let mut adds = Vec::new();
    for side in [&mut ours, &mut peer] {
        for (i, d) in warm.iter().enumerate() {
            side.add(d, 10_000_000 + i).await?;
        }
    }
    let mut made = 0usize;
    let batch: Vec<Doc> = (0..first).map(|i| gen.doc(&mut rng, i)).collect();
    for side in [&mut ours, &mut peer] {
        let mut lat = LatencyHistogram::new();
        let t0 = Instant::now();
        for (i, d) in batch.iter().enumerate() {
            let t = Instant::now();
            side.add(d, i).await?;
            lat.record(t.elapsed());
        }
        adds.push(summary(&lat, t0.elapsed()));
    }
    made += first;

    let mut scales = serde_json::Map::new();
    for &n in &docs {
        if n > made {
            let more: Vec<(usize, Doc)> = (made..n).map(|i| (i, gen.doc(&mut rng, i))).collect();
            let t = Instant::now();
            ours.load(&more).await?;
            let ours_load_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            peer.load(&more).await?;
            let peer_load_s = t.elapsed().as_secs_f64();
            made = n;
            eprintln!("{corpus}: loaded {n} documents (edgeswarm {ours_load_s:.1} s one a call, peer {peer_load_s:.1} s 50 a call)");
        }
        let s_ours = time_searches(&mut ours, &queries, opts.warmup).await?;
        let s_peer = time_searches(&mut peer, &queries, opts.warmup).await?;
        let r = ratio(&s_ours, &s_peer);
        let mut entry = json!({"edgeswarm": s_ours, "peer": s_peer, "search_ratio": r});
        if n == first {
            entry["target_search_ratio"] = json!(TARGET_SEARCH_AT_FIRST);
        } else if n >= 50_000 {
            entry["target_search_ratio"] = json!(TARGET_SEARCH_AT_50K);
        }
        scales.insert(format!("at_{n}"), entry);
    }
    ours.rpc.close().await;
    peer.rpc.close().await;

    let add_ratio = ratio(&adds[0], &adds[1]);
    Ok(json!({
        "bench": "mcp_peer",
        "corpus": match &gen { Gen::File(_) => format!("file {corpus}"), _ => corpus.to_string() },
        "client": "one stdio client, one request at a time, the same for both servers",
        "peer": format!("{PEER_PACKAGE} {PEER_VERSION} ({})", peer_init["serverInfo"]["name"].as_str().unwrap_or("?")),
        "queries": queries.len(),
        "add": {"docs": first, "edgeswarm": adds[0], "peer": adds[1], "add_ratio": add_ratio, "target_add_ratio": TARGET_ADD_AT_FIRST},
        "search": Value::Object(scales),
        "notes": "edgeswarm: add_knowledge / search_knowledge, default config and mode, limit 10. peer: create_entities (one entity a call while timed; 50 a call to load larger scales, restarted every 10,000 entities: it leaves one libSQL connection per write transaction to the garbage collector and runs out of file descriptors past ~20,000 in one process) / search_nodes, limit 10. Same documents, same queries, same client, same run; ratios are edgeswarm calls/s over the peer's.",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_corpus_uses_only_its_vocabulary() {
        let g = Gen::new("narrow", 1).unwrap();
        let mut rng = Rng(3);
        for i in 0..50 {
            let d = g.doc(&mut rng, i);
            for w in d
                .topic
                .split(' ')
                .chain(d.content.split(' '))
                .chain(d.tags.iter().map(String::as_str))
            {
                assert!(NARROW.contains(&w), "{w} is not in the vocabulary");
            }
            let q = g.query(&mut rng, 0);
            let n = q.split(' ').count();
            assert!((1..=3).contains(&n), "{q}");
        }
        assert!(Gen::new("other", 1).is_err());
    }

    #[test]
    fn corpus_files_are_read_and_checked_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            "{\"content\": \"Caroline went to the LGBTQ support group on 7 May\", \"tags\": [\"caroline\"]}\n\n\
             {\"content\": \"Melanie painted a sunrise\", \"topic\": \"painting\", \"category\": \"conv-1\"}\n\
             {\"query\": \"When did Caroline go to the support group?\"}\n",
        )
        .unwrap();
        let Gen::File(c) = Gen::new(p.to_str().unwrap(), 1).unwrap() else {
            panic!("a file corpus")
        };
        assert_eq!(c.docs.len(), 2);
        assert_eq!(
            (c.docs[0].category.as_str(), c.docs[0].topic.as_str()),
            ("docs", "Caroline went to the LGBTQ support")
        );
        assert_eq!((c.docs[1].category.as_str(), c.docs[1].topic.as_str()), ("conv-1", "painting"));
        assert_eq!(c.docs[0].tags, vec!["caroline".to_string()]);
        let g = Gen::File(c);
        assert_eq!(g.max_docs(), 2);
        assert_eq!(g.query(&mut Rng(1), 5), "When did Caroline go to the support group?");
        assert!(
            g.doc(&mut Rng(1), 2).content.starts_with("warm-up 2: "),
            "warm-up documents never repeat a timed one"
        );
        for (bad, why) in [
            ("{\"content\": \"x\"}\n", "documents and queries"),
            ("{\"query\": \"q\"}\n{\"topic\": \"no content\"}\n", "line 2"),
            ("not json\n", "line 1: not JSON"),
            (
                "{\"query\": \"q\"}\n{\"content\": \"x\", \"tags\": \"a\"}\n",
                "`tags` must be an array",
            ),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = Gen::new(p.to_str().unwrap(), 1).err().expect(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(Gen::new("no-such-corpus", 1)
            .err()
            .unwrap()
            .to_string()
            .contains("narrow, zipf, or the path"));
    }

    #[test]
    fn the_same_seed_gives_the_same_documents() {
        let (a, b) = (Gen::new("zipf", 5).unwrap(), Gen::new("zipf", 5).unwrap());
        let (mut r1, mut r2) = (Rng(9), Rng(9));
        for i in 0..20 {
            assert_eq!(a.doc(&mut r1, i).content, b.doc(&mut r2, i).content);
        }
    }

    #[test]
    fn peer_entities_have_unique_names() {
        let g = Gen::new("narrow", 1).unwrap();
        let mut rng = Rng(3);
        let names: std::collections::HashSet<String> = (0..200)
            .map(|i| g.doc(&mut rng, i).peer_entity(i)["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), 200);
    }
}
