//! Bad input never panics and never surfaces an FTS syntax error: it is a clear typed
//! error or a correct (possibly empty) result.

use edgeswarm_core::Knowledge;
use edgeswarm_search::{Search, SearchConfig, SearchError, SearchRequest};
use serde_json::json;

async fn setup() -> (tempfile::TempDir, Search) {
    let (dir, store) = edgeswarm_testkit::temp_store().await;
    let s = Search::start(store, SearchConfig::new()).await.unwrap();
    for (t, c) in [
        ("NEAR operators", "The NEAR keyword and AND OR NOT are just words here."),
        ("Quotes", "She said \"hello\" and left; c++ and c# are languages."),
        ("Emoji", "Deploy 🚀 rockets and café crème in 日本語 text."),
    ] {
        s.add_knowledge(Knowledge::new("t", t, c)).await.unwrap();
    }
    (dir, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_punctuation() {
    let (_d, s) = setup().await;
    for q in ["", "   ", "\n\t"] {
        assert!(matches!(s.search(SearchRequest::new(q)).await, Err(SearchError::EmptyQuery)));
    }
    for q in ["!!!", "\"\"", "***", "-", "()", "😀", "^", ":", "\"", "* * *"] {
        let r = s.search(SearchRequest::new(q)).await.unwrap();
        assert!(r.hits.is_empty(), "{q}: {r:?}");
        assert!(!r.notes.is_empty(), "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fts_operators_are_text() {
    let (_d, s) = setup().await;
    let nasty = [
        "NEAR",
        "NEAR(a b)",
        "AND",
        "OR NOT",
        "a AND",
        "-deploy",
        "topic:quotes",
        "\"unbalanced",
        "\"hello\" \"",
        "c++",
        "c#",
        "{topic content}: x",
        "deploy*",
        "*deploy",
        "'; DROP TABLE knowledge; --",
        "🚀",
        "café",
        "日本語",
        "\u{0}",
        "a\u{0}b",
        "NOT NOT NOT",
        "^deploy",
        "x:y:z",
        "((((",
        "\\",
    ];
    for q in nasty {
        let r = s.search(SearchRequest::new(q)).await;
        assert!(r.is_ok(), "{q:?}: {r:?}");
    }
    let r = s.search(SearchRequest::new("NEAR")).await.unwrap();
    assert_eq!(r.hits.len(), 1, "{r:?}");
    let r = s.search(SearchRequest::new("AND OR NOT")).await.unwrap();
    assert_eq!(r.hits.len(), 1);
    let r = s.search(SearchRequest::new("café")).await.unwrap();
    assert_eq!(r.hits.len(), 1);
    let r = s.search(SearchRequest::new("-deploy")).await.unwrap();
    assert_eq!(r.hits.len(), 1);
    let big = "lorem ipsum \"dolor\" NEAR(x) * - ".repeat(400); // ~12 KB
    assert!(big.len() > 10_000);
    let r = s.search(SearchRequest::new(big)).await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("terms")), "{:?}", r.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_cursors_and_unknown_fields() {
    let (_d, s) = setup().await;
    let r = s.search(SearchRequest::new("deploy").limit(1_000_000)).await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("capped")));
    assert!(matches!(
        s.search(SearchRequest::new("deploy").limit(0)).await,
        Err(SearchError::InvalidArgument { field: "limit", .. })
    ));
    assert!(matches!(
        s.search(SearchRequest::new("deploy").limit(-5)).await,
        Err(SearchError::InvalidArgument { field: "limit", .. })
    ));
    assert!(matches!(
        s.search(SearchRequest::new("deploy").offset(-1)).await,
        Err(SearchError::InvalidArgument { field: "offset", .. })
    ));
    assert!(matches!(
        s.search(SearchRequest::new("deploy").offset(i64::MAX)).await,
        Err(SearchError::InvalidArgument { field: "offset", .. })
    ));
    let r = s.search(SearchRequest::new("deploy").offset(50)).await.unwrap();
    assert!(r.hits.is_empty());
    assert!(matches!(
        s.search(SearchRequest::new("deploy").cursor("garbage")).await,
        Err(SearchError::BadCursor(_))
    ));
    assert!(matches!(
        s.search(SearchRequest::new("deploy").cursor("o5")).await,
        Err(SearchError::BadCursor(_))
    ));
    let e = s
        .search_json(&json!({"query": "deploy", "filters": {"colour": "red"}}))
        .await
        .unwrap_err();
    assert!(matches!(&e, SearchError::UnknownField { field, .. } if field == "colour"));
    assert!(e.to_string().contains("category"), "{e}");
    let e = s.search_json(&json!({"query": "deploy", "limit": "ten"})).await.unwrap_err();
    assert!(matches!(e, SearchError::InvalidRequest(_)), "{e}");
    let e = s
        .search_json(&json!({"query": "deploy", "filters": {"metadata": {"a b": 1}}}))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::InvalidArgument { field: "metadata", .. }), "{e}");
    let e = s
        .search_json(&json!({"query": "deploy", "filters": {"created_after": 10, "created_before": 5}}))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::InvalidArgument { .. }), "{e}");
    assert!(s.get_knowledge("nope").await.unwrap().is_none());
    // Empty string and oversize adds are typed errors.
    assert!(s.add_knowledge(Knowledge::new("t", "x", "")).await.is_err());
}
