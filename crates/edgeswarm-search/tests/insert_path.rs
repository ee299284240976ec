//! One knowledge insert path: entries published on the store directly (as CLI import
//! does) and entries added through search are deduplicated by the same code.

use edgeswarm_core::{Knowledge, StoreConfig};
use edgeswarm_search::{knowledge, Search, SearchConfig};
use edgeswarm_store::{Inserted, Store, StoreError};
use serde_json::json;

async fn count(store: &Store) -> i64 {
    store.read_sql("SELECT count(*) FROM knowledge", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_publish_and_add_knowledge_share_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::at(dir.path().join("s.db"))).await.unwrap();
    let e = store.publish(Knowledge::new("c", "t", "before install")).await.unwrap_err();
    assert!(matches!(e, StoreError::NoKnowledgeWriter), "{e:?}");
    knowledge::install(&store);

    let mut first = Knowledge::new("c", "Topic", "Same   Content here");
    first.tags = vec!["a".into()];
    let first_id = first.id.clone();
    assert_eq!(store.publish(first.clone()).await.unwrap(), Inserted { duplicate: false });
    // A retry of the same record changes nothing.
    assert_eq!(store.publish(first).await.unwrap(), Inserted { duplicate: true });
    // The same normalised content in the same category merges, batched with other writes.
    let mut again = Knowledge::new("c", "Other topic", "same content HERE");
    again.tags = vec!["b".into()];
    let ack = store.enqueue_record(again).await.unwrap();
    let other_category = store
        .enqueue_record(Knowledge::new("d", "Topic", "same content here"))
        .await
        .unwrap();
    assert_eq!(ack.wait().await.unwrap(), Inserted { duplicate: true });
    assert_eq!(other_category.wait().await.unwrap(), Inserted { duplicate: false });
    assert_eq!(count(&store).await, 2);
    let tags = store
        .read_sql("SELECT tags FROM knowledge WHERE id = ?1", vec![first_id.clone().into()])
        .await
        .unwrap();
    assert_eq!(
        tags.rows[0][0].as_str(),
        Some("[\"a\",\"b\"]"),
        "tags are merged into the first entry"
    );

    // add_knowledge takes the same path and names the entry it merged into.
    let search = Search::start(store.clone(), SearchConfig::new()).await.unwrap();
    let mut k = Knowledge::new("c", "x", "same content here");
    k.metadata = Some(json!({"k": 1}));
    let out = search.add_knowledge(k).await.unwrap();
    assert!(out.duplicate);
    assert_eq!(out.id, first_id);
    assert_eq!(count(&store).await, 2);
    store.shutdown().await.unwrap();
}
