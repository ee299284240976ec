//! The retrieval-quality benchmark behind `edgeswarm bench quality --data PATH`.
//!
//! Input: a LoCoMo-format file (a JSON array of conversations, each with `sample_id`,
//! `conversation.session_N` turn lists and `qa`). The data is CC BY-NC and never part of
//! the repository: the path is always given by the caller.
//!
//! What it measures, as the data's README defines it:
//! - every turn becomes one knowledge entry, category = its conversation's `sample_id`,
//!   topic = the turn's speaker, content = `speaker: text` (plus the shared photo's
//!   caption when there is one), metadata `{dia_id, speaker, session}`; hits are mapped
//!   back to `dia_id`s by entry id;
//! - every question of categories 1–4 that has evidence is asked through [`Search::search`]
//!   (the path MCP `search_knowledge` takes) with its conversation as the category filter,
//!   limit 10;
//! - evidence recall@10 = share of the question's evidence turns among the 10 hits,
//!   averaged over questions; hit@10 = share of questions with at least one evidence turn
//!   in the hits; MRR = mean of 1 / rank of the first evidence hit (0 when none).
//!
//! One JSON object per mode: `lexical` (the baseline), `vector`, `hybrid` (with the
//! benchmark's embedder), `default` (a request without `mode`, on the search
//! configuration the product ships by default) and the given baselines, such as
//! `lexical_and` (the pre-natural-language lexical query: all words AND, relaxed to OR
//! only when nothing matches).

use edgeswarm_core::{Durability, Knowledge, StoreConfig};
use edgeswarm_search::{
    EmbedderChoice, Filters, Fusion, HashEmbedder, Mode, Result, ScoreNorm, Search, SearchConfig, SearchError, SearchRequest,
    SharedEmbedder, DEFAULT_FUSION, RRF_K,
};
use edgeswarm_store::Store;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Hits scored per question (recall@K).
pub const K: usize = 10;

/// Settings of the quality benchmark.
#[derive(Clone)]
pub struct QualityOpts {
    /// The LoCoMo-format JSON file (e.g. `../shared/data/locomo-dev.json`).
    pub data: PathBuf,
    /// Use only the first N conversations (quick runs while developing); `None` = all.
    pub limit_conversations: Option<usize>,
    /// The embedders for the `vector` and `hybrid` lines, by label (`hash`, `semantic`):
    /// each gets `vector_<label>` and `hybrid_<label>` lines; empty skips them.
    pub embedders: Vec<(String, SharedEmbedder)>,
    /// Fusions also measured for every embedder (`hybrid_<label>_<fusion>` lines): the
    /// sweep that chose [`DEFAULT_FUSION`]. Empty: only the default fusion.
    pub fusions: Vec<Fusion>,
    /// The configuration the `default` line runs (a request without `mode`): what the
    /// product starts with when nothing is configured.
    pub default_config: SearchConfig,
    /// Extra lexical lines measured in the same run, by label: e.g. `lexical_and` (the
    /// query semantics before natural-language handling) or `lexical_bm25_or` (natural
    /// language without the coverage boost).
    pub baselines: Vec<(String, SearchConfig)>,
    /// Where the scratch database goes; default a fresh directory under the system temp
    /// dir, removed afterwards.
    pub dir: Option<PathBuf>,
}

/// One question: its conversation, text and evidence turns.
#[derive(Debug, Clone)]
pub struct Question {
    /// The conversation's `sample_id` (the category filter).
    pub conversation: String,
    /// The question text, asked as is.
    pub text: String,
    /// The `dia_id`s of the turns that hold the answer (deduplicated).
    pub evidence: Vec<String>,
}

/// One turn, as it becomes a knowledge entry.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The conversation's `sample_id`.
    pub conversation: String,
    /// The turn's id inside the conversation (`D3:7`).
    pub dia_id: String,
    /// The speaker's name.
    pub speaker: String,
    /// The session key (`session_3`).
    pub session: String,
    /// What was said (plus the photo caption, if any).
    pub text: String,
}

/// The parsed benchmark data.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Every turn of the conversations used.
    pub turns: Vec<Turn>,
    /// Every category 1–4 question with evidence.
    pub questions: Vec<Question>,
    /// How many conversations were used.
    pub conversations: usize,
}

/// Reads a LoCoMo-format file.
pub fn load(path: &std::path::Path, limit_conversations: Option<usize>) -> Result<Dataset> {
    let bad = |m: String| SearchError::InvalidArgument {
        field: "data",
        reason: format!("{}: {m}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let convs = v.as_array().ok_or_else(|| bad("expected a JSON array of conversations".into()))?;
    let mut ds = Dataset::default();
    for c in convs.iter().take(limit_conversations.unwrap_or(usize::MAX)) {
        let sid = c["sample_id"]
            .as_str()
            .ok_or_else(|| bad("a conversation has no sample_id".into()))?
            .to_string();
        let conv = c["conversation"]
            .as_object()
            .ok_or_else(|| bad(format!("{sid}: no `conversation` object")))?;
        let mut sessions: Vec<(u32, &str, &Vec<Value>)> = conv
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix("session_")?.parse::<u32>().ok()?;
                Some((n, k.as_str(), v.as_array()?))
            })
            .collect();
        sessions.sort_by_key(|s| s.0);
        for (_, key, turns) in sessions {
            for t in turns {
                let (Some(dia), Some(said)) = (t["dia_id"].as_str(), t["text"].as_str()) else {
                    continue;
                };
                let mut text = said.to_string();
                if let Some(cap) = t["blip_caption"].as_str() {
                    text.push_str(&format!(" [shares a photo: {cap}]"));
                }
                ds.turns.push(Turn {
                    conversation: sid.clone(),
                    dia_id: dia.to_string(),
                    speaker: t["speaker"].as_str().unwrap_or_default().to_string(),
                    session: key.to_string(),
                    text,
                });
            }
        }
        for q in c["qa"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let cat = q["category"].as_i64().unwrap_or(0);
            let Some(question) = q["question"].as_str() else { continue };
            let mut evidence: Vec<String> = Vec::new();
            for e in q["evidence"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(s) = e.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                    if !evidence.iter().any(|x| x == s) {
                        evidence.push(s.to_string());
                    }
                }
            }
            if (1..=4).contains(&cat) && !evidence.is_empty() {
                ds.questions.push(Question {
                    conversation: sid.clone(),
                    text: question.to_string(),
                    evidence,
                });
            }
        }
        ds.conversations += 1;
    }
    Ok(ds)
}

/// Scores of one question: (evidence recall@K, hit@K as 0/1, reciprocal rank).
/// `ranked` holds, per hit in rank order, the `dia_id`s that entry stands for (one unless
/// identical turns were merged by dedup); only the first [`K`] hits count.
pub fn score(ranked: &[Vec<String>], evidence: &[String]) -> (f64, f64, f64) {
    if evidence.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let want: HashSet<&str> = evidence.iter().map(String::as_str).collect();
    let mut found: HashSet<&str> = HashSet::new();
    let mut rr = 0.0;
    for (i, ids) in ranked.iter().take(K).enumerate() {
        let mut any = false;
        for id in ids {
            if want.contains(id.as_str()) {
                found.insert(id.as_str());
                any = true;
            }
        }
        if any && rr == 0.0 {
            rr = 1.0 / (i + 1) as f64;
        }
    }
    let recall = found.len() as f64 / want.len() as f64;
    (recall, if found.is_empty() { 0.0 } else { 1.0 }, rr)
}

/// Mean scores and latencies over a run of questions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Mean evidence recall@K.
    pub recall: f64,
    /// Share of questions with an evidence turn in the top K.
    pub hit: f64,
    /// Mean reciprocal rank of the first evidence hit.
    pub mrr: f64,
}

/// Averages per-question scores.
pub fn summarize(per_question: &[(f64, f64, f64)]) -> Summary {
    let n = per_question.len().max(1) as f64;
    Summary {
        recall: per_question.iter().map(|s| s.0).sum::<f64>() / n,
        hit: per_question.iter().map(|s| s.1).sum::<f64>() / n,
        mrr: per_question.iter().map(|s| s.2).sum::<f64>() / n,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Asks every question once (one client, cache off) and scores the answers.
async fn measure(
    search: &Search,
    ds: &Dataset,
    dia_of: &HashMap<String, Vec<String>>,
    label: &str,
    mode: Option<Mode>,
    embedder: &str,
) -> Result<Value> {
    let mut scores = Vec::with_capacity(ds.questions.len());
    let mut lat = Vec::with_capacity(ds.questions.len());
    let mut modes_used: HashMap<String, usize> = HashMap::new();
    let mut by_conv: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    let started = Instant::now();
    for q in &ds.questions {
        let mut req = SearchRequest::new(q.text.clone()).limit(K as i64).filters(Filters {
            category: Some(q.conversation.clone()),
            ..Default::default()
        });
        req.mode = mode;
        let t = Instant::now();
        let resp = search.search(req).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        *modes_used.entry(format!("{:?}", resp.mode).to_lowercase()).or_default() += 1;
        let ranked: Vec<Vec<String>> = resp.hits.iter().map(|h| dia_of.get(&h.id).cloned().unwrap_or_default()).collect();
        let sc = score(&ranked, &q.evidence);
        let c = by_conv.entry(q.conversation.as_str()).or_default();
        c.0 += sc.0;
        c.1 += 1;
        scores.push(sc);
    }
    let recall_by_conversation: serde_json::Map<String, Value> = by_conv
        .into_iter()
        .map(|(k, (sum, n))| (k.to_string(), json!(r4(sum / n.max(1) as f64))))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let s = summarize(&scores);
    Ok(json!({
        "bench": "quality",
        "mode": label,
        "recall_at_10": r4(s.recall),
        "hit_at_10": r4(s.hit),
        "mrr": r4(s.mrr),
        "qps": (ds.questions.len() as f64 / secs.max(1e-9)).round(),
        "p50_ms": r4(pct(&lat, 0.5)),
        "p99_ms": r4(pct(&lat, 0.99)),
        "questions": ds.questions.len(),
        "entries": dia_of.len(),
        "conversations": ds.conversations,
        "embedder": embedder,
        "mode_used": modes_used,
        "recall_by_conversation": recall_by_conversation,
    }))
}

/// The fusions `--sweep` measures (with the semantic embedder only): RRF with k 10 and
/// 60, linear fusion of min-max normalised scores with vector weight 0.2..0.8, of
/// max-normalised scores with weight 0.3, 0.5, 0.7, and of σ-scaled scores
/// ([`ScoreNorm::Std`]) with weight 0.3..0.6.
pub fn sweep_fusions() -> Vec<Fusion> {
    let mut f = vec![Fusion::Rrf { k: 10.0 }, Fusion::Rrf { k: RRF_K }];
    for w in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
        f.push(Fusion::Linear {
            vector_weight: w,
            norm: ScoreNorm::MinMax,
        });
    }
    for w in [0.3, 0.5, 0.7] {
        f.push(Fusion::Linear {
            vector_weight: w,
            norm: ScoreNorm::Max,
        });
    }
    for w in [0.3, 0.4, 0.5, 0.6] {
        f.push(Fusion::Linear {
            vector_weight: w,
            norm: ScoreNorm::Std,
        });
    }
    f
}

/// The options `edgeswarm bench quality` runs with: the product default (the
/// `SwarmBuilder`'s search config with the default embedder), the hash embedder and (when
/// installed) the semantic model for the vector and hybrid lines, and two lexical
/// baselines in the same run: `lexical_and` (every word must match, the behaviour before
/// sentence handling) and `lexical_bm25_or` (sentence handling without the coverage
/// re-rank). `sweep` adds the fusion sweep ([`sweep_fusions`]).
pub fn default_opts(data: PathBuf, limit_conversations: Option<usize>, sweep: bool) -> Result<QualityOpts> {
    let mut default_config = SearchConfig::new();
    default_config.embedder = EmbedderChoice::default().resolve()?;
    let mut embedders: Vec<(String, SharedEmbedder)> = vec![("hash".into(), std::sync::Arc::new(HashEmbedder::new(256)))];
    if edgeswarm_search::semantic::is_installed(edgeswarm_search::semantic::DEFAULT_MODEL) {
        if let Some(e) = EmbedderChoice::Semantic.resolve()? {
            embedders.push(("semantic".into(), e));
        }
    }
    Ok(QualityOpts {
        data,
        limit_conversations,
        embedders,
        fusions: if sweep { sweep_fusions() } else { Vec::new() },
        default_config,
        baselines: vec![
            ("lexical_and".into(), SearchConfig::new().natural_language(false)),
            ("lexical_bm25_or".into(), SearchConfig::new().coverage_boost(0.0)),
        ],
        dir: None,
    })
}

/// Runs the benchmark; returns one JSON object per mode (see the module docs).
pub async fn quality(opts: QualityOpts) -> Result<Vec<Value>> {
    let ds = load(&opts.data, opts.limit_conversations)?;
    if ds.questions.is_empty() {
        return Err(SearchError::InvalidArgument {
            field: "data",
            reason: format!("{}: no category 1-4 question with evidence", opts.data.display()),
        });
    }
    let (dir, owned) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "edgeswarm-quality-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| SearchError::InvalidArgument {
        field: "dir",
        reason: e.to_string(),
    })?;
    let out = run(&opts, &ds, &dir).await;
    if owned {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

/// An embedder that remembers the vectors of single texts (the questions): the fusion
/// sweep asks the same questions under every fusion and measures ranking, not the model.
struct QueryCache {
    /// The real embedder (same id and dimension, so the same vector space).
    inner: SharedEmbedder,
    /// Vectors by text, for one-text calls (queries).
    seen: std::sync::Mutex<HashMap<String, Vec<f32>>>,
}

impl edgeswarm_search::Embedder for QueryCache {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, String> {
        if texts.len() != 1 {
            return self.inner.embed(texts);
        }
        if let Some(v) = self.seen.lock().map_err(|e| e.to_string())?.get(texts[0]) {
            return Ok(vec![v.clone()]);
        }
        let v = self.inner.embed(texts)?;
        self.seen
            .lock()
            .map_err(|e| e.to_string())?
            .insert(texts[0].to_string(), v[0].clone());
        Ok(v)
    }
}

async fn run(opts: &QualityOpts, ds: &Dataset, dir: &std::path::Path) -> Result<Vec<Value>> {
    let mut cfg = StoreConfig::at(dir.join("quality.db"));
    cfg.durability = Durability::Normal;
    let store = Store::open(cfg).await?;
    // Ingest, many writes in flight (the store batches them); remember which turns each
    // entry stands for (dedup merges identical turns of one conversation). One task polls
    // a chunk's writes in turn order, so they reach the writer (and get their rowids, which
    // break ranking ties) in the same order on every run.
    let mut dia_of: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ds.turns.chunks(256) {
        let writes = chunk.iter().map(|t| {
            // Topic = who said it, the turn's subject as a memory store would keep it. (The
            // `dia_id` is an identifier: as the topic it was noise to both rankers.)
            let k = Knowledge::new(t.conversation.clone(), t.speaker.clone(), format!("{}: {}", t.speaker, t.text)).metadata(json!({
                "dia_id": t.dia_id, "speaker": t.speaker, "session": t.session,
            }));
            let store = store.clone();
            async move { edgeswarm_search::add_knowledge(&store, k).await }
        });
        for (t, out) in chunk.iter().zip(futures::future::join_all(writes).await) {
            dia_of.entry(out?.id).or_default().push(t.dia_id.clone());
        }
    }
    let mut lines = Vec::new();

    let base = SearchConfig::new().cache_capacity(0);
    let lex = Search::start(store.clone(), base.clone()).await?;
    lines.push(measure(&lex, ds, &dia_of, "lexical", Some(Mode::Lexical), "none").await?);
    lex.stop();

    for (label, cfg) in &opts.baselines {
        let s = Search::start(store.clone(), cfg.clone().cache_capacity(0)).await?;
        lines.push(measure(&s, ds, &dia_of, label, Some(Mode::Lexical), "none").await?);
        s.stop();
    }

    for (name, e) in &opts.embedders {
        let label = format!("{}/{}", e.id(), e.dim());
        let s = Search::start(store.clone(), base.clone().embedder(e.clone())).await?;
        let t = Instant::now();
        if !s.wait_vectors_ready(Duration::from_secs(1800)).await? {
            return Err(SearchError::Embedder {
                embedder: label,
                reason: "vectors were not complete after 1800 s".into(),
            });
        }
        let embed_secs = t.elapsed().as_secs_f64();
        // What one query's embedding costs (the part of a hybrid search the model adds),
        // measured on the questions themselves, one at a time.
        let mut q_us: Vec<f64> = Vec::with_capacity(ds.questions.len());
        for q in &ds.questions {
            let t = Instant::now();
            e.embed(&[q.text.as_str()]).map_err(|reason| SearchError::Embedder {
                embedder: label.clone(),
                reason,
            })?;
            q_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        q_us.sort_by(|a, b| a.total_cmp(b));
        for (line, mode) in [("vector", Mode::Vector), ("hybrid", Mode::Hybrid)] {
            let mut v = measure(&s, ds, &dia_of, &format!("{line}_{name}"), Some(mode), &label).await?;
            // Backfill: every entry embedded and written by the background filler.
            v["embed_all_s"] = json!(r4(embed_secs));
            v["embed_entries_per_s"] = json!((dia_of.len() as f64 / embed_secs.max(1e-9)).round());
            v["query_embed_p50_us"] = json!(pct(&q_us, 0.5).round());
            v["query_embed_p99_us"] = json!(pct(&q_us, 0.99).round());
            if mode == Mode::Hybrid {
                v["fusion"] = json!(DEFAULT_FUSION.label());
            }
            tracing::info!(line = %v, "quality");
            lines.push(v);
        }
        s.stop();
        // The sweep (semantic only): the vectors are built, and query vectors are cached
        // (the same questions are asked under every fusion), so each line only re-ranks.
        let cached: SharedEmbedder = std::sync::Arc::new(QueryCache {
            inner: e.clone(),
            seen: Default::default(),
        });
        for f in opts.fusions.iter().filter(|_| name == "semantic") {
            let s = Search::start(store.clone(), base.clone().embedder(cached.clone()).fusion(*f)).await?;
            s.wait_vectors_ready(Duration::from_secs(60)).await?;
            let mut v = measure(&s, ds, &dia_of, &format!("hybrid_{name}_{}", f.label()), Some(Mode::Hybrid), &label).await?;
            v["fusion"] = json!(f.label());
            v["query_vectors_cached"] = json!(true);
            tracing::info!(line = %v, "quality");
            lines.push(v);
            s.stop();
        }
    }

    let dcfg = opts.default_config.clone().cache_capacity(0);
    let dlabel = dcfg
        .embedder
        .as_ref()
        .map(|e| format!("{}/{}", e.id(), e.dim()))
        .unwrap_or_else(|| "none".into());
    let s = Search::start(store.clone(), dcfg).await?;
    if s.status().await?.building_embedder.is_some() || s.status().await?.active_embedder.is_some() {
        s.wait_vectors_ready(Duration::from_secs(600)).await?;
    }
    lines.push(measure(&s, ds, &dia_of, "default", None, &dlabel).await?);
    s.stop();
    store.shutdown().await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|h| h.iter().map(|s| s.to_string()).collect()).collect()
    }
    fn ev(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scores_on_hand_made_rankings() {
        // Two evidence turns, one found at rank 2: recall 1/2, hit 1, rr 1/2.
        assert_eq!(
            score(&ids(&[&["D1:1"], &["D1:3"], &["D2:4"]]), &ev(&["D1:3", "D9:9"])),
            (0.5, 1.0, 0.5)
        );
        // Both found; rr is the first one's rank.
        assert_eq!(score(&ids(&[&["D1:3"], &["D9:9"]]), &ev(&["D1:3", "D9:9"])), (1.0, 1.0, 1.0));
        // Nothing found.
        assert_eq!(score(&ids(&[&["D1:1"]]), &ev(&["D1:3"])), (0.0, 0.0, 0.0));
        // No hits at all.
        assert_eq!(score(&[], &ev(&["D1:3"])), (0.0, 0.0, 0.0));
        // A hit below rank 10 does not count.
        let mut deep: Vec<Vec<String>> = (0..10).map(|i| vec![format!("X{i}")]).collect();
        deep.push(vec!["D1:3".into()]);
        assert_eq!(score(&deep, &ev(&["D1:3"])), (0.0, 0.0, 0.0));
        // A merged entry standing for two turns finds both; a repeated hit counts once.
        assert_eq!(
            score(&ids(&[&["D1:1"], &["D1:3", "D2:2"], &["D1:3"]]), &ev(&["D1:3", "D2:2"])),
            (1.0, 1.0, 0.5)
        );
        // No evidence: nothing to score.
        assert_eq!(score(&ids(&[&["D1:1"]]), &[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn summary_averages() {
        let s = summarize(&[(1.0, 1.0, 1.0), (0.5, 1.0, 0.25), (0.0, 0.0, 0.0)]);
        assert!((s.recall - 0.5).abs() < 1e-12);
        assert!((s.hit - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.mrr - 1.25 / 3.0).abs() < 1e-12);
        assert_eq!(pct(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn loads_the_locomo_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(
            &p,
            r#"[{"sample_id":"c1","conversation":{"speaker_a":"A","speaker_b":"B","session_1_date_time":"x",
                "session_2":[{"speaker":"B","dia_id":"D2:1","text":"later"}],
                "session_1":[{"speaker":"A","dia_id":"D1:1","text":"hi","blip_caption":"a dog"}]},
               "qa":[{"question":"q1","answer":"a","evidence":["D1:1","D1:1"],"category":2},
                     {"question":"q5","evidence":["D1:1"],"category":5},
                     {"question":"q0","answer":"a","evidence":[],"category":1}]},
              {"sample_id":"c2","conversation":{},"qa":[]}]"#,
        )
        .unwrap();
        let ds = load(&p, None).unwrap();
        assert_eq!(ds.conversations, 2);
        assert_eq!(ds.turns.len(), 2);
        assert_eq!(ds.turns[0].dia_id, "D1:1", "sessions in order");
        assert!(ds.turns[0].text.contains("a dog"));
        assert_eq!(ds.questions.len(), 1);
        assert_eq!(ds.questions[0].evidence, vec!["D1:1"]);
        assert_eq!(load(&p, Some(1)).unwrap().conversations, 1);
        assert!(load(&dir.path().join("missing.json"), None).is_err());
    }
}
