//! HTTPS regions: tursodb (every binary `tursodb_binaries` finds: 0.6 and 0.7 in CI)
//! behind an in-process TLS proxy whose CA the test makes. Sync works through it with
//! the region's `ca_file` (and through a `libsql://` url); a wrong CA, an expired
//! certificate and a hostname mismatch each give an error that names the region, what
//! failed and the fix, in the error and in `sync_status`.

use edgeswarm_core::{Knowledge, WriteConsistency};
use edgeswarm_sync::{HranaLink, RegionConfig, RegionLink, SyncSystem, TlsMode};
use edgeswarm_testkit::sync::*;
use edgeswarm_testkit::tls_proxy::{TestCa, TlsProxy};
use edgeswarm_testkit::tursodb::tursodb_binaries;
use edgeswarm_testkit::tursodb::TursoServer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_over_https_with_a_private_ca() {
    for (version, bin) in tursodb_binaries() {
        tokio::time::timeout(Duration::from_secs(60), async {
            let dir = tempfile::tempdir().unwrap();
            // One server per region: tursodb reports its version only while its
            // database is empty (see HranaLink::discover_version).
            let srv = TursoServer::start(&bin, &dir.path().join("turso-a.db"), None).await.unwrap();
            let srv_b = TursoServer::start(&bin, &dir.path().join("turso-b.db"), None).await.unwrap();
            let ca = TestCa::new("edgeswarm test CA");
            let ca_file = ca.write_pem(dir.path(), "ca.pem");
            let proxy = TlsProxy::start(ca.server_cert(&["localhost", "127.0.0.1"], false), srv.port).await;
            let proxy_b = TlsProxy::start(ca.server_cert(&["localhost", "127.0.0.1"], false), srv_b.port).await;
            let regions = vec![
                RegionConfig::http("tls-a", format!("https://localhost:{}", proxy.port), None).with_ca_file(&ca_file),
                // Turso's url form, token in the url: mapped to https, never shown.
                RegionConfig::http(
                    "tls-b",
                    format!("libsql://127.0.0.1:{}/?authToken=SECRET-TOKEN", proxy_b.port),
                    None,
                )
                .with_ca_file(&ca_file),
            ];
            let store = open_store(&dir.path().join("home.db")).await;
            let sync = SyncSystem::start(store.clone(), regions, fast_cfg()).await.unwrap();
            for i in 0..200 {
                store
                    .publish(Knowledge::new("tls", format!("t{i}"), format!("over tls #{i}")))
                    .await
                    .unwrap();
            }
            let seq = sync.latest_seq().await.unwrap();
            sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{version}: {e}\n{:#?}", sync.sync_status()));
            let q = sync.read_sql_at("tls-a", "SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
            assert_eq!(q.rows[0][0].as_i64(), Some(200), "{version}");
            let st = sync.sync_status();
            let text = serde_json::to_string(&st).unwrap();
            assert!(!text.contains("SECRET-TOKEN"), "{version}: the token leaked into status: {text}");
            for r in &st.regions {
                assert_eq!(r.tls, TlsMode::CaFile, "{version}");
                assert!(r.url.starts_with("https://"), "{version}: {}", r.url);
                let v = r.server_version.clone().unwrap_or_default();
                assert!(v.starts_with("tursodb 0."), "{version}: server_version {v:?}");
                assert!(version.ends_with(v.trim_start_matches("tursodb ")), "{version} reported as {v}");
            }
            eprintln!("{version}: {}", serde_json::to_string(&st.regions[1]).unwrap());
            sync.shutdown().await;
            store.shutdown().await.unwrap();
            drop((proxy, proxy_b));
            drop((srv, srv_b));
        })
        .await
        .unwrap_or_else(|_| panic!("{version}: timed out"));
    }
}

/// One ping through `url` with `ca_file`; the error text.
async fn ping_error(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let link = HranaLink::with_ca("edge-x", url, None, ca_file, Duration::from_secs(3), 1).unwrap();
    link.ping().await.expect_err("the handshake should fail").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_name_the_region_the_failure_and_the_fix() {
    let (_, bin) = tursodb_binaries().into_iter().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = TursoServer::start(&bin, &dir.path().join("turso.db"), None).await.unwrap();
    let ca = TestCa::new("the server's CA");
    let other = TestCa::new("some other CA");
    let other_file = other.write_pem(dir.path(), "other.pem");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");

    let good = TlsProxy::start(ca.server_cert(&["localhost", "127.0.0.1"], false), srv.port).await;
    // Wrong CA in ca_file.
    let e = ping_error(&format!("https://localhost:{}", good.port), Some(&other_file)).await;
    assert!(e.contains("edge-x") && e.contains("not trusted") && e.contains("ca_file"), "{e}");
    // No ca_file: the system roots do not know a private CA.
    let e = ping_error(&format!("https://localhost:{}", good.port), None).await;
    assert!(
        e.contains("edge-x") && e.contains("not trusted") && e.contains("set `ca_file`"),
        "{e}"
    );
    // Right CA: works.
    let link = HranaLink::with_ca(
        "edge-x",
        &format!("https://localhost:{}", good.port),
        None,
        Some(&ca_file),
        Duration::from_secs(3),
        1,
    )
    .unwrap();
    link.ping().await.unwrap();

    // Expired certificate.
    let expired = TlsProxy::start(ca.server_cert(&["localhost", "127.0.0.1"], true), srv.port).await;
    let e = ping_error(&format!("https://localhost:{}", expired.port), Some(&ca_file)).await;
    assert!(e.contains("edge-x") && e.contains("expired") && e.contains("clock"), "{e}");

    // Certificate for another host name.
    let other_host = TlsProxy::start(ca.server_cert(&["db.example.com"], false), srv.port).await;
    let e = ping_error(&format!("https://localhost:{}", other_host.port), Some(&ca_file)).await;
    assert!(
        e.contains("edge-x") && e.contains("hostname mismatch") && e.contains("localhost"),
        "{e}"
    );

    // The same failure reaches sync_status as the region's last error.
    let store = open_store(&dir.path().join("home.db")).await;
    let r = RegionConfig::http("edge-y", format!("https://localhost:{}", expired.port), None).with_ca_file(&ca_file);
    let sync = SyncSystem::start(store.clone(), vec![r], fast_cfg()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        if let Some(e) = sync.sync_status().regions[0].last_error.clone() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no error in status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        last.contains("edge-y") && last.contains("expired") && last.contains("clock"),
        "{last}"
    );
    sync.shutdown().await;
    store.shutdown().await.unwrap();
}
