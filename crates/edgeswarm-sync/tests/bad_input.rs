//! Bad input: unknown region, duplicate names, unreachable URL, wrong token (401), a
//! region file that is not a database, a malformed server reply. Each gives a clear
//! typed error; the other regions keep syncing and nothing is lost.
use edgeswarm_core::{Knowledge, ReadConsistency, WriteConsistency};
use edgeswarm_sync::{HranaLink, RegionConfig, RegionLink, SyncError, SyncSystem};
use edgeswarm_testkit::sync::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback HTTP server that answers every request with `status` and `body`.
async fn fake_server(status: &'static str, body: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_report_typed_errors() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let t = Duration::from_secs(2);
        let l = HranaLink::new("dead", &closed_port_url(), None, t, 2).unwrap();
        assert!(matches!(l.ping().await, Err(SyncError::Unreachable { .. })));

        std::env::set_var("EDGESWARM_TEST_BAD_TOKEN", "wrong");
        let url = fake_server("401 Unauthorized", "{\"error\":\"unauthorized\"}").await;
        let l = HranaLink::new("auth", &url, Some("EDGESWARM_TEST_BAD_TOKEN"), t, 3).unwrap();
        match l.ping().await {
            Err(e @ SyncError::Unauthorized { status: 401, .. }) => {
                assert!(e.to_string().contains("EDGESWARM_TEST_BAD_TOKEN"), "{e}")
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }

        let url = fake_server("200 OK", "this is not json").await;
        let l = HranaLink::new("garbled", &url, None, t, 1).unwrap();
        assert!(matches!(l.ping().await, Err(SyncError::MalformedReply { .. })));
        let url = fake_server("200 OK", "{\"baton\":null,\"results\":[]}").await;
        let l = HranaLink::new("empty", &url, None, t, 1).unwrap();
        assert!(matches!(l.ping().await, Err(SyncError::MalformedReply { .. })));

        let url = fake_server("503 Service Unavailable", "busy").await;
        let l = HranaLink::new("busy", &url, None, t, 2).unwrap();
        assert!(matches!(l.ping().await, Err(SyncError::Http { status: 503, .. })));

        // Missing token variable: a config error naming it.
        assert!(matches!(
            HranaLink::new("x", &url, Some("EDGESWARM_TEST_NO_SUCH_VAR"), t, 1),
            Err(SyncError::Config(m)) if m.contains("EDGESWARM_TEST_NO_SUCH_VAR")
        ));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_regions_do_not_stop_the_good_ones() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("home.db")).await;

        // Configuration errors refuse to start.
        let good = RegionConfig::local("good-1", dir.path().join("good1.db"), 2);
        let e = SyncSystem::start(store.clone(), vec![good.clone(), good.clone()], fast_cfg())
            .await
            .unwrap_err();
        assert!(matches!(e, SyncError::Config(ref m) if m.contains("appears twice")), "{e}");
        let e = SyncSystem::start(store.clone(), vec![RegionConfig::http("x", "ftp://nope", None)], fast_cfg())
            .await
            .unwrap_err();
        assert!(matches!(e, SyncError::Config(_)), "{e}");

        // A region file that is not a database, an unreachable server, a 401 server and
        // a garbling server, next to two good regions.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
        std::env::set_var("EDGESWARM_TEST_TOKEN2", "wrong");
        let regions = vec![
            good.clone(),
            RegionConfig::local("good-2", dir.path().join("good2.db"), 4),
            RegionConfig::local("junk", &junk, 1),
            RegionConfig::http("dead", closed_port_url(), None),
            RegionConfig::http(
                "auth",
                fake_server("401 Unauthorized", "no").await,
                Some("EDGESWARM_TEST_TOKEN2".into()),
            ),
            RegionConfig::http("garbled", fake_server("200 OK", "<html>").await, None),
        ];
        let sync = SyncSystem::start(store.clone(), regions, fast_cfg()).await.unwrap();

        // Unknown region names are typed errors.
        assert!(matches!(sync.partition("nope", true), Err(SyncError::UnknownRegion { .. })));
        assert!(matches!(
            sync.read_sql_at("nope", "SELECT 1", vec![]).await,
            Err(SyncError::UnknownRegion { .. })
        ));
        assert!(matches!(
            sync.read_target(&ReadConsistency::Region("nope".into())),
            Err(SyncError::UnknownRegion { .. })
        ));
        // Writes through a region are refused.
        assert!(matches!(
            sync.read_sql_at("good-1", "DELETE FROM knowledge", vec![]).await,
            Err(SyncError::Refused(_))
        ));

        for i in 0..50 {
            store
                .publish(Knowledge::new("c", format!("t{i}"), format!("kept {i}")))
                .await
                .unwrap();
        }
        let seq = sync.latest_seq().await.unwrap();
        // Good regions get everything; the wait names the bad ones as missing.
        match sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(3)).await {
            Err(SyncError::ConsistencyTimeout { reached, missing, .. }) => {
                assert_eq!(reached, vec!["good-1".to_string(), "good-2".to_string()]);
                assert_eq!(missing.len(), 4);
            }
            other => panic!("expected timeout, got {other:?}"),
        }
        for r in ["good-1", "good-2"] {
            let q = sync.read_sql_at(r, "SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
            assert_eq!(q.rows[0][0].as_i64(), Some(50), "{r}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = sync.sync_status();
        let err_of = |n: &str| {
            st.regions
                .iter()
                .find(|r| r.region == n)
                .unwrap()
                .last_error
                .clone()
                .unwrap_or_default()
        };
        assert!(err_of("junk").contains("not a database"), "{}", err_of("junk"));
        assert!(err_of("dead").contains("cannot reach"), "{}", err_of("dead"));
        assert!(err_of("auth").contains("refused the token"), "{}", err_of("auth"));
        assert!(err_of("garbled").contains("malformed reply"), "{}", err_of("garbled"));
        for r in &st.regions {
            if r.region.starts_with("good") {
                assert_eq!(r.lag_rows, 0, "{r:?}");
            } else {
                assert!(r.lag_rows > 0 && r.errors > 0, "{r:?}");
            }
        }
        // Nothing lost at home.
        let q = store.read_sql("SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
        assert_eq!(q.rows[0][0].as_i64(), Some(50));
        sync.shutdown().await;
        store.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
