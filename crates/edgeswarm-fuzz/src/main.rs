//! `edgeswarm-fuzz <target> --seconds N --seed S`: structure-aware fuzzing on the stable
//! toolchain. Each target draws its inputs from a seeded RNG (`gen`), runs them through
//! the real code path in process, and checks its invariants (see each module). It prints
//! iterations per second and failures; a failure writes the input (minimised where the
//! target can) to `--out` and exits 1.
//!
//! Targets: `guard` (raw SQL through a real store), `search` (query texts, fast ranker
//! against FTS5), `mcp` (tool arguments through the MCP server's dispatch), `hrana`
//! (replies served to the Hrana link from a loopback HTTP server).
//!
//! `corpus/guard/` holds the guard findings as replayable files (first line: their status
//! when they were found); `edgeswarm-fuzz guard --replay FILE` runs one on a fresh store.

mod gen;
mod guard;
mod hrana;
mod mcp;
mod search;

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Guard,
    Search,
    Mcp,
    Hrana,
}

#[derive(Debug, Parser)]
#[command(
    name = "edgeswarm-fuzz",
    about = "Structure-aware fuzzing of edgeswarm's hostile-input surfaces (stable toolchain)."
)]
struct Cli {
    /// What to fuzz.
    target: Target,
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the input generator (same seed, same inputs).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where failing inputs are written.
    #[arg(long, default_value = "target/fuzz-failures")]
    out: PathBuf,
    /// Keep going after a failure (from a fresh state) and list every distinct finding
    /// at the end; the exit code is still 1 if anything was found.
    #[arg(long)]
    keep_going: bool,
    /// Time spent minimising each failing input (guard target), in seconds.
    /// Hangs are not minimised (each replay would leave a stuck writer thread).
    #[arg(long, default_value_t = 30)]
    minimize_seconds: u64,
    /// Guard only: finding classes to ignore (prefix match, repeatable), to fuzz past a
    /// known finding, e.g. `--ignore temp-object`.
    #[arg(long, value_name = "CLASS")]
    ignore: Vec<String>,
    /// Resident memory past which the run fails at once (MiB).
    #[arg(long, default_value_t = 2048)]
    max_rss_mib: u64,
    /// Guard only: replay the statements of a failure file (lines `execute: SQL` or
    /// `read: SQL`; other lines are ignored) on a fresh store and report, instead of
    /// generating.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
}

/// One invariant violation: a short class (used to tell findings apart), what was seen,
/// and the input that shows it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Which invariant broke, e.g. `unlogged-change:kv` (distinct findings differ here).
    pub class: String,
    /// What was observed.
    pub detail: String,
    /// The input (for the guard: the statements, one per line, in order).
    pub input: String,
}

/// What a target reports at the end of its run.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs tried.
    pub iterations: u64,
    /// Distinct findings, first one of each class.
    pub findings: Vec<Finding>,
    /// A free-form line of target statistics (accepted/refused counts...).
    pub stats: String,
}

/// Run settings handed to a target.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seed of the target's generator.
    pub seed: u64,
    /// When to stop generating.
    pub deadline: Instant,
    /// Collect every distinct finding instead of stopping at the first.
    pub keep_going: bool,
    pub minimize: Duration,
    /// A failure file to replay instead of generating (guard).
    pub replay: Option<PathBuf>,
    /// Finding classes (prefixes) the guard target does not report.
    pub ignore: Vec<String>,
    /// Scratch directory (removed at exit).
    pub dir: PathBuf,
}

/// Panics seen anywhere in the process (any thread, any task), by the hook.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The input being run now, for the memory watchdog's failure file.
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// Records the input being run now (see [`CURRENT`]).
pub fn set_current(input: &str) {
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = input.to_string();
}

/// The process's resident memory in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Past `limit` bytes of RSS the process writes the current input as a `memory` failure
/// and exits 1 at once: an unbounded result must not take a shared CI machine down.
fn start_memory_watchdog(limit: u64, out: PathBuf, name: String, seed: u64) {
    let spawned = std::thread::Builder::new().name("fuzz-memory-watchdog".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_millis(20));
        let rss = rss_bytes();
        if rss > limit {
            let input = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let _ = std::fs::create_dir_all(&out);
            let path = out.join(format!("{name}-seed{seed}-memory.txt"));
            let _ = std::fs::write(&path, format!("# class: memory\n# detail: RSS {rss} bytes > {limit}\n{input}\n"));
            println!(
                "FAIL [memory] RSS {} MiB past the {} MiB limit -> {}",
                rss >> 20,
                limit >> 20,
                path.display()
            );
            println!("  input: {}", input.chars().take(1500).collect::<String>());
            std::process::exit(1);
        }
    });
    if let Err(e) = spawned {
        eprintln!("edgeswarm-fuzz: no memory watchdog: {e}");
    }
}

/// Takes the panics recorded since the last call.
pub fn take_panics() -> Vec<String> {
    std::mem::take(&mut *PANICS.lock().unwrap_or_else(|p| p.into_inner()))
}

fn main() {
    let cli = Cli::parse();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = format!("{info}");
        PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
        default_hook(info);
    }));
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("edgeswarm-fuzz: cannot create a scratch directory: {e}");
            std::process::exit(2);
        }
    };
    let opts = Opts {
        seed: cli.seed,
        deadline: Instant::now() + Duration::from_secs(cli.seconds),
        keep_going: cli.keep_going,
        minimize: Duration::from_secs(cli.minimize_seconds),
        replay: cli.replay.clone(),
        ignore: cli.ignore.clone(),
        dir: scratch.path().to_path_buf(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgeswarm-fuzz: cannot start tokio: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let name = format!("{:?}", cli.target).to_lowercase();
    start_memory_watchdog(cli.max_rss_mib << 20, cli.out.clone(), name.clone(), cli.seed);
    let report = rt.block_on(async {
        match cli.target {
            Target::Guard => guard::run(opts).await,
            Target::Search => search::run(opts).await,
            Target::Mcp => mcp::run(opts).await,
            Target::Hrana => hrana::run(opts).await,
        }
    });
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "edgeswarm-fuzz {name}: seed {} | {} iterations in {:.1} s ({:.1}/s) | {} finding(s){}",
        cli.seed,
        report.iterations,
        secs,
        report.iterations as f64 / secs,
        report.findings.len(),
        if report.stats.is_empty() {
            String::new()
        } else {
            format!(" | {}", report.stats)
        }
    );
    if report.findings.is_empty() {
        // Exit without waiting for stuck threads (none expected when nothing was found).
        drop(scratch);
        std::process::exit(0);
    }
    if let Err(e) = std::fs::create_dir_all(&cli.out) {
        eprintln!("edgeswarm-fuzz: cannot create {}: {e}", cli.out.display());
    }
    for (i, f) in report.findings.iter().enumerate() {
        let safe: String = f
            .class
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        let path = cli.out.join(format!("{name}-seed{}-{i}-{safe}.txt", cli.seed));
        let body = format!("# class: {}\n# detail: {}\n{}\n", f.class, f.detail.replace('\n', "\n# "), f.input);
        match std::fs::write(&path, body) {
            Ok(()) => println!("FAIL [{}] {} -> {}", f.class, f.detail.lines().next().unwrap_or(""), path.display()),
            Err(e) => println!("FAIL [{}] {} (cannot write {}: {e})", f.class, f.detail, path.display()),
        }
        let shown: String = f.input.chars().take(1500).collect();
        let more = if f.input.len() > shown.len() {
            format!(" … ({} bytes in the file)", f.input.len())
        } else {
            String::new()
        };
        println!("  input: {}{more}", shown.replace('\n', "\n         "));
    }
    drop(scratch);
    // A hung writer may still hold threads: leave at once.
    std::process::exit(1);
}
