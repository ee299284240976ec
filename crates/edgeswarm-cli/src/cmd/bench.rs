//! `edgeswarm bench`: each benchmark is a library function in the edgeswarm-bench crate;
//! the CLI only calls it and prints. `--json` prints exactly one JSON line per benchmark. `bench all`
//! also writes docs/benchmarks.md: each figure beside the seed report's own figure and
//! the plain-libSQL baseline measured in the same run, with the machine it ran on.

use std::path::Path;

use serde_json::{json, Value};

use edgeswarm_bench::BenchError;

use crate::cli::{BenchArgs, BenchKind};
use crate::error::{CliError, Result};

const ORDER: [BenchKind; 5] = [
    BenchKind::Ingest,
    BenchKind::Read,
    BenchKind::Search,
    BenchKind::Sync,
    BenchKind::Mcp,
];

pub fn name(k: BenchKind) -> &'static str {
    match k {
        BenchKind::Ingest => "ingest",
        BenchKind::Read => "read",
        BenchKind::Search => "search",
        BenchKind::Sync => "sync",
        BenchKind::Mcp => "mcp",
        BenchKind::Dashboard => "dashboard",
        BenchKind::Quality => "quality",
        BenchKind::Soak => "soak",
        BenchKind::All => "all",
    }
}

/// A benchmark's error as the CLI reports it: store errors keep their own kind (as the
/// ingest and read benchmarks always did), anything else is named after the benchmark.
fn bench_error(k: BenchKind, e: BenchError) -> CliError {
    match e {
        BenchError::Store(e) if matches!(k, BenchKind::Ingest | BenchKind::Read) => CliError::from(e),
        e => CliError::Invalid(format!("bench {}: {e}", name(k))),
    }
}

/// Runs one benchmark through its library function in edgeswarm-bench (`scale`: search
/// adds the 1M-entry point).
pub async fn run_one(k: BenchKind, scale: bool) -> Result<Value> {
    let v = match k {
        BenchKind::Ingest => edgeswarm_bench::store::ingest(edgeswarm_bench::store::IngestOpts::default()).await,
        BenchKind::Read => edgeswarm_bench::store::read(edgeswarm_bench::store::ReadOpts::default()).await,
        BenchKind::Search => {
            edgeswarm_bench::search::bench(edgeswarm_bench::search::BenchOpts {
                scale_max: if scale {
                    1_000_000
                } else {
                    edgeswarm_bench::search::BenchOpts::default().scale_max
                },
                ..Default::default()
            })
            .await
        }
        BenchKind::Sync => {
            let dir = std::env::temp_dir().join(format!("edgeswarm-sync-bench-{}", std::process::id()));
            let r = edgeswarm_bench::sync::bench(edgeswarm_bench::sync::BenchOpts::in_dir(dir.clone())).await;
            let _ = std::fs::remove_dir_all(&dir);
            r
        }
        BenchKind::Mcp => edgeswarm_bench::mcp::bench(edgeswarm_bench::mcp::BenchOpts::default()).await,
        // Not in `bench all`: it measures the dashboard's cost, not a seed figure.
        BenchKind::Dashboard => edgeswarm_bench::dashboard::bench(Default::default())
            .await
            .map_err(BenchError::Other),
        BenchKind::Quality => return Err(CliError::Invalid("`quality` prints one line per mode; run it on its own".into())),
        BenchKind::Soak => return Err(CliError::Invalid("`soak` prints one line per minute; run it on its own".into())),
        BenchKind::All => return Err(CliError::Invalid("`all` is not a single benchmark".into())),
    }
    .map_err(|e| bench_error(k, e))?;
    Ok(match v {
        Value::Object(mut m) => {
            m.entry("bench").or_insert_with(|| json!(name(k)));
            Value::Object(m)
        }
        other => json!({ "bench": name(k), "result": other }),
    })
}

/// `bench quality`: one JSON line per search mode (see `edgeswarm_bench::quality`).
async fn run_quality(a: &BenchArgs) -> Result<()> {
    let data = a
        .data
        .clone()
        .ok_or_else(|| CliError::Invalid("bench quality needs --data PATH (a LoCoMo-format JSON file)".into()))?;
    let opts = edgeswarm_bench::quality::default_opts(data, a.limit_conversations, a.sweep)
        .map_err(|e| CliError::Invalid(format!("bench quality: {e}")))?;
    let lines = edgeswarm_bench::quality::quality(opts)
        .await
        .map_err(|e| CliError::Invalid(format!("bench quality: {e}")))?;
    for v in lines {
        if a.json {
            println!("{v}");
        } else {
            print!("{}", human(&v));
        }
    }
    Ok(())
}

/// `bench mcp --peer`: one JSON line per corpus (see `edgeswarm_bench::peer`).
async fn run_peer(a: &BenchArgs) -> Result<()> {
    let opts = edgeswarm_bench::peer::PeerOpts {
        docs: a.peer_docs.clone(),
        queries: a.peer_queries,
        corpora: a.peer_corpus.clone(),
        ..Default::default()
    };
    let lines = edgeswarm_bench::peer::bench(opts)
        .await
        .map_err(|e| bench_error(BenchKind::Mcp, e))?;
    for v in lines {
        if a.json {
            println!("{v}");
        } else {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    Ok(())
}

/// `bench soak`: a header line, one JSON line per sample as it is taken, then the
/// verdict; fails when RSS, or (strict, the default) any table or file, did not stay
/// flat (see `edgeswarm_bench::soak::verdict`).
async fn run_soak(a: &BenchArgs) -> Result<()> {
    if a.minutes == 0 || a.sample_secs == 0 {
        return Err(CliError::Invalid("bench soak needs --minutes of at least 1".into()));
    }
    let cache = match a.cache[..] {
        [] => None,
        [writer_kib, reader_kib, reader_mmap_bytes] => Some(edgeswarm::CacheConfig {
            writer_kib,
            reader_kib,
            reader_mmap_bytes,
        }),
        _ => {
            return Err(CliError::Invalid(
                "--cache takes three numbers: WRITER_KIB,READER_KIB,MMAP_BYTES".into(),
            ))
        }
    };
    let opts = edgeswarm_bench::soak::SoakOpts {
        duration: std::time::Duration::from_secs(a.minutes * 60),
        cache,
        sample_every: std::time::Duration::from_secs(a.sample_secs),
        ..Default::default()
    };
    let mut emit = |v: &Value| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let v = edgeswarm_bench::soak::soak(opts, &mut emit)
        .await
        .map_err(|e| CliError::Invalid(format!("bench soak: {e}")))?;
    if v["rss_ok"] != json!(true) {
        return Err(CliError::Invalid(format!(
            "bench soak: RSS did not stay flat after warm-up or passed {} MiB (peak {} MiB); see the lines above",
            v["max_rss_mb"], v["rss_peak_mb"]
        )));
    }
    if v["ok"] != json!(true) {
        return Err(CliError::Invalid(format!(
            "bench soak: not flat after warm-up: {}; see the lines above",
            v["not_flat"]
        )));
    }
    Ok(())
}

pub async fn run(a: BenchArgs) -> Result<()> {
    if a.which == BenchKind::Quality {
        return run_quality(&a).await;
    }
    if a.peer {
        if a.which != BenchKind::Mcp {
            return Err(CliError::Invalid("--peer goes with `bench mcp`".into()));
        }
        return run_peer(&a).await;
    }
    if a.which == BenchKind::Soak {
        return run_soak(&a).await;
    }
    if a.which != BenchKind::All {
        let v = run_one(a.which, a.scale).await?;
        if a.json {
            println!("{v}");
        } else {
            print!("{}", human(&v));
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for k in ORDER {
        if !a.json {
            eprintln!("running bench {} ...", name(k));
        }
        let r = run_one(k, a.scale).await;
        match &r {
            Ok(v) if a.json => println!("{v}"),
            Ok(v) => print!("{}", human(v)),
            Err(e) if a.json => println!("{}", json!({"bench": name(k), "error": e.to_string()})),
            Err(e) => eprintln!("bench {}: {e}", name(k)),
        }
        results.push((k, r));
    }
    let md = markdown(&results, &machine());
    write_file(&a.out, &md)?;
    if !a.json {
        eprintln!("wrote {}", a.out.display());
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        return Err(CliError::Invalid(format!(
            "{failed} of {} benchmarks did not run (see above); {} lists them as not run",
            results.len(),
            a.out.display()
        )));
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !d.is_dir() {
            return Err(CliError::file(
                path.display(),
                format!(
                    "directory {} does not exist; run from the repository root or pass --out",
                    d.display()
                ),
            ));
        }
    }
    std::fs::write(path, text).map_err(|e| CliError::file(path.display(), e))
}

/// Key: value lines for people.
pub fn human(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(m) = v {
        let b = m.get("bench").and_then(Value::as_str).unwrap_or("bench");
        out.push_str(&format!("{b}\n"));
        for (k, val) in m.iter().filter(|(k, _)| *k != "bench") {
            out.push_str(&format!("  {k:<24} {}\n", fmt_val(val)));
        }
    } else {
        out.push_str(&format!("{v}\n"));
    }
    out
}

fn fmt_val(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.abs() >= 1000.0 => group(f.round() as i64),
        Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
        Some(f) => format!("{f}"),
        None => v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
    }
}

/// 1234567 → "1,234,567".
pub fn group(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && matches!((s.len() - i) % 3, 0) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Machine description from /proc and the standard library.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {n} cores (nproc), {mem} RAM, Linux {kernel}")
}

/// One row of the table: label, bench, this run's key, seed figure, baseline key.
const ROWS: &[(&str, BenchKind, &str, &str, &str)] = &[
    (
        "INSERT throughput, 64 publishers (rows/s)",
        BenchKind::Ingest,
        "rows_per_sec",
        "8,000 ops/s",
        "raw_rows_per_sec",
    ),
    ("ingest ratio to plain libSQL", BenchKind::Ingest, "ratio", "—", ""),
    ("ack latency p50 (ms)", BenchKind::Ingest, "p50_ack_ms", "~8 ms (single insert)", ""),
    ("ack latency p99 (ms)", BenchKind::Ingest, "p99_ack_ms", "—", ""),
    (
        "bulk insert, 1000 rows (ms)",
        BenchKind::Ingest,
        "bulk_1000_ms",
        "~125 ms",
        "raw_bulk_1000_ms",
    ),
    (
        "SELECT throughput (queries/s)",
        BenchKind::Read,
        "qps",
        "319,444 ops/s",
        "raw_qps_one_connection",
    ),
    ("SELECT p99 (ms)", BenchKind::Read, "p99_ms", "—", ""),
    (
        "knowledge search, FTS5 (queries/s; baseline: LIKE scan)",
        BenchKind::Search,
        "qps",
        "—",
        "like_qps",
    ),
    (
        "knowledge search p99 (ms; baseline: FTS5 ranking every match)",
        BenchKind::Search,
        "p99_ms",
        "—",
        "fts5_rank.p99_ms",
    ),
    ("SYNC throughput (rows/s)", BenchKind::Sync, "rows_per_sec", "1,428 ops/s", ""),
    (
        "SYNC over Hrana HTTP (rows/s)",
        BenchKind::Sync,
        "hrana_rows_per_sec",
        "1,428 ops/s",
        "",
    ),
    (
        "full replica sync, 500 records (ms)",
        BenchKind::Sync,
        "full_sync_500_ms",
        "~350 ms",
        "",
    ),
    (
        "replication lag p99, us-west-2, 25 ms link (ms)",
        BenchKind::Sync,
        "lag_p99_ms.us-west-2",
        "—",
        "",
    ),
    (
        "replication lag p99, eu-central-1, 45 ms link (ms)",
        BenchKind::Sync,
        "lag_p99_ms.eu-central-1",
        "—",
        "",
    ),
    (
        "replication lag p99, ap-southeast-1, 85 ms link (ms)",
        BenchKind::Sync,
        "lag_p99_ms.ap-southeast-1",
        "—",
        "",
    ),
    (
        "replication lag p99, sa-east-1, 120 ms link (ms)",
        BenchKind::Sync,
        "lag_p99_ms.sa-east-1",
        "—",
        "",
    ),
    (
        "MCP add_knowledge (calls/s)",
        BenchKind::Mcp,
        "add_knowledge.calls_per_sec",
        "—",
        "",
    ),
    (
        "MCP search_knowledge (calls/s)",
        BenchKind::Mcp,
        "search_knowledge.calls_per_sec",
        "—",
        "",
    ),
    ("MCP search_knowledge p99 (ms)", BenchKind::Mcp, "search_knowledge.p99_ms", "—", ""),
];

/// A value at a dotted path (`a.b`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// docs/benchmarks.md.
pub fn markdown(results: &[(BenchKind, Result<Value>)], machine: &str) -> String {
    let get = |k: BenchKind, key: &str| -> String {
        if key.is_empty() {
            return "—".into();
        }
        match results.iter().find(|(b, _)| *b == k).map(|(_, r)| r) {
            Some(Ok(v)) => at(v, key).map(fmt_val).unwrap_or_else(|| "—".into()),
            Some(Err(_)) => "not run".into(),
            None => "—".into(),
        }
    };
    let mut md = String::from("# Benchmarks\n\nWritten by `edgeswarm bench all` (do not edit by hand). Each figure sits beside the seed report's own figure and the plain-libSQL baseline measured in the same run on the same machine.\n\n");
    md.push_str(&format!("Machine: {machine}\n\n"));
    md.push_str("| measure | edgeswarm (this run) | seed report | plain libSQL (same run) |\n|---|---:|---:|---:|\n");
    for (label, k, key, seed, base) in ROWS {
        md.push_str(&format!("| {label} | {} | {seed} | {} |\n", get(*k, key), get(*k, base)));
    }
    md.push_str("\n## Raw results\n\n");
    for (k, r) in results {
        match r {
            Ok(v) => md.push_str(&format!("- `{}`: `{}`\n", name(*k), v)),
            Err(e) => md.push_str(&format!("- `{}`: not run: {e}\n", name(*k))),
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_puts_figures_beside_seed_and_baseline() {
        let r = vec![
            (
                BenchKind::Ingest,
                Ok(json!({"bench":"ingest","rows_per_sec": 412345.6, "raw_rows_per_sec": 650000})),
            ),
            (BenchKind::Read, Err(CliError::Invalid("x".into()))),
        ];
        let md = markdown(&r, "test machine");
        assert!(
            md.contains("| INSERT throughput, 64 publishers (rows/s) | 412,346 | 8,000 ops/s | 650,000 |"),
            "{md}"
        );
        assert!(
            md.contains("| SELECT throughput (queries/s) | not run | 319,444 ops/s | not run |"),
            "{md}"
        );
        assert_eq!(group(-1234), "-1,234");
    }
}
