//! The embedder is chosen by name; the default is none (lexical search, no vectors), and
//! `semantic` without an installed model fails at start saying what to do.

use edgeswarm::{EmbedderChoice, Knowledge, Mode, SearchRequest, Swarm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_is_lexical_and_semantic_without_a_model_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // An empty model cache (CI installs the model in its own cache for other tests). The
    // only test in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var("EDGESWARM_MODELS", dir.path().join("no-models"));
    let err = Swarm::builder()
        .path(dir.path().join("s.db"))
        .embedder_choice(EmbedderChoice::Semantic)
        .start()
        .await
        .err()
        .expect("semantic without a model must not start")
        .to_string();
    assert!(err.contains("edgeswarm models install") && err.contains("\"none\""), "{err}");

    let swarm = Swarm::builder().path(dir.path().join("d.db")).start().await.unwrap();
    swarm
        .add_knowledge(Knowledge::new(
            "notes",
            "Support group",
            "Caroline went to the LGBTQ support group on 7 May",
        ))
        .await
        .unwrap();
    let r = swarm
        .search_with(SearchRequest::new("When did Caroline go to the support group?"))
        .await
        .unwrap();
    assert_eq!(r.mode, Mode::Lexical);
    assert!(
        r.fallback_reason.is_none(),
        "the default asks for lexical, nothing fell back: {r:?}"
    );
    assert_eq!((r.embedder.as_deref(), r.vectors_complete), (None, false));
    assert_eq!(r.hits.len(), 1, "a sentence finds the entry: {r:?}");
    swarm.shutdown().await.unwrap();
}
