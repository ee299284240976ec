//! Exact BM25 top-k for word and phrase queries, without FTS5's per-row ranking cost.
//!
//! Why it exists: `ORDER BY rank` makes FTS5 call `bm25()` once per matching row, and each
//! call looks the row's token count up in `knowledge_fts_docsize` through a nested
//! statement (~1 µs a row here). A common word matches 5% of the corpus, so the slowest
//! queries grew with the corpus (p99 6.5 ms at 100k entries).
//!
//! What it does instead, per query, inside one read transaction on a raw read-only
//! connection of the read-pool thread:
//! 1. tokenizes each query word with FTS5's own tokenizer (found through the `fts5_api`),
//!    so the terms are exactly the ones FTS5 would look up;
//! 2. reads each term's instances (row, column, offset) from an `fts5vocab` table: one
//!    sequential pass over the term's doclist;
//! 3. takes row count and token totals from the index's averages record, and each row's
//!    token count from [`DocLens`], an in-memory copy kept current by reading
//!    `_knowledge_touched` (the FTS triggers append every rewritten rowid to it);
//! 4. evaluates FTS5's bm25 formula, phrase by phrase in FTS5's order, so the scores are
//!    bit-identical to `bm25(knowledge_fts, 10.0, 1.0, 4.0)` (a unit test compares them),
//!    but only for rows that can still reach the top k (MaxScore: a phrase's share of
//!    any score is bounded, so once the k-th best score passes what the phrases not yet
//!    visited could add, their other rows are skipped). A lone token's rows and
//!    frequencies are derived once per list version and shared by later queries. This
//!    is what keeps narrow vocabularies fast, where every query word matches a large
//!    share of the rows (a 3-word query over one project's 60-word vocabulary matches
//!    ~80% of them).
//!
//! Anything it cannot answer exactly (prefix terms, a token count it does not hold, a
//! word the tokenizer splits) returns `None` and the caller runs the FTS5 statement.
//!
//! The modules, along those steps:
//! - [`lens`]: the view over the FTS index — this thread's raw connection (tokenizer,
//!   term instance lists through `fts5vocab`, totals), the in-memory token counts caught
//!   up from `_knowledge_touched`, and the frequent terms' instance lists (steps 1–3);
//! - [`rank`]: phrase matching, the BM25 formula and the top-k (step 4);
//! - [`snippet`]: display fields and FTS5-identical snippets for the ranked rows.
//!
//! Every SQLite call goes through [`edgeswarm_store::raw`]; there is no FFI here.

mod lens;
mod rank;
mod snippet;

pub(crate) use lens::DocLens;
pub(crate) use rank::ranked;
pub(crate) use snippet::{hydrate, HitRow};

use crate::error::SearchError;
use std::collections::HashMap;
use std::sync::Arc;

/// A query the fast path can rank: every term is a word or a quoted phrase (no prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FastQuery {
    /// Each user term as its words (a phrase when more than one).
    pub terms: Vec<Vec<String>>,
    /// Rows must contain every term (AND) or any of them (OR).
    pub all: bool,
    /// The whole text is one more phrase (FTS expression `(...) OR "w1 w2 ..."`).
    pub whole_phrase: bool,
}

/// Instance lists by term (FTS5 token).
type Lists = HashMap<String, Arc<TermList>>;

/// One term's instances, ordered by (row, column, offset), and the per-row weighted
/// frequencies derived from them the first time a query ranks the term alone. A
/// frequent term's list is shared by every query until a write patches it, so its rows
/// are derived once per version instead of once per query.
#[derive(Debug)]
struct TermList {
    /// The instances, as `fts5vocab` lists them.
    inst: Vec<Inst>,
    /// `phrase_hits` of the term alone; empty until first needed, and reset when the
    /// instances change.
    rows: std::sync::OnceLock<rank::RowHits>,
}

impl TermList {
    fn new(inst: Vec<Inst>) -> TermList {
        TermList {
            inst,
            rows: std::sync::OnceLock::new(),
        }
    }
    fn as_slice(&self) -> &[Inst] {
        &self.inst
    }
    fn len(&self) -> usize {
        self.inst.len()
    }
    /// The instances, for patching; forgets the derived rows.
    fn inst_mut(&mut self) -> &mut Vec<Inst> {
        self.rows = std::sync::OnceLock::new();
        &mut self.inst
    }
    /// The rows holding the term and the term's weighted frequency in each.
    fn rows(&self) -> &rank::RowHits {
        self.rows.get_or_init(|| rank::term_rows(&self.inst))
    }
}

impl Clone for TermList {
    /// Copies the instances only (a clone is made to be patched).
    fn clone(&self) -> TermList {
        TermList::new(self.inst.clone())
    }
}

/// One instance of a term: row, column index, token offset in the column.
#[derive(Debug, Clone, Copy)]
struct Inst {
    /// The row (rowid of `knowledge` and `knowledge_fts`).
    doc: i64,
    /// The FTS column: 0 topic, 1 content, 2 tags.
    col: u8,
    /// Token offset in the column.
    off: u32,
}

/// This module's errors: SQLite failures of the raw connection and states it cannot
/// use; the caller logs them once and ranks through FTS5.
fn err(msg: impl std::fmt::Display) -> SearchError {
    SearchError::Store(edgeswarm_store::StoreError::sql(format!("fast lexical ranking: {msg}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of this module: the same rows, in the same order, with bit-identical
    /// scores as FTS5's own `bm25()` — over inserts, updates (content and tags), deletes
    /// (tombstones remove FTS entries), diacritics, stemming, repeated words and phrases,
    /// AND and OR forms, pagination, and after more writes (the incremental catch-up).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scores_equal_fts5_bm25() {
        use crate::knowledge::{add_knowledge, delete_knowledge, update_knowledge, KnowledgeUpdate};
        use crate::query::parse;
        use edgeswarm_core::{Durability, Knowledge, StoreConfig};
        use edgeswarm_store::{SqlValue, Store};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::at(dir.path().join("k.db"));
        cfg.durability = Durability::Normal;
        let store = Store::open(cfg).await.unwrap();
        let words = [
            "agent", "agents", "memory", "swarm", "region", "café", "CAFE", "naïve", "running", "runs", "sync", "latency", "vector",
            "index", "query", "Über", "uber", "write", "writes", "disk", "edge", "node", "tokyo", "paris", "x1", "42",
        ];
        let mut seed = 7u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let text = |rnd: &mut dyn FnMut(usize) -> usize, lo: usize, hi: usize| {
            let n = lo + rnd(hi - lo + 1);
            let mut t = String::new();
            for i in 0..n {
                if i > 0 {
                    t.push_str([" ", " ", " ", " ", " ", ". ", ": ", " \n "][rnd(8)]);
                }
                t.push_str(words[rnd(words.len())]);
            }
            t
        };
        let mut ids = Vec::new();
        for i in 0..400 {
            let topic = text(&mut rnd, 1, 5);
            let content = format!("{} entry{i}", text(&mut rnd, 3, 40));
            let tags: Vec<String> = (0..rnd(3)).map(|_| words[rnd(words.len())].to_lowercase()).collect();
            let k = Knowledge::new("notes", topic, content).tags(tags);
            let out = add_knowledge(&store, k).await.unwrap();
            if !out.duplicate {
                ids.push(out.id);
            }
        }
        assert!(ids.len() > 350, "the corpus was built ({} entries)", ids.len());

        // Every term is "frequent" here, so the in-memory lists are used and patched.
        let lens = Arc::new(DocLens::with_hot_min(&store.config().path, 1));
        let queries: Vec<String> = {
            let mut q: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            for _ in 0..40 {
                q.push(format!("{} {}", words[rnd(words.len())], words[rnd(words.len())]));
            }
            for _ in 0..15 {
                q.push(format!(
                    "\"{} {}\" {}",
                    words[rnd(words.len())],
                    words[rnd(words.len())],
                    words[rnd(words.len())]
                ));
            }
            q.extend([
                "agent agent".into(),
                "running runs".into(),
                "cafe naive".into(),
                "entry7".into(),
                "nothingmatches".into(),
            ]);
            q
        };
        let compare = |store: Store, lens: Arc<DocLens>, queries: Vec<String>| async move {
            store
                .read(move |r| {
                    let mut nonempty = 0;
                    let mut snippets = 0;
                    for text in &queries {
                        let parsed = parse(text);
                        for any in [false, true] {
                            let (Some(fts), Some(fq)) = (parsed.fts(any), parsed.fast(any)) else { continue };
                            let want = r
                                .query(
                                    "SELECT rowid, bm25(knowledge_fts, 10.0, 1.0, 4.0) AS s FROM knowledge_fts \
                                     WHERE knowledge_fts MATCH ?1 ORDER BY s, rowid LIMIT 1000",
                                    vec![SqlValue::Text(fts.clone())],
                                )
                                .unwrap();
                            let want: Vec<(i64, u64)> = want.rows.iter().map(|row| (row[0].as_i64().unwrap(), row[1].as_f64().unwrap().to_bits())).collect();
                            let got = ranked(&lens, &fq, 1000, 0, None).unwrap().expect("answerable");
                            let got: Vec<(i64, u64)> = got.iter().map(|(d, s)| (*d, s.to_bits())).collect();
                            assert_eq!(got, want, "query {text:?} ({fts})");
                            // Snippets: FTS5's snippet() for the same rows, byte for byte.
                            let top: Vec<i64> = want.iter().take(10).map(|w| w.0).collect();
                            let rows = hydrate(&fq, &top, ("[", "]", "…"), 16).unwrap().expect("hydratable");
                            assert_eq!(rows.iter().map(|x| x.0).collect::<Vec<_>>(), top);
                            for row in rows {
                                let s = r
                                    .query(
                                        "SELECT snippet(knowledge_fts, -1, '[', ']', '…', 16), k.id, k.topic FROM knowledge_fts \
                                         JOIN knowledge k ON k.rowid = knowledge_fts.rowid WHERE knowledge_fts MATCH ?1 AND knowledge_fts.rowid = ?2",
                                        vec![SqlValue::Text(fts.clone()), SqlValue::Integer(row.0)],
                                    )
                                    .unwrap();
                                assert_eq!(row.4, s.rows[0][0].as_str().unwrap(), "snippet of row {} for {text:?} ({fts})", row.0);
                                assert_eq!(row.1, s.rows[0][1].as_str().unwrap());
                                assert_eq!(row.3, s.rows[0][2].as_str().unwrap());
                                snippets += 1;
                            }
                            nonempty += !want.is_empty() as usize;
                            // Pagination: offset, and continuing after a cursor.
                            if want.len() > 6 {
                                let page = ranked(&lens, &fq, 3, 2, None).unwrap().unwrap();
                                assert_eq!(page.iter().map(|p| p.0).collect::<Vec<_>>(), want[2..5].iter().map(|p| p.0).collect::<Vec<_>>());
                                let after = (f64::from_bits(want[4].1), want[4].0);
                                let next = ranked(&lens, &fq, 2, 0, Some(after)).unwrap().unwrap();
                                assert_eq!(next.iter().map(|p| p.0).collect::<Vec<_>>(), want[5..7].iter().map(|p| p.0).collect::<Vec<_>>());
                            }
                        }
                    }
                    assert!(snippets > 300, "snippets compared: {snippets}");
                    Ok(nonempty)
                })
                .await
                .unwrap()
        };
        let nonempty = compare(store.clone(), lens.clone(), queries.clone()).await;
        assert!(nonempty > 60, "most queries match something ({nonempty})");
        assert!(lens.hot_stats().0 > 20, "frequent-term lists were admitted: {:?}", lens.hot_stats());

        // Small rounds of writes: the frequent-term lists are patched, not dropped.
        for round in 0..4 {
            for n in 0..6 {
                let id = &ids[200 + round * 6 + n];
                match n % 3 {
                    0 => {
                        delete_knowledge(&store, id).await.unwrap();
                    }
                    1 => {
                        let upd = KnowledgeUpdate {
                            topic: Some(text(&mut rnd, 1, 4)),
                            content: Some(text(&mut rnd, 1, 30)),
                            ..Default::default()
                        };
                        update_knowledge(&store, id, upd).await.unwrap();
                    }
                    _ => {
                        let k = Knowledge::new("notes", text(&mut rnd, 1, 3), format!("{} round{round}", text(&mut rnd, 3, 20)));
                        add_knowledge(&store, k).await.unwrap();
                    }
                }
            }
            let held = lens.hot_stats().0;
            compare(store.clone(), lens.clone(), queries.clone()).await;
            assert!(lens.hot_stats().0 >= held, "round {round}: lists were patched, not dropped");
        }

        // More writes: updates of content and tags, deletes, new rows; the cache catches up.
        for (n, id) in ids.iter().enumerate().take(120) {
            if n % 3 == 0 {
                delete_knowledge(&store, id).await.unwrap();
            } else {
                let upd = KnowledgeUpdate {
                    content: Some(text(&mut rnd, 1, 60)),
                    tags: Some(vec![words[rnd(words.len())].to_lowercase()]),
                    ..Default::default()
                };
                update_knowledge(&store, id, upd).await.unwrap();
            }
        }
        for i in 0..50 {
            let _ = add_knowledge(
                &store,
                Knowledge::new("notes", text(&mut rnd, 1, 3), format!("{} late{i}", text(&mut rnd, 3, 9))),
            )
            .await;
        }
        compare(store.clone(), lens.clone(), queries.clone()).await;
        // A fresh cache loads everything at once and agrees too.
        compare(store.clone(), Arc::new(DocLens::new(&store.config().path)), queries).await;
        store.shutdown().await.unwrap();
    }
}
