//! The query engine: blocking functions that run on a read-pool thread (`store.read`).
//! Lexical = FTS5 BM25 with field weights; vector = libSQL `vector_top_k`; hybrid =
//! a [`Fusion`] of both (by default a linear blend of normalised scores, chosen by
//! `edgeswarm bench quality --sweep`).

use crate::error::{Result, SearchError};
use crate::fastlex::{self, DocLens, FastQuery};
use crate::query::{filter_sql, Cursor, Filters, Mode, SearchHit};
use edgeswarm_store::{Reader, SqlValue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// BM25 column weights: topic, content, tags (topic > tags > content).
pub const BM25_WEIGHTS: &str = "bm25(10.0, 1.0, 4.0)";
/// RRF constant (the usual 60): damps the weight of top ranks.
pub const RRF_K: f64 = 60.0;
/// Candidates each side (lexical, vector) contributes to a hybrid fusion, at least.
pub const FUSION_POOL: usize = 50;

/// A filtered vector search whose filter keeps at most this many live entries ranks
/// them all by exact distance (a few ms at this size) instead of filtering the vector
/// index's global neighbours, which misses most true neighbours of a small category
/// (one agent's or one conversation's memories among many).
pub const EXACT_FILTERED_MAX: usize = 10_000;

/// How a score list is brought to a common scale before a linear fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreNorm {
    /// `(s − min) / (max − min)` over the list's candidates: best = 1, worst = 0.
    MinMax,
    /// `s / max`: keeps how far apart the scores are, best = 1.
    Max,
    /// `(s − min) / standard deviation` over the list's candidates: a z-score shifted so
    /// the worst candidate (and an entry missing from the list) is 0. Unlike min-max, one
    /// outlying best score does not squash the rest of the list.
    Std,
}

/// How hybrid search merges the lexical and the vector ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ 1 / (k + rank). Ignores score gaps.
    Rrf {
        /// The damping constant (60 in the RRF paper).
        k: f64,
    },
    /// `(1 − w) × norm(lexical score) + w × norm(cosine)`; an entry missing from one list
    /// gets 0 for it.
    Linear {
        /// Weight `w` of the vector side, 0..=1.
        vector_weight: f64,
        /// How each side's scores are normalised.
        norm: ScoreNorm,
    },
}

impl Fusion {
    /// A short label for reports (`rrf_k60`, `linear_w0.50_minmax`).
    pub fn label(&self) -> String {
        match self {
            Fusion::Rrf { k } => format!("rrf_k{k}"),
            Fusion::Linear { vector_weight, norm } => {
                format!(
                    "linear_w{vector_weight:.2}_{}",
                    match norm {
                        ScoreNorm::MinMax => "minmax",
                        ScoreNorm::Max => "max",
                        ScoreNorm::Std => "std",
                    }
                )
            }
        }
    }
}

/// The fusion hybrid search uses unless configured otherwise. Chosen by
/// `edgeswarm bench quality --sweep` on the LoCoMo dev split with the semantic embedder
/// (docs/quality.md): min-max normalised linear fusion beat RRF (k 60: 0.639, k 10: 0.694
/// recall@10) and max normalisation (≤ 0.671); over the vector weight, recall@10 has a
/// plateau from 0.3 to 0.5 (0.702, 0.705, 0.703) and falls off on both sides (0.2:
/// 0.683, 0.7: 0.657). 0.4 is the middle of that plateau, so a held-out split that moves
/// the peak a step either way stays on it. σ-scaling ([`ScoreNorm::Std`]) ties it over
/// the plateau and falls off faster.
pub const DEFAULT_FUSION: Fusion = Fusion::Linear {
    vector_weight: 0.4,
    norm: ScoreNorm::MinMax,
};
/// Tokens of context in a snippet.
const SNIPPET_TOKENS: i64 = 16;
/// Characters of content shown for vector-only hits.
const PREVIEW_CHARS: i64 = 200;

/// Where vectors of the active embedder live.
#[derive(Debug, Clone)]
pub(crate) struct VectorQuery {
    pub table: String,
    pub index: String,
    pub blob: Vec<u8>,
}

/// Everything one search needs, prepared on the async side.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub fts_all: Option<String>,
    pub fts_any: Option<String>,
    pub filters: Filters,
    pub limit: usize,
    pub offset: usize,
    pub cursor: Option<Cursor>,
    pub mode: Mode,
    pub vector: Option<VectorQuery>,
    /// Rank at most this many most recent matches of unfiltered queries (0 = all).
    pub rank_window: usize,
    /// `fts_all` / `fts_any` in the form the fast ranker takes (None: FTS5 only).
    pub fast_all: Option<FastQuery>,
    pub fast_any: Option<FastQuery>,
    /// Token counts for the fast ranker; None when it is switched off.
    pub lens: Option<Arc<DocLens>>,
    /// Natural-language queries: each searched word, lower-cased and [`light_stem`]med. The best
    /// [`COVERAGE_POOL`] BM25 (OR) matches are re-ranked by how many of them they contain
    /// (see [`coverage_rank`]); pages continue by position. Empty: plain BM25 order.
    pub coverage_terms: Vec<String>,
    /// Strength of the coverage boost (0 = off): BM25 × (1 + boost × share of the other
    /// words matched).
    pub coverage_boost: f64,
    /// How hybrid merges the two rankings.
    pub fusion: Fusion,
}

impl Plan {
    fn fast(&self, any: bool) -> Option<(&FastQuery, &DocLens)> {
        let q = if any { self.fast_any.as_ref() } else { self.fast_all.as_ref() }?;
        Some((q, self.lens.as_deref()?))
    }
}

/// Set once the fast ranker has failed, so the warning is logged once, not per query.
static FAST_FAILED: AtomicBool = AtomicBool::new(false);

/// What the engine found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub hits: Vec<SearchHit>,
    pub next: Option<Cursor>,
    pub relaxed: bool,
    /// Set when the query matched more than the rank window and only the most recent
    /// matches were ranked.
    pub windowed: bool,
    /// Set when the vector part failed and lexical results were returned instead.
    pub vector_error: Option<String>,
}

fn text(v: &SqlValue) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Ranked (rowid, rank) pairs for a lexical query (rank: BM25, lower is better).
/// Unfiltered queries over whole words and phrases are ranked by [`fastlex`] (same
/// scores, no per-row FTS5 call); the rest by FTS5's `ORDER BY rank`.
#[allow(clippy::too_many_arguments)]
fn lexical_ids(
    r: &mut Reader,
    fts: &str,
    fast: Option<(&FastQuery, &DocLens)>,
    filters: &Filters,
    limit: usize,
    offset: usize,
    after: Option<(f64, i64)>,
    lo: i64,
) -> Result<(Vec<(i64, f64)>, bool)> {
    if let Some((q, lens)) = fast {
        if lo == 0 && *filters == Filters::default() {
            match fastlex::ranked(lens, q, limit, offset, after) {
                Ok(Some(ids)) => return Ok((ids, true)),
                Ok(None) => {}
                Err(e) => {
                    if !FAST_FAILED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "fast lexical ranking failed; ranking through FTS5 (same results, slower)");
                    }
                }
            }
        }
    }
    let (fsql, fparams) = filter_sql(filters, 5 + 2 * after.is_some() as usize);
    let join = !fsql.is_empty();
    let mut sql = String::from("SELECT knowledge_fts.rowid, knowledge_fts.rank FROM knowledge_fts");
    if join {
        sql.push_str(" JOIN knowledge k ON k.rowid = knowledge_fts.rowid");
    }
    sql.push_str(" WHERE knowledge_fts MATCH ?1 AND knowledge_fts.rank MATCH ?2");
    // Tombstoned rows are never in the index (triggers), so no deleted check is needed
    // unless we join for filters anyway.
    if join {
        sql.push_str(" AND k.deleted = 0");
        sql.push_str(&fsql);
    }
    let mut params: Vec<SqlValue> = vec![fts.into(), BM25_WEIGHTS.into(), (limit as i64).into(), (offset as i64).into()];
    if lo > 0 {
        // The bound is a literal so FTS5 can use it as a rowid range (it is an integer
        // we computed, never user text).
        sql.push_str(&format!(" AND knowledge_fts.rowid >= {lo}"));
    }
    if let Some((rank, rowid)) = after {
        sql.push_str(" AND (knowledge_fts.rank, knowledge_fts.rowid) > (?5, ?6)");
        params.push(rank.into());
        params.push(rowid.into());
    }
    params.extend(fparams);
    sql.push_str(" ORDER BY knowledge_fts.rank, knowledge_fts.rowid LIMIT ?3 OFFSET ?4");
    let res = r.query(&sql, params)?;
    let ids = res
        .rows
        .iter()
        .filter_map(|row| Some((row[0].as_i64()?, row[1].as_f64()?)))
        .collect();
    Ok((ids, false))
}

/// The rank window's lower rowid bound: the `window`-th most recent match, or 0 when the
/// query matches fewer entries (then everything is ranked).
fn window_bound(r: &mut Reader, fts: &str, filters: &Filters, window: usize) -> Result<i64> {
    if window == 0 || *filters != Filters::default() {
        return Ok(0);
    }
    let res = r.query(
        "SELECT rowid FROM knowledge_fts WHERE knowledge_fts MATCH ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2",
        vec![fts.into(), (window as i64 - 1).into()],
    )?;
    Ok(res.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

/// Fetches display fields and a highlighted snippet for lexical hits, in order. Rows
/// ranked by the fast ranker get the same snippets from [`fastlex::hydrate`] (no FTS5
/// query); otherwise one statement for the whole page: the MATCH runs once and snippets
/// are computed only for the page's rows.
fn hydrate(r: &mut Reader, fts: &str, fast: Option<&FastQuery>, ids: &[(i64, f64)]) -> Result<Vec<SearchHit>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    if let Some(q) = fast {
        let rowids: Vec<i64> = ids.iter().map(|(rowid, _)| *rowid).collect();
        match fastlex::hydrate(q, &rowids, ("[", "]", "…"), SNIPPET_TOKENS) {
            Ok(Some(rows)) => {
                let mut by_rowid: HashMap<i64, fastlex::HitRow> = rows.into_iter().map(|row| (row.0, row)).collect();
                return Ok(ids
                    .iter()
                    .filter_map(|(rowid, rank)| {
                        let (_, id, category, topic, snippet, created_at) = by_rowid.remove(rowid)?;
                        Some(SearchHit {
                            id,
                            category,
                            topic,
                            snippet,
                            score: -rank,
                            created_at,
                        })
                    })
                    .collect());
            }
            Ok(None) => {}
            Err(e) => {
                if !FAST_FAILED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "fast snippets failed; using FTS5 snippet() (same results, slower)");
                }
            }
        }
    }
    let sql = format!(
        "SELECT knowledge_fts.rowid, k.id, k.category, k.topic, snippet(knowledge_fts, -1, '[', ']', '…', {SNIPPET_TOKENS}), k.created_at \
         FROM knowledge_fts JOIN knowledge k ON k.rowid = knowledge_fts.rowid \
         WHERE knowledge_fts MATCH ?1 AND knowledge_fts.rowid IN (SELECT value FROM json_each(?2))"
    );
    let list = format!("[{}]", ids.iter().map(|(rowid, _)| rowid.to_string()).collect::<Vec<_>>().join(","));
    let res = r.query(&sql, vec![fts.into(), list.into()])?;
    let mut by_rowid: HashMap<i64, Vec<SqlValue>> = res.rows.into_iter().filter_map(|row| Some((row[0].as_i64()?, row))).collect();
    Ok(ids
        .iter()
        .filter_map(|(rowid, rank)| {
            let row = by_rowid.remove(rowid)?;
            Some(SearchHit {
                id: text(&row[1]),
                category: text(&row[2]),
                topic: text(&row[3]),
                snippet: text(&row[4]),
                score: -rank,
                created_at: row[5].as_i64().unwrap_or(0),
            })
        })
        .collect())
}

/// Nearest neighbours (cosine similarity, best first), filtered, up to `k` of them.
fn vector_hits(r: &mut Reader, vq: &VectorQuery, filters: &Filters, k: usize) -> Result<Vec<SearchHit>> {
    let (fsql, fparams) = filter_sql(filters, 4);
    let exact = !fsql.is_empty() && {
        // How many live entries the filter keeps, counted up to the exact-scan limit.
        let (csql, cparams) = filter_sql(filters, 1);
        let res = r.query(
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM knowledge k WHERE k.deleted = 0{csql} LIMIT {})",
                EXACT_FILTERED_MAX + 1
            ),
            cparams,
        )?;
        res.rows.first().and_then(|row| row[0].as_i64()).unwrap_or(i64::MAX) <= EXACT_FILTERED_MAX as i64
    };
    let sql = if exact {
        // A selective filter: the exact nearest among the entries it keeps. The index's
        // neighbours are global, so filtering them afterwards loses most of a small
        // category's true neighbours.
        format!(
            "SELECT k.id, k.category, k.topic, substr(k.content, 1, {PREVIEW_CHARS}), k.created_at, \
             vector_distance_cos(v.emb, vector32(?1)) AS d \
             FROM knowledge k JOIN {tbl} v ON v.id = k.id WHERE k.deleted = 0 AND ?2 > 0{fsql} ORDER BY d, k.rowid LIMIT ?3", // ?2 (the over-fetch) is unused here
            tbl = vq.table
        )
    } else {
        // Over-fetch neighbours so filters still leave a full page.
        format!(
            "SELECT k.id, k.category, k.topic, substr(k.content, 1, {PREVIEW_CHARS}), k.created_at, \
             vector_distance_cos(v.emb, vector32(?1)) AS d \
             FROM vector_top_k('{idx}', vector32(?1), ?2) t JOIN {tbl} v ON v.rowid = t.id \
             JOIN knowledge k ON k.id = v.id WHERE k.deleted = 0{fsql} ORDER BY d, k.rowid LIMIT ?3",
            idx = vq.index,
            tbl = vq.table
        )
    };
    let fetch = if fsql.is_empty() { k } else { (k * 4).max(100) };
    let mut params: Vec<SqlValue> = vec![SqlValue::Blob(vq.blob.clone()), (fetch as i64).into(), (k as i64).into()];
    params.extend(fparams);
    let res = r.query(&sql, params)?;
    Ok(res
        .rows
        .iter()
        .map(|row| SearchHit {
            id: text(&row[0]),
            category: text(&row[1]),
            topic: text(&row[2]),
            snippet: text(&row[3]),
            score: 1.0 - row[5].as_f64().unwrap_or(1.0),
            created_at: row[4].as_i64().unwrap_or(0),
        })
        .collect())
}

thread_local! {
    /// Whether this read-pool thread's connection got the search tuning pragmas.
    static TUNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Memory-maps the database on this reader connection (once per thread): FTS ranking
/// does many random B-tree lookups (doc sizes, content rows); with mmap they are memory
/// reads shared by all readers instead of `pread` calls into per-connection caches.
/// Should move into the store's `open_reader`.
fn tune(r: &mut Reader) {
    if !TUNED.with(|t| t.replace(true)) {
        if let Err(e) = r.conn.batch("PRAGMA mmap_size = 1073741824") {
            tracing::debug!(error = %e, "mmap_size not applied");
        }
    }
}

/// Runs a plan. Blocking: call only on a read-pool thread.
pub(crate) fn run(r: &mut Reader, plan: &Plan) -> Result<Found> {
    tune(r);
    match plan.mode {
        Mode::Lexical => lexical(r, plan),
        Mode::Vector | Mode::Hybrid => match fused(r, plan) {
            Ok(f) => Ok(f),
            Err(e) => {
                tracing::warn!(error = %e, "vector search failed; answering lexically");
                let mut f = lexical(r, plan)?;
                f.vector_error = Some(e.to_string());
                Ok(f)
            }
        },
    }
}

/// How many of the best BM25 matches a natural-language query re-ranks by coverage.
pub const COVERAGE_POOL: usize = 50;

/// The coverage-boosted rank (lower is better, like BM25's): `rank × (1 + boost × (c−1) /
/// (n−1))` for an entry matching `c` of the query's `n` words. BM25 already adds each
/// matched word's weight; the factor also rewards matching *more* words over matching one
/// rare word many times.
pub(crate) fn coverage_rank(rank: f64, matched: usize, n: usize, boost: f64) -> f64 {
    if n < 2 || matched == 0 {
        return rank;
    }
    rank * (1.0 + boost * (matched - 1) as f64 / (n - 1) as f64)
}

/// Lower-case word without common English inflection suffixes, so `groups`, `grouped`
/// and `group` count as one word for coverage.
pub(crate) fn light_stem(w: &str) -> String {
    light_stem_ref(w).into_owned()
}

/// [`light_stem`] without a copy unless the stem changes a letter (`ies` → `y`).
fn light_stem_ref(w: &str) -> std::borrow::Cow<'_, str> {
    for suf in ["ies", "ing", "ed", "es", "ly", "s"] {
        if let Some(stem) = w.strip_suffix(suf) {
            if stem.chars().count() >= 3 {
                return if suf == "ies" { format!("{stem}y").into() } else { stem.into() };
            }
        }
    }
    w.into()
}

/// How many of `terms` (distinct, lower-cased, light-stemmed) occur in `text` as a word
/// after the same treatment. One pass, one reused buffer: it runs over every candidate
/// of every natural-language query.
fn coverage(text: &str, terms: &[String]) -> usize {
    let mut found = vec![false; terms.len()];
    let mut lower = String::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        lower.clear();
        if w.is_ascii() {
            lower.push_str(w);
            lower.make_ascii_lowercase();
        } else {
            lower.push_str(&w.to_lowercase());
        }
        let stem = light_stem_ref(&lower);
        for (t, f) in terms.iter().zip(found.iter_mut()) {
            *f |= *t == *stem;
        }
    }
    found.iter().filter(|f| **f).count()
}

/// The best `pool` BM25 matches (any word) of a natural-language query, the first
/// [`COVERAGE_POOL`] re-ranked by coverage; and whether the fast ranker ranked them.
fn coverage_ranked(r: &mut Reader, plan: &Plan, fts: &str, pool: usize) -> Result<(Vec<(i64, f64)>, bool)> {
    let pool = pool.max(COVERAGE_POOL);
    let (ids, fast_used) = lexical_ids(r, fts, plan.fast(false), &plan.filters, pool, 0, None, 0)?;
    // Only the first COVERAGE_POOL are re-ranked (the rest keep BM25 order after them),
    // so every page sees the same order however deep it is.
    let head = ids.len().min(COVERAGE_POOL);
    let mut matched: HashMap<i64, usize> = HashMap::new();
    if head > 1 {
        // One read of the candidates' text; words are compared after a light suffix
        // strip (a count for a boost, not a match decision: BM25 already chose them).
        let list = format!(
            "[{}]",
            ids[..head].iter().map(|(rowid, _)| rowid.to_string()).collect::<Vec<_>>().join(",")
        );
        let res = r.query(
            "SELECT rowid, topic || ' ' || content || ' ' || tags FROM knowledge WHERE rowid IN (SELECT value FROM json_each(?1))",
            vec![list.into()],
        )?;
        for row in &res.rows {
            let (Some(id), Some(text)) = (row[0].as_i64(), row[1].as_str()) else {
                continue;
            };
            matched.insert(id, coverage(text, &plan.coverage_terms));
        }
    }
    let n = plan.coverage_terms.len();
    let mut ranked: Vec<(i64, f64)> = ids[..head]
        .iter()
        .map(|(rowid, rank)| {
            (
                *rowid,
                coverage_rank(*rank, matched.get(rowid).copied().unwrap_or(0), n, plan.coverage_boost),
            )
        })
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    ranked.extend_from_slice(&ids[head..]);
    Ok((ranked, fast_used))
}

/// Natural-language lexical page: the best BM25 matches (any word), re-ranked by
/// coverage, paged by position.
fn lexical_coverage(r: &mut Reader, plan: &Plan, fts: &str, start: usize) -> Result<Found> {
    let (ranked, fast_used) = coverage_ranked(r, plan, fts, start + plan.limit + 1)?;
    let more = ranked.len() > start + plan.limit;
    let page: Vec<(i64, f64)> = ranked.into_iter().skip(start).take(plan.limit).collect();
    let hits = hydrate(r, fts, plan.fast_all.as_ref().filter(|_| fast_used), &page)?;
    Ok(Found {
        next: more.then_some(Cursor::Offset(start + page.len())),
        hits,
        relaxed: false,
        windowed: false,
        vector_error: None,
    })
}

fn lexical(r: &mut Reader, plan: &Plan) -> Result<Found> {
    let Some(fts) = plan.fts_all.as_deref() else {
        return Ok(Found {
            hits: vec![],
            next: None,
            relaxed: false,
            windowed: false,
            vector_error: None,
        });
    };
    if !plan.coverage_terms.is_empty() && plan.coverage_boost > 0.0 {
        match plan.cursor {
            None => return lexical_coverage(r, plan, fts, plan.offset),
            Some(Cursor::Offset(n)) => return lexical_coverage(r, plan, fts, n),
            Some(Cursor::After { .. }) => {}
        }
    }
    let (after, lo) = match plan.cursor {
        Some(Cursor::After { rank, rowid, lo }) => (Some((rank, rowid)), lo),
        Some(Cursor::Offset(_)) => {
            return Err(SearchError::BadCursor(
                "a vector/hybrid cursor was given to a lexical search".into(),
            ))
        }
        None => (None, window_bound(r, fts, &plan.filters, plan.rank_window)?),
    };
    let mut used = fts;
    let mut windowed = lo > 0;
    let (mut ids, mut fast_used) = lexical_ids(r, fts, plan.fast(false), &plan.filters, plan.limit + 1, plan.offset, after, lo)?;
    let mut relaxed = false;
    if ids.is_empty() && after.is_none() && plan.offset == 0 {
        if let Some(any) = plan.fts_any.as_deref() {
            let lo_any = window_bound(r, any, &plan.filters, plan.rank_window)?;
            (ids, fast_used) = lexical_ids(r, any, plan.fast(true), &plan.filters, plan.limit + 1, 0, None, lo_any)?;
            relaxed = !ids.is_empty();
            windowed = lo_any > 0;
            used = any;
        }
    }
    let more = ids.len() > plan.limit;
    ids.truncate(plan.limit);
    // A relaxed (OR) page cannot be continued by an AND cursor; it is one page only.
    let next = if more && !relaxed {
        ids.last().map(|(rowid, rank)| Cursor::After {
            rank: *rank,
            rowid: *rowid,
            lo,
        })
    } else {
        None
    };
    let fast_q = if relaxed { plan.fast_any.as_ref() } else { plan.fast_all.as_ref() };
    let hits = hydrate(r, used, fast_q.filter(|_| fast_used), &ids)?;
    Ok(Found {
        hits,
        next,
        relaxed,
        windowed,
        vector_error: None,
    })
}

fn fused(r: &mut Reader, plan: &Plan) -> Result<Found> {
    let vq = plan.vector.as_ref().ok_or_else(|| SearchError::InvalidArgument {
        field: "mode",
        reason: "no vectors are available".into(),
    })?;
    let start = match plan.cursor {
        Some(Cursor::Offset(n)) => n,
        Some(Cursor::After { .. }) => {
            return Err(SearchError::BadCursor(
                "a lexical cursor was given to a vector/hybrid search".into(),
            ))
        }
        None => plan.offset,
    };
    let want = start + plan.limit + 1;
    let k = want.max(FUSION_POOL);
    let mut windowed = false;
    let vec_hits = vector_hits(r, vq, &plan.filters, k)?;
    let mut ranked: Vec<SearchHit> = if plan.mode == Mode::Vector {
        vec_hits
    } else {
        let lex = match plan.fts_all.as_deref() {
            Some(fts) if !plan.coverage_terms.is_empty() && plan.coverage_boost > 0.0 => {
                // Natural language: the same coverage-ranked list lexical mode shows.
                let (ids, fast_used) = coverage_ranked(r, plan, fts, k)?;
                hydrate(r, fts, plan.fast_all.as_ref().filter(|_| fast_used), &ids)?
            }
            Some(fts) => {
                let lo = window_bound(r, fts, &plan.filters, plan.rank_window)?;
                windowed = lo > 0;
                let (mut ids, mut fast_used) = lexical_ids(r, fts, plan.fast(false), &plan.filters, k, 0, None, lo)?;
                let mut used = fts;
                let mut fast_q = plan.fast_all.as_ref();
                if ids.is_empty() {
                    if let Some(any) = plan.fts_any.as_deref() {
                        let lo_any = window_bound(r, any, &plan.filters, plan.rank_window)?;
                        windowed = lo_any > 0;
                        (ids, fast_used) = lexical_ids(r, any, plan.fast(true), &plan.filters, k, 0, None, lo_any)?;
                        used = any;
                        fast_q = plan.fast_any.as_ref();
                    }
                }
                hydrate(r, used, fast_q.filter(|_| fast_used), &ids)?
            }
            None => vec![],
        };
        fuse(plan.fusion, lex, vec_hits)
    };
    let more = ranked.len() > start + plan.limit;
    let hits: Vec<SearchHit> = ranked.drain(..).skip(start).take(plan.limit).collect();
    Ok(Found {
        next: more.then_some(Cursor::Offset(start + hits.len())),
        hits,
        relaxed: false,
        windowed,
        vector_error: None,
    })
}

/// Merges a lexical and a vector ranking (each best first, with its own scores, higher
/// better) as `fusion` says. Lexical hits keep their highlighted snippet.
pub(crate) fn fuse(fusion: Fusion, lexical: Vec<SearchHit>, vector: Vec<SearchHit>) -> Vec<SearchHit> {
    match fusion {
        Fusion::Rrf { k } => merge(lexical, vector, |i, _, _| 1.0 / (k + i as f64 + 1.0)),
        Fusion::Linear { vector_weight, norm } => {
            let scale = |list: &[SearchHit]| -> (f64, f64) {
                let max = list.iter().map(|h| h.score).fold(f64::NEG_INFINITY, f64::max);
                let min = list.iter().map(|h| h.score).fold(f64::INFINITY, f64::min);
                match norm {
                    ScoreNorm::MinMax if max > min => (min, max - min),
                    ScoreNorm::MinMax => (min - 1.0, 1.0),
                    ScoreNorm::Max if max > 0.0 => (0.0, max),
                    ScoreNorm::Max => (0.0, 1.0),
                    ScoreNorm::Std => {
                        let n = list.len().max(1) as f64;
                        let mean = list.iter().map(|h| h.score).sum::<f64>() / n;
                        let var = list.iter().map(|h| (h.score - mean).powi(2)).sum::<f64>() / n;
                        (min, if var > 0.0 { var.sqrt() } else { 1.0 })
                    }
                }
            };
            let (lex_scale, vec_scale) = (scale(&lexical), scale(&vector));
            let w = vector_weight.clamp(0.0, 1.0);
            merge(lexical, vector, move |_, s, side| {
                let (lo, span) = if side == 0 { lex_scale } else { vec_scale };
                (if side == 0 { 1.0 - w } else { w }) * ((s - lo) / span)
            })
        }
    }
}

/// Reciprocal rank fusion with the usual constant ([`RRF_K`]).
#[cfg(test)]
pub(crate) fn rrf(lexical: Vec<SearchHit>, vector: Vec<SearchHit>) -> Vec<SearchHit> {
    fuse(Fusion::Rrf { k: RRF_K }, lexical, vector)
}

/// Sums `part(rank, score, side)` per entry over both lists (side 0 = lexical) and sorts
/// best first.
fn merge(lexical: Vec<SearchHit>, vector: Vec<SearchHit>, part: impl Fn(usize, f64, usize) -> f64) -> Vec<SearchHit> {
    let mut by_id: HashMap<String, SearchHit> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (side, list) in [lexical, vector].into_iter().enumerate() {
        for (i, mut h) in list.into_iter().enumerate() {
            let s = part(i, h.score, side);
            match by_id.get_mut(&h.id) {
                Some(e) => e.score += s,
                None => {
                    h.score = s;
                    order.push(h.id.clone());
                    by_id.insert(h.id.clone(), h);
                }
            }
        }
    }
    let mut out: Vec<SearchHit> = order.into_iter().filter_map(|id| by_id.remove(&id)).collect();
    out.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str) -> SearchHit {
        SearchHit {
            id: id.into(),
            category: String::new(),
            topic: String::new(),
            snippet: String::new(),
            score: 0.0,
            created_at: 0,
        }
    }

    #[test]
    fn coverage_boost_prefers_more_words() {
        // BM25 ranks are negative (lower is better).
        assert_eq!(coverage_rank(-2.0, 1, 4, 1.0), -2.0, "one word: no boost");
        assert_eq!(coverage_rank(-2.0, 4, 4, 1.0), -4.0, "every word: doubled");
        assert!(
            coverage_rank(-1.5, 3, 4, 1.0) < coverage_rank(-2.0, 1, 4, 1.0),
            "coverage can beat a stronger single word"
        );
        assert_eq!(coverage_rank(-2.0, 3, 1, 1.0), -2.0, "single-word queries are unchanged");
        assert_eq!(coverage_rank(-2.0, 3, 4, 0.0), -2.0, "boost 0 is plain BM25");
        assert_eq!(light_stem("groups"), light_stem("group"));
        assert_eq!(light_stem("painting"), "paint");
        assert_eq!(light_stem("stories"), "story");
        assert_eq!(light_stem("is"), "is");
        let terms: Vec<String> = ["group", "paint", "story", "caroline", "support group"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(coverage("Caroline's GROUPS: painting stories", &terms), 4);
        assert_eq!(coverage("groups group grouped", &terms), 1);
        assert_eq!(coverage("a support group", &terms), 1, "a phrase term is never one word");
        assert_eq!(coverage("Ünïcode STORIES", &terms), 1);
    }

    fn scored(v: &[(&str, f64)]) -> Vec<SearchHit> {
        v.iter().map(|(id, s)| SearchHit { score: *s, ..hit(id) }).collect()
    }

    #[test]
    fn linear_fusion_weighs_normalised_scores() {
        let lex = || scored(&[("a", 9.0), ("b", 5.0), ("c", 1.0)]);
        let vec = || scored(&[("c", 0.9), ("b", 0.8), ("d", 0.1)]);
        let ids = |f: Fusion| fuse(f, lex(), vec()).iter().map(|h| h.id.clone()).collect::<Vec<_>>();
        let lin = |w| Fusion::Linear {
            vector_weight: w,
            norm: ScoreNorm::MinMax,
        };
        // Weight 0: lexical order; weight 1: vector order (a side's worst scores 0, as if
        // absent).
        assert_eq!(&ids(lin(0.0))[..2], ["a", "b"]);
        assert_eq!(&ids(lin(1.0))[..2], ["c", "b"]);
        // Even: `b`, good on both sides (0.5 + 0.875), beats `a` and `c`, each best on one.
        assert_eq!(ids(lin(0.5))[0], "b");
        let out = fuse(lin(0.5), lex(), vec());
        assert!((out[0].score - 0.5 * (0.5 + 0.875)).abs() < 1e-9, "{out:?}");
        // Max normalisation keeps the gaps: `a` = 1 × 0.5, `b` = (5/9 + 0.8/0.9) × 0.5.
        let m = fuse(
            Fusion::Linear {
                vector_weight: 0.5,
                norm: ScoreNorm::Max,
            },
            lex(),
            vec(),
        );
        assert_eq!(m[0].id, "b");
        // Std: (s − min) / σ. Lexical σ = √(32/3), vector σ ≈ 0.356, so `b` =
        // 0.5 × (4/3.266 + 0.7/0.356) beats `c` = 0.5 × (0 + 0.8/0.356).
        let z = fuse(
            Fusion::Linear {
                vector_weight: 0.5,
                norm: ScoreNorm::Std,
            },
            lex(),
            vec(),
        );
        let sd_vec = {
            let m = (0.9 + 0.8 + 0.1) / 3.0;
            (((0.9f64 - m).powi(2) + (0.8f64 - m).powi(2) + (0.1f64 - m).powi(2)) / 3.0).sqrt()
        };
        let b = 0.5 * (4.0 / (32.0f64 / 3.0).sqrt() + 0.7 / sd_vec);
        assert_eq!(z[0].id, "b");
        assert!((z[0].score - b).abs() < 1e-9, "{z:?}");
        assert_eq!(z.iter().find(|h| h.id == "d").map(|h| h.score), Some(0.0), "a list's worst is 0");
        assert_eq!(DEFAULT_FUSION.label(), "linear_w0.40_minmax");
        assert_eq!(Fusion::Rrf { k: 60.0 }.label(), "rrf_k60");
    }

    #[test]
    fn rrf_rewards_agreement() {
        let out = rrf(vec![hit("a"), hit("b"), hit("c")], vec![hit("c"), hit("d"), hit("a")]);
        let ids: Vec<&str> = out.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids[0], "a");
        assert_eq!(ids[1], "c");
        assert_eq!(ids.len(), 4);
    }
}
