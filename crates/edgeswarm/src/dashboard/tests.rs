//! The dashboard over real HTTP: snapshot JSON, SSE resume, access rules.

use super::*;
use crate::{Agent, AgentCtx, BoxError, Knowledge, RegionConfig, TaskReport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Worker;
impl Agent for Worker {
    type Task = u32;
    async fn on_task(&mut self, _ctx: &AgentCtx, n: u32) -> Result<TaskReport, BoxError> {
        if n == 13 {
            return Err("unlucky item 13".into());
        }
        Ok(TaskReport::new("work", 1))
    }
}

async fn swarm(dir: &std::path::Path) -> Swarm {
    let s = Swarm::builder()
        .path(dir.join("home.db"))
        .region(RegionConfig::local("eu", dir.join("eu.db"), 5))
        // An embedder, so the search panel has one to report (the default is none).
        .embedder_choice(crate::EmbedderChoice::Hash)
        .start()
        .await
        .unwrap();
    s.spawn_agent("w-1", "eu", Worker).await.unwrap();
    s.add_knowledge(Knowledge::new("edge", "caching", "prefer regional caching for hot reads"))
        .await
        .unwrap();
    s
}

fn fast(addr: &str) -> DashboardConfig {
    let mut c = DashboardConfig::new(addr.parse().unwrap());
    c.sample_interval = Duration::from_millis(50);
    c
}

/// One HTTP/1.0 GET (no chunking); returns status and body.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One SSE event: (event, id, data).
type Ev = (String, String, String);

struct SseClient {
    r: BufReader<TcpStream>,
}

impl SseClient {
    async fn connect(addr: SocketAddr, last_id: Option<&str>) -> SseClient {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET /events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert!(line.contains("200"), "{line}");
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        SseClient { r }
    }

    async fn next(&mut self) -> Ev {
        let (mut ev, mut id, mut data) = (String::new(), String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .expect("an event within 10 s")
                .unwrap();
            assert!(n > 0, "stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() || !ev.is_empty() {
                    return (ev, id, data);
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                ev = v.trim().into();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().into();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

#[tokio::test]
async fn snapshot_json_has_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(dir.path()).await;
    for n in 0..20u32 {
        s.send_wait("w-1", n).await.unwrap();
    }
    let d = s.serve_dashboard_with(fast("127.0.0.1:0")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, body) = get(d.local_addr(), "/api/snapshot", &[]).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let st = &v["state"];
    assert_eq!(st["v"], 1);
    assert_eq!(st["swarm"], "running");
    let a = &st["agents"]["w-1"];
    assert_eq!(a["region"], "eu");
    assert_eq!(a["status"], "running");
    assert_eq!(a["tasks_ok"], 19);
    assert_eq!(a["tasks_failed"], 1);
    assert!(a["last_error"].as_str().unwrap().contains("unlucky item 13"), "{a}");
    assert_eq!(st["agent_totals"]["total"], 1);
    let r = &st["regions"]["eu"];
    for k in ["status", "health", "changes_queued", "conflicts", "lag_ms", "partitioned"] {
        assert!(r.get(k).is_some(), "region field {k} missing: {r}");
    }
    assert!(r.get("parked_rows").is_none(), "no parked rows in this runtime: the page shows n/a");
    for k in ["queue_depth", "queue_capacity", "batch_last", "ops_total"] {
        assert!(st["writer"].get(k).is_some(), "writer field {k} missing");
    }
    assert!(st["writer"]["ops_total"].as_u64().unwrap() > 0);
    assert!(st["search"]["embedder"].as_str().unwrap().contains("hash"), "{}", st["search"]);
    assert!(st["seed"]["performance_tests"]["columns"].is_array());
    assert!(st["seed"]["edge_replicas"]["query"].as_str().unwrap().contains("edge_replicas"));
    assert!(!v["history"].as_array().unwrap().is_empty());
    assert!(v["event_id"].as_str().unwrap().contains('-'));
    // Never a null member (deltas are merge patches: null means "removed").
    fn no_null_members(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => m.values().all(|x| !x.is_null() && no_null_members(x)),
            _ => true,
        }
    }
    assert!(no_null_members(&st["agents"]) && no_null_members(&st["regions"]) && no_null_members(&st["writer"]));

    // A partition shows at once.
    s.partition("eu", true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = get(d.local_addr(), "/api/snapshot", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"]["regions"]["eu"]["status"], "partitioned");

    // The page and its assets are served from the binary, with a strict CSP.
    let (code, html) = get(d.local_addr(), "/", &[]).await;
    assert_eq!(code, 200);
    assert!(html.contains("/assets/app.js"));
    let (code, _) = get(d.local_addr(), "/assets/app.js", &[]).await;
    assert_eq!(code, 200);

    // The search box's endpoint.
    let (code, body) = get(d.local_addr(), "/api/search?q=regional%20caching", &[]).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["hits"][0]["topic"], "caching");
    let (code, _) = get(d.local_addr(), "/api/search?q=", &[]).await;
    assert_eq!(code, 400);
    d.stop().await;
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn sse_snapshot_then_deltas_and_resume_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(dir.path()).await;
    let d = s.serve_dashboard_with(fast("127.0.0.1:0")).await.unwrap();
    let mut c = SseClient::connect(d.local_addr(), None).await;
    let (ev, id0, data) = c.next().await;
    assert_eq!(ev, "snapshot");
    let snap: serde_json::Value = serde_json::from_str(&data).unwrap();
    let mut state = snap["state"].clone();
    assert!(state["agents"]["w-1"].is_object());
    // Deltas follow, with consecutive ids; applying them tracks the state.
    let (epoch, n0) = id0.split_once('-').unwrap();
    let n0: u64 = n0.parse().unwrap();
    s.send_wait("w-1", 1u32).await.unwrap();
    let mut last = n0;
    for _ in 0..6 {
        let (ev, id, data) = c.next().await;
        assert_eq!(ev, "delta");
        let n: u64 = id.split_once('-').unwrap().1.parse().unwrap();
        assert_eq!(n, last + 1, "ids are consecutive");
        last = n;
        let d: serde_json::Value = serde_json::from_str(&data).unwrap();
        snapshot::merge_apply(&mut state, &d["patch"]);
    }
    assert!(state["ts"].as_i64().unwrap() > snap["state"]["ts"].as_i64().unwrap());
    drop(c);
    // Reconnect after missing some frames: exactly the next frame comes first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = SseClient::connect(d.local_addr(), Some(&format!("{epoch}-{last}"))).await;
    let (ev, id, _) = c.next().await;
    assert_eq!(ev, "delta", "a resuming client gets the missed deltas, not a snapshot");
    assert_eq!(id, format!("{epoch}-{}", last + 1));
    // An id from another server run: a fresh snapshot.
    let mut c2 = SseClient::connect(d.local_addr(), Some("0-5")).await;
    assert_eq!(c2.next().await.0, "snapshot");
    assert_eq!(d.clients(), 2);
    drop(c2);
    // Stopping ends open streams at once (the server does not wait for pages to leave).
    let t = std::time::Instant::now();
    d.stop().await;
    assert!(t.elapsed() < Duration::from_secs(1), "stop took {:?}", t.elapsed());
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(2), c.r.read_to_string(&mut rest))
        .await
        .expect("the stream is closed")
        .unwrap();
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_origin_and_host_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(dir.path()).await;
    // A non-loopback address without a token: refused before binding.
    match s.serve_dashboard("0.0.0.0:0".parse().unwrap()).await {
        Err(DashboardError::Refused(m)) => assert!(m.contains("token"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let tok = "0123456789abcdef0123";
    let d = s.serve_dashboard_with(fast("127.0.0.1:0").token(Some(tok.into()))).await.unwrap();
    let a = d.local_addr();
    let (code, body) = get(a, "/api/snapshot", &[]).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("token"));
    assert_eq!(get(a, "/", &[]).await.0, 401, "the page needs the token too");
    assert_eq!(get(a, "/events", &[]).await.0, 401);
    assert_eq!(get(a, &format!("/api/snapshot?token={tok}"), &[]).await.0, 200);
    assert_eq!(get(a, "/api/snapshot", &[("Authorization", &format!("Bearer {tok}"))]).await.0, 200);
    assert_eq!(get(a, "/api/snapshot?token=wrong-token-wrong-token", &[]).await.0, 401);
    assert_eq!(get(a, "/assets/style.css", &[]).await.0, 200, "static assets hold no data");
    let q = format!("/api/snapshot?token={tok}");
    assert_eq!(get(a, &q, &[("Origin", "http://evil.example")]).await.0, 403);
    assert_eq!(get(a, &q, &[("Origin", &format!("http://{a}"))]).await.0, 200);
    assert_eq!(get(a, &q, &[("Origin", "http://localhost:3000")]).await.0, 200);
    d.stop().await;

    // Without a token: loopback Host names only (DNS rebinding), configured origins allowed.
    let d = s
        .serve_dashboard_with(fast("127.0.0.1:0").allow_origin("https://ops.example.com"))
        .await
        .unwrap();
    let a = d.local_addr();
    assert_eq!(get(a, "/api/snapshot", &[]).await.0, 200);
    assert_eq!(get(a, "/api/snapshot", &[("Origin", "https://ops.example.com")]).await.0, 200);
    assert_eq!(get(a, "/api/snapshot", &[("Origin", "https://other.example.com")]).await.0, 403);
    let mut st = TcpStream::connect(a).await.unwrap();
    st.write_all(b"GET /api/snapshot HTTP/1.0\r\nHost: rebind.evil.example\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    st.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.0 403") || buf.starts_with("HTTP/1.1 403"), "{buf}");
    d.stop().await;
    s.shutdown().await.unwrap();
}
