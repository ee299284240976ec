//! The search actor's mailbox is bounded by `ChannelConfig::search_mailbox`: `search`
//! waits for room, `try_search` is refused with `Overloaded`, and the depth is reported.

use edgeswarm_core::{Knowledge, StoreConfig};
use edgeswarm_search::{Search, SearchConfig, SearchError, SearchRequest};
use edgeswarm_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mailbox_waits_refuses_and_reports_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::at(dir.path().join("s.db"));
    cfg.channels.search_mailbox = 1;
    let store = Store::open(cfg).await.unwrap();
    let s = Search::start(store, SearchConfig::new()).await.unwrap();
    s.add_knowledge(Knowledge::new("t", "Rust actors", "Bounded mailboxes keep memory flat."))
        .await
        .unwrap();
    let m = s.mailbox();
    assert_eq!((m.name.as_str(), m.capacity), ("search_mailbox", 1));
    assert!(m.depth <= 1);

    // Many waiting callers through a one-slot mailbox: every one is served.
    let waits: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.search(SearchRequest::new("mailboxes")).await })
        })
        .collect();
    // Non-waiting callers at the same time: served or refused, nothing else.
    let tries: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.try_search(SearchRequest::new("mailboxes")).await })
        })
        .collect();
    for w in waits {
        assert_eq!(w.await.unwrap().unwrap().hits.len(), 1);
    }
    for t in tries {
        match t.await.unwrap() {
            Ok(r) => assert_eq!(r.hits.len(), 1),
            Err(SearchError::Overloaded { capacity }) => assert_eq!(capacity, 1),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // A permit comes back when the actor has handled its message (just after the reply).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.mailbox().depth != 0 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.mailbox().depth, 0, "every permit is back once the messages are handled");
}
