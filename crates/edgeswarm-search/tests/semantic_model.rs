//! The `semantic` embedder on the real model (all-MiniLM-L6-v2 from the model cache that
//! `edgeswarm models install` fills; scripts/test.sh installs it before the tests).
//!
//! Without the model the test says so and passes, unless `EDGESWARM_REQUIRE_MODEL=1`
//! (CI sets it), where a missing model is a failure.

use edgeswarm_core::Knowledge;
use edgeswarm_search::semantic::{is_installed, model_path, DEFAULT_MODEL};
use edgeswarm_search::{Embedder, Filters, Mode, Search, SearchConfig, SearchRequest, SemanticEmbedder};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn model() -> Option<SemanticEmbedder> {
    if !is_installed(DEFAULT_MODEL) {
        let required = std::env::var("EDGESWARM_REQUIRE_MODEL").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "EDGESWARM_REQUIRE_MODEL=1 but the model is not in {}; run `edgeswarm models install`",
            model_path(DEFAULT_MODEL).display()
        );
        eprintln!(
            "semantic model not installed in {}: skipped (run `edgeswarm models install`)",
            model_path(DEFAULT_MODEL).display()
        );
        return None;
    }
    Some(SemanticEmbedder::load_default().expect("the installed model loads"))
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn paraphrases_are_closer_than_unrelated_text() {
    let Some(m) = model() else { return };
    assert_eq!(m.dim(), 384);
    let t = m.tokenize("Hello, world!");
    assert_eq!(t.len(), 6, "[CLS] hello , world ! [SEP]: {t:?}");
    let v = m
        .embed(&[
            "How do I reset my password?",
            "I forgot my login credentials and need to change them.",
            "The recipe needs two cups of flour and an egg.",
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
        ])
        .unwrap();
    for x in &v {
        assert!((cos(x, x) - 1.0).abs() < 1e-4, "normalised");
    }
    // No shared content word, same meaning: closer than an unrelated sentence.
    assert!(
        cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2,
        "{} vs {}",
        cos(&v[0], &v[1]),
        cos(&v[0], &v[2])
    );
    assert!(cos(&v[3], &v[4]) > cos(&v[3], &v[5]));
    // The similarities sentence-transformers documents for this model (its quickstart:
    // 0.6660, 0.1046, 0.1411), so the forward pass and tokenizer match the reference.
    let w = m
        .embed(&["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
        .unwrap();
    for (a, b, want) in [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)] {
        let got = cos(&w[a], &w[b]);
        assert!((got - want).abs() < 2e-3, "cos({a},{b}) = {got}, reference {want}");
    }
    // Batching does not change a vector.
    let one = m.embed(&["A man is eating food."]).unwrap();
    assert!(cos(&one[0], &v[3]) > 0.9999);
}

#[tokio::test]
async fn hybrid_finds_a_paraphrase_and_vectors_complete() {
    let Some(m) = model() else { return };
    let (_dir, store) = edgeswarm_testkit::temp_store().await;
    let texts = [
        (
            "Password resets",
            "To change forgotten login credentials, open settings and choose account recovery.",
        ),
        (
            "Cake",
            "Mix two cups of flour with sugar, eggs and butter, then bake for forty minutes.",
        ),
        ("Weather", "Tomorrow will be sunny with light winds from the west."),
        ("Trains", "The night train to Vienna leaves from platform nine."),
    ];
    for (topic, content) in texts {
        edgeswarm_search::add_knowledge(&store, Knowledge::new("notes", topic, content))
            .await
            .unwrap();
    }
    let t = Instant::now();
    let s = Search::start(store.clone(), SearchConfig::new().embedder(Arc::new(m)))
        .await
        .unwrap();
    assert!(s.wait_vectors_ready(Duration::from_secs(120)).await.unwrap());
    eprintln!("backfill of {} entries: {:?}", texts.len(), t.elapsed());
    // No word in common with the target entry.
    let r = s
        .search(
            SearchRequest::new("how do I recover my account if I lost my password").filters(Filters {
                category: Some("notes".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(r.mode, Mode::Hybrid);
    assert!(r.vectors_complete, "{r:?}");
    assert!(r.embedder.as_deref().unwrap_or_default().starts_with("all-minilm-l6-v2/"), "{r:?}");
    assert_eq!(r.hits[0].topic, "Password resets", "{r:?}");
    let v = s.search(SearchRequest::new("pastry baking").mode(Mode::Vector)).await.unwrap();
    assert_eq!(v.hits[0].topic, "Cake", "{v:?}");
    s.stop();
}
