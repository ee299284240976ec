//! Target `mcp`: `tools/call` requests with arbitrary arguments sent to the real MCP
//! server (`EdgeswarmMcp` over a fresh swarm) in process, through rmcp's own transport
//! on an in-memory duplex pipe, so rmcp's argument decoding and our dispatch both run.
//! The arguments are shaped by each tool's `inputSchema` (read with `tools/list`): the
//! known fields with values of the right type (extremes, long and odd strings) or of a
//! wrong type, unknown fields, non-object arguments, unknown tool names.
//!
//! Invariants: no panic; every request is answered within 15 s; a JSON-RPC error has a
//! standard code, and the server's own errors carry a `kind` that is not `internal`; a
//! result marked `isError` carries a `kind` (the shape SEP-1303 asks for) that is not
//! `internal`; a success carries `structuredContent`; the server keeps answering
//! (a `kv_set` every 25 calls).

use crate::gen::{self, Gen};
use crate::{take_panics, Finding, Opts, Report};
use edgeswarm::{Durability, Limits, Swarm};
use edgeswarm_mcp::EdgeswarmMcp;
use rmcp::ServiceExt;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, ReadHalf, WriteHalf};

const BOUND: Duration = Duration::from_secs(15);

/// The client end of the pipe.
struct Client {
    /// Responses, one JSON message per line.
    lines: Lines<BufReader<ReadHalf<tokio::io::DuplexStream>>>,
    /// Requests go here.
    tx: WriteHalf<tokio::io::DuplexStream>,
}

impl Client {
    async fn send(&mut self, msg: &Value) -> Result<(), String> {
        let mut line = msg.to_string();
        line.push('\n');
        self.tx
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("the server closed the pipe: {e}"))
    }
    /// Sends a request and waits for the response with the same id.
    async fn call(&mut self, id: u64, method: &str, params: Value) -> Result<Value, String> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let wait = async {
            loop {
                match self.lines.next_line().await {
                    Ok(Some(l)) => {
                        let v: Value = serde_json::from_str(&l).map_err(|e| format!("the server sent invalid JSON ({e}): {l:.200}"))?;
                        if v.get("id") == Some(&json!(id)) {
                            return Ok(v);
                        }
                    }
                    Ok(None) => return Err("the server closed the pipe".to_string()),
                    Err(e) => return Err(format!("reading the pipe: {e}")),
                }
            }
        };
        tokio::time::timeout(BOUND, wait)
            .await
            .map_err(|_| format!("no answer to {method} within {BOUND:?}"))?
    }
}

/// A string value for field `field`.
fn string_for(g: &mut Gen, field: &str) -> String {
    match g.below(12) {
        0 => String::new(),
        1 => " ".into(),
        2 if g.chance(0.05) => "x".repeat(4 << 20),
        2 => "x".repeat(g.below(300_000)),
        3 => g
            .pick(&["home", "nope", "../../etc/passwd", "default", "us-west", "\u{0}", "🦀", "a\u{0301}"])
            .into(),
        4 => gen::search_text(g, &["agent", "memory", "swarm", "\"", "*", "AND"]),
        5 if field == "query" => g
            .pick(&[
                "SELECT 1",
                "SELECT * FROM notes",
                "INSERT INTO notes (body) VALUES (?)",
                "SELECT ?, ?",
                "SELEC",
                "SELECT 1; SELECT 2",
                "ATTACH ':memory:' AS x",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
            ])
            .into(),
        6 => "01J0000000000000000000000Z".into(),
        7 => g.int_lit(),
        _ => {
            let n = g.below(40);
            (0..n)
                .map(|_| char::from_u32(g.below(0x11000) as u32).unwrap_or('\u{fffd}'))
                .collect()
        }
    }
}

/// A string for keys and nested values (short: long ones are the known fields' job).
fn any_string(g: &mut Gen) -> String {
    let mut s = string_for(g, "");
    if s.len() > 1000 {
        s.truncate(s.char_indices().nth(1000).map(|(i, _)| i).unwrap_or(s.len()));
    }
    s
}

/// A value for a property whose schema is `schema`; sometimes of the wrong type.
fn value_for(g: &mut Gen, field: &str, schema: &Value) -> Value {
    if g.chance(0.15) {
        return gen::json(g, 3, &any_string);
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string")
            .to_string(),
        _ => {
            if let Some(Value::Array(e)) = schema.get("enum") {
                if !e.is_empty() && g.chance(0.8) {
                    return e[g.below(e.len())].clone();
                }
            }
            "any".into()
        }
    };
    match ty.as_str() {
        "string" => Value::String(string_for(g, field)),
        "integer" => match g.below(6) {
            0 => json!(-1),
            1 => json!(u64::MAX),
            2 => json!(i64::MIN),
            3 => json!(0),
            4 => json!(g.u64() as i64),
            _ => json!(g.below(200)),
        },
        "number" => match g.below(5) {
            0 => json!(-1.5),
            1 => json!(1e308),
            2 => json!(-1e308),
            3 => json!(0),
            _ => json!(g.below(10_000) as f64 / 7.0),
        },
        "boolean" => json!(g.chance(0.5)),
        "array" => Value::Array((0..g.below(70)).map(|_| gen::json(g, 2, &any_string)).collect()),
        "object" => gen::json(g, 4, &any_string),
        _ => gen::json(g, 3, &any_string),
    }
}

/// Arguments for a tool with input schema `schema`.
fn arguments(g: &mut Gen, schema: &Value) -> Option<Value> {
    match g.below(20) {
        0 => return None,
        1 => return Some(gen::json(g, 3, &any_string)),
        _ => {}
    }
    let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mut m = Map::new();
    for (k, s) in &props {
        let p = if required.contains(k) { 0.92 } else { 0.6 };
        if g.chance(p) {
            m.insert(k.clone(), value_for(g, k, s));
        }
    }
    if g.chance(0.1) {
        m.insert(any_string(g), gen::json(g, 2, &any_string));
    }
    Some(Value::Object(m))
}

/// Checks one `tools/call` response.
fn check(resp: &Value, args_object: bool) -> Result<(), (String, String)> {
    let short = |v: &Value| v.to_string().chars().take(300).collect::<String>();
    if let Some(err) = resp.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        if ![-32700, -32600, -32601, -32602, -32603].contains(&code) {
            return Err(("nonstandard-error-code".into(), short(resp)));
        }
        let kind = err.pointer("/data/kind").and_then(Value::as_str);
        match kind {
            Some("internal") => return Err(("internal-error".into(), short(resp))),
            None if code == -32603 || (code == -32602 && args_object) => return Err(("untyped-error".into(), short(resp))),
            _ => {}
        }
        return Ok(());
    }
    let Some(result) = resp.get("result") else {
        return Err(("no-result-or-error".into(), short(resp)));
    };
    if result.get("isError") == Some(&Value::Bool(true)) {
        match result.pointer("/structuredContent/kind").and_then(Value::as_str) {
            Some("internal") => return Err(("internal-error-result".into(), short(resp))),
            Some(_) => {}
            None => return Err(("untyped-error-result".into(), short(resp))),
        }
    } else if result.get("structuredContent").is_none() {
        return Err(("result-without-structured-content".into(), short(resp)));
    }
    Ok(())
}

async fn start(opts: &Opts) -> Result<(Swarm, Client, Vec<(String, Value)>), String> {
    let path = opts.dir.join("mcp.db");
    let limits = Limits {
        query_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let swarm = Swarm::builder()
        .path(&path)
        .durability(Durability::Normal)
        .limits(limits)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    swarm
        .execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", vec![])
        .await
        .map_err(|e| e.to_string())?;
    let server = EdgeswarmMcp::new(swarm.clone(), path);
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (sr, sw) = tokio::io::split(server_io);
    tokio::spawn(async move {
        match server.serve((sr, sw)).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => eprintln!("edgeswarm-fuzz mcp: the server did not start: {e}"),
        }
    });
    let (cr, cw) = tokio::io::split(client_io);
    let mut c = Client {
        lines: BufReader::new(cr).lines(),
        tx: cw,
    };
    c.call(
        0,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "edgeswarm-fuzz", "version": "0"}}),
    )
    .await?;
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
    let list = c.call(1, "tools/list", json!({})).await?;
    let tools = list
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .ok_or("tools/list returned no tools")?
        .iter()
        .filter_map(|t| Some((t.get("name")?.as_str()?.to_string(), t.get("inputSchema")?.clone())))
        .collect();
    Ok((swarm, c, tools))
}

pub async fn run(opts: Opts) -> Report {
    let mut report = Report::default();
    let _ = take_panics();
    let (swarm, mut c, tools) = match start(&opts).await {
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
    let mut g = Gen::new(opts.seed);
    let mut id = 10u64;
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut kinds = std::collections::BTreeMap::new();
    while Instant::now() < opts.deadline {
        report.iterations += 1;
        id += 1;
        let (name, args) = if g.chance(0.03) {
            (
                g.pick(&["nope", "", "execute_query ", "EXECUTE_QUERY", "tools/list"]).to_string(),
                Some(json!({})),
            )
        } else {
            let (n, s) = &tools[g.below(tools.len())];
            (n.clone(), arguments(&mut g, s))
        };
        let args_object = args.as_ref().is_none_or(Value::is_object);
        let mut params = json!({ "name": name });
        if let Some(a) = &args {
            params["arguments"] = a.clone();
        }
        let input = params.to_string();
        crate::set_current(&input);
        let mut result = match c.call(id, "tools/call", params).await {
            Ok(resp) => {
                if resp.get("error").is_some() || resp.pointer("/result/isError") == Some(&Value::Bool(true)) {
                    errors += 1;
                    let k = resp
                        .pointer("/error/data/kind")
                        .or_else(|| resp.pointer("/result/structuredContent/kind"))
                        .and_then(Value::as_str)
                        .unwrap_or("(none)")
                        .to_string();
                    *kinds.entry(k).or_insert(0u64) += 1;
                } else {
                    ok += 1;
                }
                check(&resp, args_object)
            }
            Err(e) => Err(("no-answer".to_string(), e)),
        };
        if result.is_ok() && report.iterations % 25 == 0 {
            id += 1;
            let probe = json!({"name": "kv_set", "arguments": {"key": "alive", "value": report.iterations}});
            result = match c.call(id, "tools/call", probe).await {
                Ok(r) if r.get("result").is_some_and(|x| x.get("isError") != Some(&Value::Bool(true))) => Ok(()),
                Ok(r) => Err(("server-stopped-working".to_string(), r.to_string().chars().take(300).collect())),
                Err(e) => Err(("server-stopped-working".to_string(), e)),
            };
        }
        let panics = take_panics();
        if !panics.is_empty() {
            result = Err(("panic".into(), panics.join(" | ")));
        }
        if let Err((class, detail)) = result {
            let shown: String = input.chars().take(2000).collect();
            eprintln!("edgeswarm-fuzz mcp: [{class}] {detail}\n  input: {shown}");
            if !report.findings.iter().any(|f| f.class == class) {
                report.findings.push(Finding {
                    class: class.clone(),
                    detail,
                    input,
                });
            }
            if !opts.keep_going || matches!(class.as_str(), "no-answer" | "server-stopped-working") {
                break;
            }
        }
    }
    report.stats = format!("{ok} results, {errors} errors {kinds:?}, {} tools", tools.len());
    let _ = tokio::time::timeout(Duration::from_secs(10), swarm.shutdown()).await;
    report
}
