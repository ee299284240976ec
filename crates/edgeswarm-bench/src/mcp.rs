//! `edgeswarm bench mcp`: tool calls per second over stdio with one client. Spawns the
//! server binary (`<exe> mcp --db <tmp>`) as a child and speaks newline-delimited
//! JSON-RPC to it directly, so the numbers include the full path an MCP host sees:
//! serialisation, the stdio pipe, rmcp's dispatch, argument checks and the commit.

use crate::error::BenchError;
use crate::util::{round3, scratch_dir};
use edgeswarm_core::LatencyHistogram;
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

/// One MCP client over a child's stdio: newline-delimited JSON-RPC, one request at a
/// time. The same client drives edgeswarm and the peer in `bench mcp --peer`.
pub(crate) struct Rpc {
    /// The server process; killed when the client is dropped.
    child: tokio::process::Child,
    /// Requests go here.
    stdin: ChildStdin,
    /// Replies and notifications come from here, a line each.
    lines: Lines<BufReader<ChildStdout>>,
    /// The next request id.
    next_id: u64,
}

impl Rpc {
    /// Starts `cmd` with piped stdio (stderr inherited), sends `initialize` and
    /// `notifications/initialized`; returns the client and the server's `initialize` result.
    pub(crate) async fn start(mut cmd: tokio::process::Command, what: &str) -> Result<(Rpc, Value), BoxError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the server {what}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut rpc = Rpc {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        };
        let init = rpc
            .call("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "edgeswarm-bench", "version": env!("CARGO_PKG_VERSION")}}))
            .await?;
        rpc.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok((rpc, init))
    }

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
            let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
                .await
                .map_err(|_| format!("no reply to {method} within 120 s"))??
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

    /// Calls a tool; an `isError` result is an error here (a bench must not time failures).
    pub(crate) async fn tool(&mut self, name: &str, args: Value) -> Result<Value, BoxError> {
        let r = self.call("tools/call", json!({"name": name, "arguments": args})).await?;
        if r.get("isError") == Some(&json!(true)) {
            return Err(format!("{name} returned an error: {r}").into());
        }
        Ok(r)
    }

    /// Closes stdin and waits (up to 15 s) for the server to exit.
    pub(crate) async fn close(self) {
        let Rpc { mut child, stdin, .. } = self;
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    }
}

/// The `edgeswarm` binary the benches spawn: `$EDGESWARM_BIN`, else this executable.
pub(crate) fn edgeswarm_exe(exe: Option<PathBuf>) -> crate::Result<PathBuf> {
    match exe.or_else(|| std::env::var_os("EDGESWARM_BIN").map(PathBuf::from)) {
        Some(p) => Ok(p),
        None => std::env::current_exe().map_err(|e| BenchError::io("cannot find this executable", e)),
    }
}

pub(crate) fn summary(lat: &LatencyHistogram, wall: Duration) -> Value {
    let n = lat.count();
    json!({
        "calls": n,
        "calls_per_sec": round3(n as f64 / wall.as_secs_f64().max(1e-9)),
        "p50_ms": round3(lat.percentile_ms(0.50)),
        "p99_ms": round3(lat.percentile_ms(0.99)),
        "max_ms": round3(lat.max_ms()),
        "mean_ms": round3(lat.mean_ms()),
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
pub async fn bench(opts: BenchOpts) -> crate::Result<Value> {
    let exe = edgeswarm_exe(opts.exe.clone())?;
    let dir = scratch_dir(None, "mcp-bench")?;
    let db = dir.join("bench.db");
    let result = run(&exe, &db, &opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|e| BenchError::Other(e.to_string()))
}

async fn run(exe: &std::path::Path, db: &std::path::Path, opts: &BenchOpts) -> Result<Value, BoxError> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("mcp").arg("--db").arg(db);
    let t = Instant::now();
    let (mut rpc, init) = Rpc::start(cmd, &format!("`{} mcp`", exe.display())).await?;
    let init_ms = t.elapsed().as_secs_f64() * 1000.0;

    let calls = opts.calls.max(1);
    for i in 0..opts.warmup {
        rpc.tool("add_knowledge", knowledge_args(1_000_000 + i)).await?;
    }
    let mut lat = LatencyHistogram::new();
    let t0 = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        rpc.tool("add_knowledge", knowledge_args(i)).await?;
        lat.record(t.elapsed());
    }
    let add = summary(&lat, t0.elapsed());

    let query = |i: usize| format!("{} {}", WORDS[i % WORDS.len()], WORDS[(i * 5 + 1) % WORDS.len()]);
    for i in 0..opts.warmup {
        rpc.tool("search_knowledge", json!({"query": query(i), "limit": 10})).await?;
    }
    let mut lat = LatencyHistogram::new();
    let mut hits = 0u64;
    let t0 = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        let r = rpc.tool("search_knowledge", json!({"query": query(i), "limit": 10})).await?;
        lat.record(t.elapsed());
        hits += r["structuredContent"]["count"].as_u64().unwrap_or(0);
    }
    let mut search = summary(&lat, t0.elapsed());
    search["mean_hits"] = json!((hits as f64 / calls as f64 * 100.0).round() / 100.0);

    rpc.close().await;
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
        let s = summary(&LatencyHistogram::from_ms((1..=100).map(|i| i as f64)), Duration::from_secs(2));
        assert_eq!(s["calls"], 100);
        assert_eq!(s["calls_per_sec"], 50.0);
        // Nearest rank, at the histogram's 0.1% resolution above 2.048 ms (exact below).
        for (key, want) in [("p50_ms", 50.0), ("p99_ms", 99.0)] {
            let got = s[key].as_f64().unwrap();
            assert!(got >= want && got <= want * 1.001, "{key}: {got}");
        }
        assert_eq!(s["max_ms"], 100.0);
        assert_eq!(s["mean_ms"], 50.5);
        let s = summary(
            &LatencyHistogram::from_ms((1..=100).map(|i| i as f64 / 100.0)),
            Duration::from_secs(2),
        );
        assert_eq!((s["p50_ms"].as_f64(), s["p99_ms"].as_f64()), (Some(0.5), Some(0.99)));
        assert_eq!(summary(&LatencyHistogram::new(), Duration::from_secs(1))["p99_ms"], 0.0);
    }
}
