//! Relevance with a fixed corpus and known answers, filters, pagination, write paths,
//! vectors and hybrid.

use edgeswarm_core::Knowledge;
use edgeswarm_search::{Filters, HashEmbedder, KnowledgeUpdate, Mode, Search, SearchConfig, SearchRequest};
use edgeswarm_store::{SqlValue, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn open() -> (edgeswarm_testkit::TempDir, Store) {
    edgeswarm_testkit::temp_store().await
}

/// Fixed corpus: (category, topic, content, tags, region, created_at, metadata).
async fn corpus(s: &Search) -> Vec<String> {
    let rows = [
        (
            "db",
            "Vector indexes",
            "libSQL ships a DiskANN vector index; query it with vector_top_k.",
            vec!["vectors", "libsql"],
            "eu",
            1_000,
            json!({"level": "advanced", "v": 2}),
        ),
        (
            "db",
            "Scattered words",
            "The index was rebuilt. Unrelated text. A vector of numbers appears later.",
            vec!["misc"],
            "us",
            2_000,
            json!({"level": "basic"}),
        ),
        (
            "ops",
            "Backups",
            "Take hourly backups of the home file and verify restores weekly.",
            vec!["ops", "backup"],
            "eu",
            3_000,
            json!({"level": "basic"}),
        ),
        (
            "ops",
            "Rate limiting",
            "Use a token bucket to limit requests per agent; refill every second.",
            vec!["ops", "limits"],
            "us",
            4_000,
            json!({"level": "advanced"}),
        ),
        (
            "ml",
            "Embeddings",
            "Embeddings map text to vectors so similar meanings are close.",
            vec!["vectors", "ml"],
            "ap",
            5_000,
            json!({"level": "basic", "team": {"name": "core"}}),
        ),
        (
            "db",
            "Full text search",
            "FTS5 ranks documents with BM25 and supports phrase queries.",
            vec!["fts", "libsql"],
            "eu",
            6_000,
            json!({"level": "basic"}),
        ),
    ];
    let mut ids = Vec::new();
    for (cat, topic, content, tags, region, created, meta) in rows {
        let mut k = Knowledge::new(cat, topic, content).tags(tags).region(region).metadata(meta);
        k.created_at = created;
        ids.push(s.add_knowledge(k).await.unwrap().id);
    }
    ids
}

fn ids(r: &edgeswarm_search::SearchResponse) -> Vec<&str> {
    r.hits.iter().map(|h| h.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_phrase_beats_scattered_words_and_snippets_highlight() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let c = corpus(&s).await;
    let r = s.search(SearchRequest::new("vector index")).await.unwrap();
    assert_eq!(r.mode, Mode::Lexical);
    assert!(r.fallback_reason.is_none());
    assert_eq!(ids(&r)[0], c[0], "{r:?}");
    assert!(ids(&r).contains(&c[1].as_str()));
    assert!(r.hits[0].snippet.contains('['), "{:?}", r.hits[0].snippet);
    // Quoted phrase: only the exact phrase.
    let r = s.search(SearchRequest::new("\"vector index\"")).await.unwrap();
    assert_eq!(ids(&r), vec![c[0].as_str()]);
    // Prefix.
    let r = s.search(SearchRequest::new("embed*")).await.unwrap();
    assert_eq!(ids(&r), vec![c[4].as_str()]);
    // Topic outweighs content: "backups" is in c[2]'s topic and content only.
    let r = s.search(SearchRequest::new("limit")).await.unwrap();
    assert_eq!(ids(&r)[0], c[3]);
    // AND finds nothing, relaxed OR finds something and says so.
    let r = s.search(SearchRequest::new("backups zebra")).await.unwrap();
    assert_eq!(ids(&r), vec![c[2].as_str()]);
    assert!(r.notes.iter().any(|n| n.contains("any of them")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_exclude_and_pagination_is_stable() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let c = corpus(&s).await;
    let q = |f: Filters| SearchRequest::new("vectors OR libsql OR ops OR index OR text").filters(f);
    // tag filter excludes
    let r = s
        .search(SearchRequest::new("vector").filters(Filters {
            tags_any: vec!["misc".into()],
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&r), vec![c[1].as_str()]);
    let r = s
        .search(SearchRequest::new("vector").filters(Filters {
            tags_all: vec!["vectors".into(), "libsql".into()],
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&r), vec![c[0].as_str()]);
    let r = s
        .search(q(Filters {
            category: Some("ops".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(r.hits.iter().all(|h| h.category == "ops"), "{r:?}");
    assert!(!r.hits.is_empty());
    let r = s
        .search(SearchRequest::new("the").filters(Filters {
            region: Some("eu".into()),
            created_after: Some(2_500),
            created_before: Some(10_000),
            ..Default::default()
        }))
        .await
        .unwrap();
    for h in &r.hits {
        assert!(h.created_at > 2_500);
    }
    let f = Filters::from_json(&json!({"metadata": {"team.name": "core"}})).unwrap();
    let r = s.search(SearchRequest::new("vectors").filters(f)).await.unwrap();
    assert_eq!(ids(&r), vec![c[4].as_str()]);
    let f = Filters::from_json(&json!({"metadata": {"$.level": "advanced", "v": 2}})).unwrap();
    let r = s.search(SearchRequest::new("vector").filters(f)).await.unwrap();
    assert_eq!(ids(&r), vec![c[0].as_str()]);

    // Pagination: pages of 1 via cursor equal one page of 10.
    let all = s.search(SearchRequest::new("the")).await.unwrap();
    assert!(all.hits.len() >= 2, "{all:?}");
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let mut req = SearchRequest::new("the").limit(1);
        if let Some(c) = cursor.take() {
            req = req.cursor(c);
        }
        let r = s.search(req).await.unwrap();
        paged.extend(r.hits.iter().map(|h| h.id.clone()));
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, all.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>());
    let r2 = s.search(SearchRequest::new("the").offset(1).limit(1)).await.unwrap();
    assert_eq!(r2.hits[0].id, all.hits[1].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_deletes_replicated_rows_and_dedup() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let c = corpus(&s).await;
    // Warm the cache with the queries we will repeat after writes.
    assert_eq!(s.search(SearchRequest::new("backups")).await.unwrap().hits.len(), 1);
    assert!(s.search(SearchRequest::new("snapshots")).await.unwrap().hits.is_empty());
    // (The first answer may race the last corpus commit event; a repeat is cached.)
    let mut cached = false;
    for _ in 0..3 {
        cached |= s.search(SearchRequest::new("backups")).await.unwrap().cached;
    }
    assert!(cached);

    s.update_knowledge(
        &c[2],
        KnowledgeUpdate {
            content: Some("Take nightly snapshots of the home file.".into()),
            topic: Some("Snapshots".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = s.search(SearchRequest::new("snapshots")).await.unwrap();
    assert_eq!(ids(&r), vec![c[2].as_str()]);
    assert!(!r.cached);
    assert!(s.search(SearchRequest::new("hourly")).await.unwrap().hits.is_empty());

    assert!(s.delete_knowledge(&c[2]).await.unwrap());
    assert!(!s.delete_knowledge(&c[2]).await.unwrap());
    assert!(s.search(SearchRequest::new("snapshots")).await.unwrap().hits.is_empty());
    assert!(s.get_knowledge(&c[2]).await.unwrap().is_none());
    assert!(matches!(
        s.update_knowledge(&c[2], KnowledgeUpdate::default()).await,
        Err(edgeswarm_search::SearchError::NotFound(_))
    ));

    // A row that arrives like replication does (plain SQL in a writer op, no typed
    // path; raw SQL from users may not write `knowledge`) is found, even when the query
    // was cached as empty just before.
    assert!(s.search(SearchRequest::new("gossip")).await.unwrap().hits.is_empty());
    store
        .transact(|ctx| {
            ctx.execute(
                "INSERT INTO knowledge (id, category, topic, content, tags, hlc, origin) VALUES (?1, 'net', 'Gossip', 'Replicas gossip membership every second', '[\"net\"]', 1, 'peer')",
                vec![SqlValue::Text("remote-1".into())],
            )?;
            // As replication does: the commit event names the row (caches drop it).
            ctx.note_change("knowledge", "remote-1".into());
            Ok(())
        })
        .await
        .unwrap();
    // The store acks a write before it broadcasts the commit event; a flush (a later
    // batch) guarantees the event is out, so the cached empty answer is dropped.
    store.flush().await.unwrap();
    let r = s.search(SearchRequest::new("gossip")).await.unwrap();
    assert_eq!(ids(&r), vec!["remote-1"]);
    assert!(!r.cached);
    let r = s.search(SearchRequest::new("gossip membership")).await.unwrap();
    assert!(r.hits[0].snippet.contains("[gossip membership]"), "{r:?}");

    // Dedup: same normalised content, same category -> one entry, tags/metadata merged.
    let a = s
        .add_knowledge(
            Knowledge::new("notes", "Tip", "Always   VERIFY restores.")
                .tags(["a"])
                .metadata(json!({"x": 1})),
        )
        .await
        .unwrap();
    assert!(!a.duplicate);
    let b = s
        .add_knowledge(
            Knowledge::new("notes", "Tip again", "always verify restores.")
                .tags(["b"])
                .metadata(json!({"y": 2})),
        )
        .await
        .unwrap();
    assert!(b.duplicate);
    assert_eq!(a.id, b.id);
    let e = s.get_knowledge(&a.id).await.unwrap().unwrap();
    assert_eq!(e.tags, vec!["a", "b"]);
    assert_eq!(e.metadata, Some(json!({"x": 1, "y": 2})));
    // Other category: a separate entry.
    let other = s
        .add_knowledge(Knowledge::new("other", "Tip", "always verify restores."))
        .await
        .unwrap();
    assert!(!other.duplicate);
    // Every write was logged for replication.
    let logged = store
        .read_sql(
            "SELECT COUNT(*) FROM _changes WHERE tbl = 'knowledge' AND row_id = ?1",
            vec![SqlValue::Text(a.id.clone())],
        )
        .await
        .unwrap();
    assert_eq!(logged.rows[0][0], SqlValue::Integer(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_and_hybrid_with_embedder_switch() {
    let (_d, store) = open().await;
    // No embedder: vector asked -> lexical, and says why.
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let c = corpus(&s).await;
    let r = s.search(SearchRequest::new("vector").mode(Mode::Vector)).await.unwrap();
    assert_eq!(r.mode, Mode::Lexical);
    assert!(r.fallback_reason.unwrap().contains("no embedder"));
    assert_eq!(
        (r.embedder.as_deref(), r.vectors_complete),
        (None, false),
        "the response says no vectors ran"
    );
    s.stop();

    let s = Search::start(store.clone(), SearchConfig::new().embedder(Arc::new(HashEmbedder::new(64))))
        .await
        .unwrap();
    assert!(s.wait_vectors_ready(Duration::from_secs(20)).await.unwrap());
    let r = s.search(SearchRequest::new("vector indexes")).await.unwrap();
    assert_eq!(r.mode, Mode::Hybrid, "{r:?}");
    assert!(r.fallback_reason.is_none());
    assert!(r.embedder.as_deref().unwrap().ends_with("/64") && r.vectors_complete, "{r:?}");
    assert_eq!(ids(&r)[0], c[0]);
    let r = s.search(SearchRequest::new("indexing vectors").mode(Mode::Vector)).await.unwrap();
    assert_eq!(r.mode, Mode::Vector);
    assert!(ids(&r)[..3].contains(&c[0].as_str()), "{r:?}");
    // Filters apply to vector hits too.
    let r = s
        .search(SearchRequest::new("vectors").mode(Mode::Vector).filters(Filters {
            category: Some("ml".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&r), vec![c[4].as_str()]);
    // New entries get vectors in the background.
    let n = s
        .add_knowledge(Knowledge::new("db", "Quantization", "Quantized vectors save memory"))
        .await
        .unwrap();
    assert!(s.wait_vectors_ready(Duration::from_secs(20)).await.unwrap());
    let r = s.search(SearchRequest::new("quantized").mode(Mode::Vector)).await.unwrap();
    assert_eq!(ids(&r)[0], n.id);
    // Deleted entries never come back from vectors.
    s.delete_knowledge(&n.id).await.unwrap();
    let r = s.search(SearchRequest::new("quantized").mode(Mode::Vector)).await.unwrap();
    assert!(!ids(&r).contains(&n.id.as_str()));

    // Switch embedder: old vectors keep serving (hybrid, no fallback) until the new
    // space is built, then it switches.
    s.set_embedder(Some(Arc::new(HashEmbedder::new(128)))).await.unwrap();
    let r = s.search(SearchRequest::new("vector indexes")).await.unwrap();
    assert_eq!(r.mode, Mode::Hybrid);
    assert!(s.wait_vectors_ready(Duration::from_secs(20)).await.unwrap());
    let st = s.status().await.unwrap();
    assert!(st.active_embedder.unwrap().ends_with("/128"));
    let r = s.search(SearchRequest::new("vector indexes")).await.unwrap();
    assert_eq!(r.mode, Mode::Hybrid);
    assert_eq!(ids(&r)[0], c[0]);
    // Hybrid pagination via cursor.
    let p1 = s.search(SearchRequest::new("vectors").limit(2)).await.unwrap();
    let next = p1.next_cursor.clone().unwrap();
    let p2 = s.search(SearchRequest::new("vectors").limit(2).cursor(next)).await.unwrap();
    assert!(p2.hits.iter().all(|h| !ids(&p1).contains(&h.id.as_str())));
}

/// Documents a bug in the store schema (edgeswarm-store, not this crate): a plain UPDATE
/// of a live knowledge row fires `knowledge_fts_au_new` before `knowledge_fts_au_old`
/// (SQLite fires the newest trigger first) and corrupts the FTS index. This crate's writes
/// avoid it (DELETE + INSERT); replicated or raw-SQL UPDATEs hit it until the store's
/// migration 2 merged the two triggers. This guards that fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_update_of_a_live_row_keeps_fts_consistent() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let id = s
        .add_knowledge(Knowledge::new("c", "Old topic", "old words here"))
        .await
        .unwrap()
        .id;
    // Plain SQL in a writer op (as replication applies rows; users' raw SQL may not
    // write `knowledge`): the triggers alone keep FTS in step.
    let rid = id.clone();
    store
        .transact(move |ctx| {
            ctx.execute(
                "UPDATE knowledge SET content = 'new words here', topic = 'Fresh topic' WHERE id = ?1",
                vec![SqlValue::Text(rid)],
            )
        })
        .await
        .unwrap();
    let r = s.search(SearchRequest::new("new")).await.unwrap();
    assert_eq!(ids(&r), vec![id.as_str()]);
    assert!(
        s.search(SearchRequest::new("old")).await.unwrap().hits.is_empty(),
        "the old text left the index"
    );
    let check = store
        .read_sql("INSERT INTO knowledge_fts(knowledge_fts) VALUES ('integrity-check')", vec![])
        .await;
    assert!(check.is_err(), "a write through read_sql is refused");
    assert!(
        store
            .execute_sql(
                "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES ('integrity-check', 1)",
                vec![]
            )
            .await
            .is_err(),
        "FTS commands through raw SQL are refused"
    );
    store
        .transact(|ctx| {
            ctx.execute(
                "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES ('integrity-check', 1)",
                vec![],
            )
        })
        .await
        .expect("the FTS index is consistent with its content table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rank_window_bounds_common_words_and_says_so() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new().rank_window(4)).await.unwrap();
    for i in 0..10 {
        s.add_knowledge(Knowledge::new("c", format!("common {i}"), format!("common word entry number {i}")))
            .await
            .unwrap();
    }
    let r = s.search(SearchRequest::new("common").limit(2)).await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("most recent")), "{r:?}");
    // Cursor pages stay inside the same window: 4 results in total.
    let mut seen = r.hits.len();
    let mut cur = r.next_cursor;
    while let Some(c) = cur {
        let p = s.search(SearchRequest::new("common").limit(2).cursor(c)).await.unwrap();
        seen += p.hits.len();
        cur = p.next_cursor;
    }
    assert_eq!(seen, 4);
    // Filtered queries rank every match.
    let r = s
        .search(SearchRequest::new("common").limit(100).filters(Filters {
            category: Some("c".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(r.hits.len(), 10);
    // Window 0 = exhaustive.
    let s0 = Search::start(store.clone(), SearchConfig::new().rank_window(0)).await.unwrap();
    assert_eq!(s0.search(SearchRequest::new("common").limit(100)).await.unwrap().hits.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_language_questions_rank_by_coverage_and_page() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let c = corpus(&s).await;
    // A sentence: no entry has every word, the one covering most of them ranks first.
    let q = "How does the vector index get queried in libSQL?";
    let r = s.search(SearchRequest::new(q)).await.unwrap();
    assert_eq!(ids(&r)[0], c[0], "{r:?}");
    assert!(r.notes.iter().any(|n| n.contains("natural-language")), "{r:?}");
    // The same sentence with natural-language handling off: every word must match
    // (nothing does), relaxed to any word.
    let and = Search::start(store.clone(), SearchConfig::new().natural_language(false))
        .await
        .unwrap();
    let r = and.search(SearchRequest::new(q)).await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("no entry has every word")), "{r:?}");
    and.stop();
    // Paging a natural-language query by cursor gives the same order as one page.
    let q = "what are vectors and backups for?";
    let all = s.search(SearchRequest::new(q).limit(10)).await.unwrap();
    let all: Vec<String> = all.hits.iter().map(|h| h.id.clone()).collect();
    assert!(all.len() >= 3, "{all:?}");
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = SearchRequest::new(q).limit(1);
        if let Some(cur) = cursor.take() {
            req = req.cursor(cur);
        }
        let r = s.search(req).await.unwrap();
        paged.extend(r.hits.iter().map(|h| h.id.clone()));
        match r.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, all);
}

/// A vector search filtered to a small category returns that category's true nearest
/// entries even when hundreds of closer entries elsewhere fill the vector index's global
/// neighbours (filtering those afterwards used to return nothing here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_vector_search_is_exact_within_a_small_category() {
    let (_d, store) = open().await;
    let s = Search::start(store.clone(), SearchConfig::new().embedder(Arc::new(HashEmbedder::new(64))))
        .await
        .unwrap();
    for i in 0..600 {
        s.add_knowledge(Knowledge::new(
            "crowd",
            "vector index tuning",
            format!("vector index tuning notes, take {i}"),
        ))
        .await
        .unwrap();
    }
    let mine = [
        ("vector index tuning", "my vector index tuning notes"),
        ("gardening", "tomatoes need sun and water"),
        ("travel", "the train to Lyon leaves at nine"),
        ("cooking", "a pinch of salt in the pasta water"),
        ("music", "practice scales before the concert"),
    ];
    let mut mine_ids = Vec::new();
    for (topic, content) in mine {
        mine_ids.push(s.add_knowledge(Knowledge::new("mine", topic, content)).await.unwrap().id);
    }
    assert!(s.wait_vectors_ready(Duration::from_secs(60)).await.unwrap());
    let r = s
        .search(
            SearchRequest::new("vector index tuning notes")
                .mode(Mode::Vector)
                .limit(5)
                .filters(Filters {
                    category: Some("mine".into()),
                    ..Default::default()
                }),
        )
        .await
        .unwrap();
    assert_eq!(r.mode, Mode::Vector);
    let got = ids(&r);
    assert_eq!(got.len(), 5, "every entry of the category is found: {r:?}");
    assert_eq!(got[0], mine_ids[0], "the nearest one first: {r:?}");
    let mut sorted: Vec<&str> = got.clone();
    sorted.sort();
    let mut want: Vec<&str> = mine_ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(sorted, want);
    assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "ordered by similarity: {r:?}");
    // Hybrid with the same filter ranks the category's entries too.
    let h = s
        .search(SearchRequest::new("vector index tuning notes").limit(5).filters(Filters {
            category: Some("mine".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(h.mode, Mode::Hybrid);
    assert_eq!(ids(&h)[0], mine_ids[0], "{h:?}");
}
