//! Target `search`: arbitrary user texts (corpus words, FTS5 syntax, quotes, prefixes,
//! column filters, control and combining characters, very long input) through the whole
//! query path of two search actors on the same store: one with the fast ranker
//! (`fastlex`), one ranking through FTS5 (`fast_lexical(false)`, the baseline the
//! bit-equality unit test also uses). Invariants: no panic; an error is a typed
//! validation error (`ErrorKind::Invalid`) and both actors agree on it; otherwise both
//! return the same hits (id, topic, snippet and score bit for bit), on the first page and
//! on the page after `next_cursor`. Every so often the corpus changes (adds with
//! arbitrary text, updates, deletes) so the fast ranker's catch-up path runs too, and
//! arbitrary JSON requests go through `search_json`.

use crate::gen::{self, Gen};
use crate::{take_panics, Finding, Opts, Report};
use edgeswarm::{ErrorKind, Knowledge, KnowledgeUpdate, Mode, Search, SearchConfig, SearchRequest, SearchResponse, Swarm};
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "agent", "agents", "memory", "swarm", "region", "café", "CAFE", "naïve", "running", "runs", "sync", "latency", "vector", "index",
    "query", "Über", "uber", "write", "writes", "disk", "edge", "node", "tokyo", "paris", "x1", "42", "the", "what", "did", "go",
];

/// How long one search may take.
const BOUND: Duration = Duration::from_secs(10);

fn corpus_text(g: &mut Gen, lo: usize, hi: usize) -> String {
    let n = lo + g.below(hi - lo + 1);
    let mut t = String::new();
    for i in 0..n {
        if i > 0 {
            t.push_str(g.pick(&[" ", " ", ". ", ": ", " \n "]));
        }
        t.push_str(WORDS[g.below(WORDS.len())]);
    }
    t
}

/// The parts of a response both rankers must agree on.
fn key(r: &SearchResponse) -> Vec<(String, String, String, u64)> {
    r.hits
        .iter()
        .map(|h| (h.id.clone(), h.topic.clone(), h.snippet.clone(), h.score.to_bits()))
        .collect()
}

type Outcome = Result<SearchResponse, (ErrorKind, String)>;

async fn one(s: &Search, req: SearchRequest) -> Result<Outcome, String> {
    match tokio::time::timeout(BOUND, s.search(req)).await {
        Ok(Ok(r)) => Ok(Ok(r)),
        Ok(Err(e)) => {
            let msg = e.to_string();
            Ok(Err((edgeswarm::Error::from(e).kind(), msg)))
        }
        Err(_) => Err(format!("no answer within {BOUND:?}")),
    }
}

/// Compares the two rankers on `req`; a finding's (class, detail).
async fn compare(fast: &Search, slow: &Search, req: SearchRequest) -> Result<usize, (String, String)> {
    let a = one(fast, req.clone()).await.map_err(|e| ("hang".to_string(), e))?;
    let b = one(slow, req.clone()).await.map_err(|e| ("hang".to_string(), e))?;
    match (&a, &b) {
        (Err((ka, ma)), Err((kb, _))) => {
            if *ka != ErrorKind::Invalid || *kb != ErrorKind::Invalid {
                return Err(("untyped-error".into(), format!("fast: {ka:?} {ma}; fts5: {kb:?}")));
            }
        }
        (Ok(_), Err((k, m))) | (Err((k, m)), Ok(_)) => {
            return Err((
                "rankers-disagree-on-error".into(),
                format!("one ranker answered, the other failed: {k:?} {m}"),
            ));
        }
        (Ok(x), Ok(y)) => {
            if key(x) != key(y) {
                let (kx, ky) = (key(x), key(y));
                let i = kx.iter().zip(&ky).position(|(p, q)| p != q).unwrap_or(kx.len().min(ky.len()));
                return Err((
                    "fast-ranker-differs-from-fts5".into(),
                    format!(
                        "{} vs {} hits; first difference at {i}: fast {:?} / fts5 {:?}",
                        kx.len(),
                        ky.len(),
                        kx.get(i).map(|h| (&h.0, &h.2, f64::from_bits(h.3))),
                        ky.get(i).map(|h| (&h.0, &h.2, f64::from_bits(h.3)))
                    ),
                ));
            }
            if let (Some(cx), Some(cy)) = (&x.next_cursor, &y.next_cursor) {
                let pa = one(fast, req.clone().cursor(cx.clone()))
                    .await
                    .map_err(|e| ("hang".to_string(), e))?;
                let pb = one(slow, req.clone().cursor(cy.clone()))
                    .await
                    .map_err(|e| ("hang".to_string(), e))?;
                let same = match (&pa, &pb) {
                    (Ok(p), Ok(q)) => key(p) == key(q),
                    (Err(p), Err(q)) => p.0 == q.0,
                    _ => false,
                };
                if !same {
                    return Err((
                        "fast-ranker-differs-from-fts5:page2".into(),
                        format!("second pages differ: {:?} / {:?}", pa.map(|r| key(&r)), pb.map(|r| key(&r))),
                    ));
                }
            } else if x.next_cursor.is_some() != y.next_cursor.is_some() {
                return Err((
                    "fast-ranker-differs-from-fts5:cursor".into(),
                    "one ranker has a next page, the other not".into(),
                ));
            }
            return Ok(x.hits.len());
        }
    }
    Ok(0)
}

pub async fn run(opts: Opts) -> Report {
    let mut report = Report::default();
    let _ = take_panics();
    let path = opts.dir.join("search.db");
    let swarm = match Swarm::builder().path(&path).durability(edgeswarm::Durability::Normal).start().await {
        Ok(s) => s,
        Err(e) => {
            report.findings.push(Finding {
                class: "setup".into(),
                detail: e.to_string(),
                input: String::new(),
            });
            return report;
        }
    };
    let mut g = Gen::new(opts.seed);
    let mut ids = Vec::new();
    let setup = async {
        for i in 0..300 {
            let k = Knowledge::new(
                "notes",
                corpus_text(&mut g, 1, 5),
                format!("{} entry{i}", corpus_text(&mut g, 3, 40)),
            );
            ids.push(swarm.add_knowledge(k).await.map_err(|e| e.to_string())?);
        }
        let fast = Search::start(swarm.store().clone(), SearchConfig::new().cache_capacity(0))
            .await
            .map_err(|e| e.to_string())?;
        let slow = Search::start(swarm.store().clone(), SearchConfig::new().cache_capacity(0).fast_lexical(false))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((fast, slow))
    };
    let (fast, slow) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            report.findings.push(Finding {
                class: "setup".into(),
                detail: e,
                input: String::new(),
            });
            return report;
        }
    };
    let (mut writes, mut compared, mut nonempty, mut hits) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < opts.deadline {
        report.iterations += 1;
        let roll = g.below(100);
        let (input, result) = if roll < 4 {
            // Change the corpus (arbitrary text goes into the index too).
            writes += 1;
            let r = match g.below(3) {
                0 => swarm
                    .add_knowledge(Knowledge::new(
                        "notes",
                        gen::search_text(&mut g, WORDS),
                        gen::search_text(&mut g, WORDS),
                    ))
                    .await
                    .map(|_| ()),
                1 => {
                    let id = ids[g.below(ids.len())].clone();
                    let upd = KnowledgeUpdate {
                        content: Some(corpus_text(&mut g, 1, 30)),
                        ..Default::default()
                    };
                    swarm.update_knowledge(&id, upd).await
                }
                _ => {
                    let id = ids[g.below(ids.len())].clone();
                    swarm.delete_knowledge(&id).await.map(|_| ())
                }
            };
            let r = match r {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::Invalid | ErrorKind::NotFound) => Ok(()),
                Err(e) => Err(("write-failed".to_string(), e.to_string())),
            };
            ("(a corpus write)".to_string(), r)
        } else if roll < 9 {
            let v = gen::json(&mut g, 3, &|g: &mut Gen| match g.below(4) {
                0 => g
                    .pick(&[
                        "query",
                        "mode",
                        "filters",
                        "limit",
                        "offset",
                        "cursor",
                        "category",
                        "tags_any",
                        "metadata",
                        "created_after",
                    ])
                    .to_string(),
                1 => gen::search_text(g, WORDS),
                2 => g
                    .pick(&["lexical", "vector", "hybrid", "$.a", "a.b", "$", "..", "notes"])
                    .to_string(),
                _ => "x".repeat(g.below(300)),
            });
            let input = v.to_string();
            let r = match tokio::time::timeout(BOUND, fast.search_json(&v)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    let k = edgeswarm::Error::from(e).kind();
                    if k == ErrorKind::Invalid {
                        Ok(())
                    } else {
                        Err(("untyped-error:search_json".to_string(), format!("{k:?}")))
                    }
                }
                Err(_) => Err(("hang".to_string(), "search_json did not answer".to_string())),
            };
            (input, r)
        } else {
            compared += 1;
            let text = gen::search_text(&mut g, WORDS);
            let mut req = SearchRequest::new(text.clone()).mode(Mode::Lexical).limit(1 + g.below(25) as i64);
            if g.chance(0.2) {
                req = req.offset(g.below(30) as i64 - 2);
            }
            let input = format!("{text:?} (limit {:?}, offset {:?})", req.limit, req.offset);
            crate::set_current(&input);
            let r = compare(&fast, &slow, req).await;
            if let Ok(n) = r {
                hits += n as u64;
                nonempty += (n > 0) as u64;
            }
            (input, r.map(|_| ()))
        };
        let panics = take_panics();
        let result = if panics.is_empty() {
            result
        } else {
            Err(("panic".to_string(), panics.join(" | ")))
        };
        if let Err((class, detail)) = result {
            eprintln!("edgeswarm-fuzz search: [{class}] {detail}\n  input: {input}");
            if !report.findings.iter().any(|f| f.class == class) {
                report.findings.push(Finding {
                    class: class.clone(),
                    detail,
                    input,
                });
            }
            if !opts.keep_going || class == "hang" {
                break;
            }
        }
    }
    report.stats = format!("{compared} texts compared ({nonempty} with hits, {hits} hits), {writes} corpus writes");
    let _ = tokio::time::timeout(Duration::from_secs(10), swarm.shutdown()).await;
    report
}
