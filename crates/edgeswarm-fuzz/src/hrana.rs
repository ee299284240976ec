//! Target `hrana`: replies to the Hrana link (`HranaLink`, the real client with reqwest)
//! served from a tiny HTTP server on loopback, so the whole reply path runs: status
//! handling, reading the body, decoding `PipelineRespBody`, and the link's own checks of
//! step results (pull pages, log rows, row lookups, COMMIT present). No code of the link
//! had to change.
//!
//! Each reply is built for the request it answers (an execute or a batch of N steps; a
//! pull page gets log rows, a lookup gets table rows) with random values of random Hrana
//! types, then often damaged: bits flipped, cut short, bytes inserted, a value swapped
//! for another type, nesting thousands deep, a huge string, a wrong status, a
//! Content-Length longer than the body. The link runs ping, query, push and pull.
//!
//! Invariants: no panic; every call returns within 20 s (the link's own timeout is 2 s)
//! with `Ok` or a `SyncError` other than `Internal`-like variants (every `SyncError` is
//! typed; `Closed` and `Lost` would mean the link gave up on itself).

use crate::gen::Gen;
use crate::{take_panics, Finding, Opts, Report};
use edgeswarm::{SqlValue, SyncError};
use edgeswarm_sync::link::PushBatch;
use edgeswarm_sync::row::Registry;
use edgeswarm_sync::{HranaLink, RegionLink, RowVersion, TableSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(20);

fn hval(g: &mut Gen) -> Value {
    if g.chance(0.004) {
        // Values the protocol does not allow.
        return g
            .pick(&[
                &json!({"type": "weird"}),
                &json!({"type": "integer", "value": 12}),
                &json!({"type": "integer", "value": "1e9"}),
                &json!({"type": "blob", "base64": "!!"}),
            ])
            .clone();
    }
    match g.below(7) {
        0 => json!({"type": "null"}),
        1 => json!({"type": "integer", "value": g.pick(&["0", "-1", "9223372036854775807", "-9223372036854775808", "42"])}),
        2 => json!({"type": "integer", "value": (g.below(100) as i64).to_string()}),
        3 => json!({"type": "float", "value": 1.5}),
        4 => json!({"type": "text", "value": g.pick(&["kv", "knowledge", "x", "", "default\u{1f}k", "🦀"])}),
        5 => json!({"type": "blob", "base64": g.pick(&["", "AAAA", "AA=="])}),
        _ => json!({"type": "text", "value": "x".repeat(g.below(5000))}),
    }
}

/// A log row as a pull page holds it: seq, tbl, row_id, hlc, origin, pusher.
fn log_row(g: &mut Gen) -> Value {
    if g.chance(0.2) {
        return Value::Array((0..g.below(8)).map(|_| hval(g)).collect());
    }
    let tbl = ["kv", "knowledge", "agent_metrics", "nope", ""][g.below(5)];
    json!([
        {"type": "integer", "value": g.below(50).to_string()},
        {"type": "text", "value": tbl},
        {"type": "text", "value": g.pick(&["default\u{1f}k", "k", "a\u{1f}b\u{1f}c", ""])},
        {"type": "integer", "value": g.pick(&["1", "0", "-5", "9223372036854775807"])},
        {"type": "text", "value": g.pick(&["other", "me", ""])},
        {"type": "text", "value": g.pick(&["other", "me"])},
    ])
}

fn stmt_result(g: &mut Gen, sql: &str) -> Value {
    let pull = sql.starts_with("SELECT seq, tbl");
    let end = sql.starts_with("SELECT COALESCE(MAX(seq)");
    let ncols = if pull { 6 } else { g.below(10) };
    let cols: Vec<Value> = (0..ncols).map(|i| json!({"name": format!("c{i}"), "decltype": null})).collect();
    let rows: Vec<Value> = (0..g.below(6))
        .map(|_| {
            if pull {
                log_row(g)
            } else if end {
                json!([{"type": "integer", "value": g.pick(&["0", "10", "60", "-1", "9223372036854775807"])}])
            } else {
                Value::Array((0..ncols.max(g.below(4))).map(|_| hval(g)).collect())
            }
        })
        .collect();
    json!({"cols": cols, "rows": rows, "affected_row_count": g.below(3), "last_insert_rowid": null, "rows_read": 0, "rows_written": 0, "query_duration_ms": 0.0})
}

/// A well-formed reply to `req` (a `PipelineReqBody`), with random contents.
fn reply_for(g: &mut Gen, req: &Value) -> Value {
    let r = req.pointer("/requests/0").cloned().unwrap_or(Value::Null);
    let response = match r.get("type").and_then(Value::as_str) {
        Some("batch") => {
            let steps = r.pointer("/batch/steps").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = steps.len();
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                let sql = s.pointer("/stmt/sql").and_then(Value::as_str).unwrap_or("");
                // The last step is the ROLLBACK, which runs only if COMMIT did not.
                let skip = (i + 1 == n && g.chance(0.9)) || g.chance(0.03);
                if skip {
                    results.push(Value::Null);
                    errors.push(Value::Null);
                } else if g.chance(0.03) {
                    results.push(Value::Null);
                    errors.push(json!({"message": "fuzz error", "code": "SQLITE_ERROR"}));
                } else {
                    results.push(stmt_result(g, sql));
                    errors.push(Value::Null);
                }
            }
            if g.chance(0.05) {
                results.truncate(g.below(n + 1));
            }
            json!({"type": "batch", "result": {"step_results": results, "step_errors": errors}})
        }
        _ => {
            let sql = r.pointer("/stmt/sql").and_then(Value::as_str).unwrap_or("");
            json!({"type": "execute", "result": stmt_result(g, sql)})
        }
    };
    let result = if g.chance(0.05) {
        json!({"type": "error", "error": {"message": "no such table: _region_log", "code": "SQLITE_ERROR"}})
    } else {
        json!({"type": "ok", "response": response})
    };
    json!({"baton": null, "base_url": null, "results": [result]})
}

/// Swaps one random value somewhere in `v` for a value of another type.
fn swap_type(g: &mut Gen, v: &mut Value, depth: u32) {
    let replace = depth > 6 || g.chance(0.25);
    match v {
        Value::Object(m) if !replace && !m.is_empty() => {
            let k = m.keys().nth(g.below(m.len())).cloned().unwrap_or_default();
            if let Some(x) = m.get_mut(&k) {
                swap_type(g, x, depth + 1);
            }
        }
        Value::Array(a) if !replace && !a.is_empty() => {
            let i = g.below(a.len());
            swap_type(g, &mut a[i], depth + 1);
        }
        _ => {
            *v = [
                json!(null),
                json!(-1),
                json!("str"),
                json!([]),
                json!({}),
                json!(true),
                json!(1e308),
                json!(u64::MAX),
            ][g.below(8)]
            .clone()
        }
    }
}

/// What the server sends: status, body, and a Content-Length lie (extra bytes claimed).
fn response(g: &mut Gen, req: &Value) -> (u16, Vec<u8>, usize) {
    let mut v = reply_for(g, req);
    // Most replies arrive whole, so calls get deep (pull pages, row lookups); a quarter
    // are damaged.
    if !g.chance(0.25) {
        return (200, v.to_string().into_bytes(), 0);
    }
    if g.chance(0.3) {
        swap_type(g, &mut v, 0);
    }
    let mut body = v.to_string().into_bytes();
    match g.below(12) {
        0 | 1 => {
            for _ in 0..1 + g.below(8) {
                if !body.is_empty() {
                    let i = g.below(body.len());
                    body[i] ^= 1 << g.below(8);
                }
            }
        }
        2 | 3 => body.truncate(g.below(body.len() + 1)),
        4 => {
            let i = g.below(body.len() + 1);
            let junk: Vec<u8> = (0..g.below(16)).map(|_| g.below(256) as u8).collect();
            body.splice(i..i, junk);
        }
        5 => body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        6 if g.chance(0.3) => {
            // A huge but well-formed reply (~8 MiB of text in one value).
            body = json!({"baton": null, "results": [{"type": "ok", "response": {"type": "execute", "result": {"cols": [{"name": "a"}], "rows": [[{"type": "text", "value": "x".repeat(8 << 20)}]], "affected_row_count": 0}}}]}).to_string().into_bytes();
        }
        7 => body.clear(),
        8 => body = b"<html>502 Bad Gateway</html>".to_vec(),
        _ => {}
    }
    let status = match g.below(14) {
        0 => 500,
        1 => 503,
        2 => 401,
        3 => 404,
        4 => 204,
        5 => 302,
        _ => 200,
    };
    let lie = if g.chance(0.1) { 1 + g.below(1000) } else { 0 };
    (status, body, lie)
}

async fn serve_one(mut sock: tokio::net::TcpStream, g: Arc<Mutex<Gen>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let req: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    let (status, body, lie) = {
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        if head.starts_with("get ") {
            let s = if g.chance(0.5) { 404 } else { 200 };
            (s, ["0.7.0", "", "<html>", "x"][g.below(4)].as_bytes().to_vec(), 0)
        } else {
            response(&mut g, &req)
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len() + lie
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

/// Specs of `kv` and `knowledge` as the home store has them (from a real store).
async fn registry(opts: &Opts) -> Result<Arc<Registry>, String> {
    let store = edgeswarm_store::Store::open(edgeswarm::StoreConfig::at(opts.dir.join("hrana-home.db")))
        .await
        .map_err(|e| e.to_string())?;
    let reg = Arc::new(Registry::default());
    for (t, append) in [("kv", false), ("knowledge", false), ("agent_metrics", true)] {
        let sql = format!("PRAGMA table_info({t})");
        let info = store.read(move |r| r.query(&sql, vec![])).await.map_err(|e| e.to_string())?;
        reg.insert(TableSpec::from_table_info(t, &info, append).ok_or("no table info")?);
    }
    let _ = store.shutdown().await;
    Ok(reg)
}

fn push_batch(g: &mut Gen, reg: &Registry, i: u64) -> Option<PushBatch> {
    let spec = reg.get("kv")?;
    let cols: Arc<[String]> = spec.columns.clone();
    let values: Vec<SqlValue> = cols
        .iter()
        .map(|c| match c.as_str() {
            "hlc" => SqlValue::Integer(1 + g.below(1000) as i64),
            "origin" => SqlValue::Text("me".into()),
            "version" | "updated_at" | "deleted" => SqlValue::Integer(0),
            _ => SqlValue::Text(format!("v{i}")),
        })
        .collect();
    let row = RowVersion::from_row("kv".into(), format!("default\u{1f}k{i}"), cols, values)?;
    let mut tables = HashMap::new();
    tables.insert(spec.name.clone(), spec);
    Some(PushBatch::new(format!("tx{i}"), "me".into(), vec![row], tables, 100))
}

/// Whether an error is one the link should never produce from a bad reply.
fn untyped(e: &SyncError) -> bool {
    matches!(e, SyncError::Closed | SyncError::Lost { .. })
}

pub async fn run(opts: Opts) -> Report {
    let mut report = Report::default();
    let _ = take_panics();
    let setup = async {
        let reg = registry(&opts).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        Ok::<_, String>((reg, listener, addr))
    };
    let (reg, listener, addr) = match setup.await {
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
    let server_gen = Arc::new(Mutex::new(Gen::new(opts.seed ^ 0x5eed)));
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            tokio::spawn(serve_one(sock, server_gen.clone()));
        }
    });
    let url = format!("http://{addr}");
    let mut g = Gen::new(opts.seed);
    let mut link: Option<HranaLink> = None;
    let (mut oks, mut errs) = (0u64, 0u64);
    let mut kinds = std::collections::BTreeMap::new();
    while Instant::now() < opts.deadline {
        report.iterations += 1;
        let i = report.iterations;
        if link.is_none() || g.chance(0.2) {
            link = match HranaLink::new("fuzz", &url, None, Duration::from_secs(2), 1) {
                Ok(l) => Some(l),
                Err(e) => {
                    report.findings.push(Finding {
                        class: "setup".into(),
                        detail: e.to_string(),
                        input: String::new(),
                    });
                    break;
                }
            };
        }
        let Some(l) = link.as_ref() else { break };
        let op = g.below(4);
        let name = ["ping", "query", "push", "pull"][op];
        let call = async {
            match op {
                0 => l.ping().await.map(|_| ()),
                1 => l.query("SELECT ?", vec![SqlValue::Integer(1)]).await.map(|_| ()),
                2 => match push_batch(&mut g, &reg, i) {
                    Some(b) => l.push(&b).await.map(|_| ()),
                    None => Ok(()),
                },
                _ => {
                    let after = g.below(100) as i64;
                    let limit = 1 + g.below(50);
                    l.pull(after, "me", limit, &reg).await.map(|p| {
                        let _ = p.entries.len();
                    })
                }
            }
        };
        let result = match tokio::time::timeout(BOUND, call).await {
            Ok(Ok(())) => {
                oks += 1;
                Ok(())
            }
            Ok(Err(e)) if untyped(&e) => Err(("untyped-error".to_string(), e.to_string())),
            Ok(Err(e)) => {
                errs += 1;
                let k: String = e.to_string().chars().take(160).collect();
                *kinds.entry(k).or_insert(0u64) += 1;
                Ok(())
            }
            Err(_) => Err(("hang".to_string(), format!("{name} did not return within {BOUND:?}"))),
        };
        let panics = take_panics();
        let result = if panics.is_empty() {
            result
        } else {
            Err(("panic".to_string(), panics.join(" | ")))
        };
        if let Err((class, detail)) = result {
            let input = format!("op {name}, iteration {i}, seed {} (replies are drawn from the seed)", opts.seed);
            eprintln!("edgeswarm-fuzz hrana: [{class}] {detail} ({input})");
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
    if std::env::var_os("EDGESWARM_FUZZ_VERBOSE").is_some() {
        for (k, n) in &kinds {
            eprintln!("{n:>6}  {k}");
        }
    }
    report.stats = format!("{oks} ok, {errs} typed errors");
    report
}
