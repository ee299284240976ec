//! `edgeswarm bench mcp`: tool calls per second over stdio with one client. Spawns the
//! server binary (`<exe> mcp --db <tmp>`) as a child and speaks newline-delimited
//! JSON-RPC to it directly, so the numbers include the full path an MCP host sees:
//! serialisation, the stdio pipe, rmcp's dispatch, argument checks and the commit.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bench settings.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Timed calls per tool. Default 500.
    pub calls: usize,
    /// Untimed calls per tool first. Default 20.
    pub warmup: usize,
    /// The `edgeswarm` binary to spawn; default `$EDGESWARM_BIN`, else this executable.
    pub exe: Option<PathBuf>,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            calls: 500,
            warmup: 20,
            exe: None,
        }
    }
}

struct Rpc {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Rpc {
    async fn send(&mut self, msg: &Value) -> Result<(), BoxError> {
        let mut line = msg.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn call(&mut self, method: &str, params: Value) -> Result<Value, BoxError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .map_err(|_| format!("no reply to {method} within 30 s"))??
                .ok_or("the server closed its stdout")?;
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("server sent a line that is not JSON ({e}): {line}"))?;
            if v.get("id") != Some(&json!(id)) {
                continue; // a notification or a request from the server
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{method} failed: {e}").into());
            }
            return Ok(v["result"].clone());
        }
    }

    async fn tool(&mut self, name: &str, args: Value) -> Result<Value, BoxError> {
        let r = self.call("tools/call", json!({"name": name, "arguments": args})).await?;
        if r.get("isError") == Some(&json!(true)) {
            return Err(format!("{name} returned an error: {r}").into());
        }
        Ok(r)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() as f64) * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn summary(mut lat_ms: Vec<f64>, wall: Duration) -> Value {
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    let n = lat_ms.len();
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "calls": n,
        "calls_per_sec": r3(n as f64 / wall.as_secs_f64().max(1e-9)),
        "p50_ms": r3(pct(&lat_ms, 0.50)),
        "p99_ms": r3(pct(&lat_ms, 0.99)),
        "max_ms": r3(lat_ms.last().copied().unwrap_or(0.0)),
        "mean_ms": r3(if n == 0 { 0.0 } else { lat_ms.iter().sum::<f64>() / n as f64 }),
    })
}

const WORDS: &[&str] = &[
    "edge", "latency", "replica", "region", "sync", "conflict", "cache", "agent", "swarm", "vector", "index", "query",
];

fn knowledge_args(i: usize) -> Value {
    let w = |k: usize| WORDS[(i * 7 + k * 3) % WORDS.len()];
    json!({
        "category": format!("bench-{}", i % 8),
        "topic": format!("{}-{}", w(0), w(1)),
        "content": format!("Entry {i}: how {} affects {} and {} across regions; keep {} low.", w(2), w(3), w(4), w(5)),
        "tags": [w(6), w(7)],
        "metadata": {"i": i},
    })
}

/// Runs the bench and returns one JSON object (what `edgeswarm bench mcp --json` prints).
pub async fn bench(opts: BenchOpts) -> Result<Value, BoxError> {
    let exe = match opts.exe.clone().or_else(|| std::env::var_os("EDGESWARM_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("edgeswarm-mcp-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let result = run(&exe, &db, &opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(exe: &std::path::Path, db: &std::path::Path, opts: &BenchOpts) -> Result<Value, BoxError> {
    let mut child = tokio::process::Command::new(exe)
        .arg("mcp")
        .arg("--db")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the server `{} mcp`: {e}", exe.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut rpc = Rpc {
        stdin,
        lines: BufReader::new(stdout).lines(),
        next_id: 1,
    };

    let t = Instant::now();
    let init = rpc
        .call("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "edgeswarm-bench", "version": env!("CARGO_PKG_VERSION")}}))
        .await?;
    rpc.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
    let init_ms = t.elapsed().as_secs_f64() * 1000.0;

    let calls = opts.calls.max(1);
    for i in 0..opts.warmup {
        rpc.tool("add_knowledge", knowledge_args(1_000_000 + i)).await?;
    }
    let mut lat = Vec::with_capacity(calls);
    let t0 = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        rpc.tool("add_knowledge", knowledge_args(i)).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let add = summary(lat, t0.elapsed());

    let query = |i: usize| format!("{} {}", WORDS[i % WORDS.len()], WORDS[(i * 5 + 1) % WORDS.len()]);
    for i in 0..opts.warmup {
        rpc.tool("search_knowledge", json!({"query": query(i), "limit": 10})).await?;
    }
    let mut lat = Vec::with_capacity(calls);
    let mut hits = 0u64;
    let t0 = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        let r = rpc.tool("search_knowledge", json!({"query": query(i), "limit": 10})).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += r["structuredContent"]["count"].as_u64().unwrap_or(0);
    }
    let mut search = summary(lat, t0.elapsed());
    search["mean_hits"] = json!((hits as f64 / calls as f64 * 100.0).round() / 100.0);

    drop(rpc);
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    Ok(json!({
        "bench": "mcp",
        "transport": "stdio",
        "clients": 1,
        "server": format!("{} mcp --db <tmp>", exe.display()),
        "protocol_version": init["protocolVersion"],
        "initialize_ms": (init_ms * 1000.0).round() / 1000.0,
        "warmup_calls_per_tool": opts.warmup,
        "add_knowledge": add,
        "search_knowledge": search,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let s = summary((1..=100).map(|i| i as f64).collect(), Duration::from_secs(2));
        assert_eq!(s["calls"], 100);
        assert_eq!(s["calls_per_sec"], 50.0);
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(summary(vec![], Duration::from_secs(1))["p99_ms"], 0.0);
    }
}
