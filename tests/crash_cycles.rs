//! The crash harness: SIGKILL a swarm under mixed load (typed records, kv CAS, raw SQL
//! to a user table, one local region) at a random point, again and again. Each restart
//! checks, in the new child process (`edgeswarm-test-child crash`, tests/child.rs):
//! every acked write logged by earlier lives is present, `PRAGMA integrity_check` is
//! ok on home and on the region file, and home and region converge once sync catches up. A last clean life
//! (`crash-final`) checks every ack ever logged.
//!
//! CI runs 50 cycles; `EDGESWARM_CRASH_CYCLES=500 scripts/crash.sh` runs more
//! (`EDGESWARM_CRASH_SEED` replays a run's kill schedule; the seed is printed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A small deterministic generator for the kill schedule (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// A child whose stdout lines arrive on a channel as they are printed.
struct Live {
    child: Child,
    lines: Receiver<String>,
}

fn spawn(mode: &str, dir: &std::path::Path) -> Live {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeswarm-test-child"))
        .args([mode, dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the crash child: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Live { child, lines: rx }
}

/// Waits for a line starting with `prefix`; panics on `FAIL` or if the child exits.
fn wait_line(live: &mut Live, prefix: &str, timeout: Duration, cycle: usize) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match live.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.starts_with("FAIL") => panic!("cycle {cycle}: the restarted child found: {l}"),
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("cycle {cycle}: no `{prefix}` line within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = live.child.wait();
                panic!("cycle {cycle}: the child exited before `{prefix}` ({status:?})");
            }
        }
    }
}

fn field(line: &str, name: &str) -> u64 {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigkill_cycles_lose_no_acked_write_and_converge() {
    let cycles: usize = std::env::var("EDGESWARM_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("EDGESWARM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash harness: {cycles} cycles, seed {seed} (EDGESWARM_CRASH_SEED replays the kill schedule)");
    let mut rng = Rng(seed);
    let dir = match std::env::var("EDGESWARM_CRASH_DIR") {
        Ok(d) => {
            std::fs::create_dir_all(&d).unwrap();
            tempfile::Builder::new().prefix("crash-").tempdir_in(d).unwrap()
        }
        Err(_) => edgeswarm_testkit::temp_dir(),
    };
    let started = Instant::now();
    let (mut startup_kills, mut load_kills, mut checked, mut max_converge) = (0usize, 0usize, 0u64, 0u64);
    let mut region_checks = 0u64;
    for cycle in 1..=cycles {
        let mut live = spawn("crash", dir.path());
        // One kill in eight lands during start-up (opening, migrations, recovery, the
        // checks, sync catching up); the rest during load.
        if rng.next().is_multiple_of(8) {
            std::thread::sleep(rng.ms(0, 600));
            startup_kills += 1;
        } else {
            let ready = wait_line(&mut live, "ready", Duration::from_secs(180), cycle);
            checked += field(&ready, "checked");
            region_checks += field(&ready, "region_checked");
            max_converge = max_converge.max(field(&ready, "converge_ms"));
            std::thread::sleep(rng.ms(5, 400));
            load_kills += 1;
        }
        // A child that failed a check exits by itself: a kill that finds it gone is a
        // failure unless it printed nothing wrong.
        let exited = live.child.try_wait().ok().flatten();
        let _ = live.child.kill();
        let _ = live.child.wait();
        while let Ok(l) = live.lines.try_recv() {
            assert!(!l.starts_with("FAIL"), "cycle {cycle}: the restarted child found: {l}");
        }
        if let Some(status) = exited {
            panic!("cycle {cycle}: the child exited by itself before the kill ({status})");
        }
        if cycle.is_multiple_of(50) {
            eprintln!(
                "crash harness: {cycle} cycles in {:.0} s, {checked} ack checks",
                started.elapsed().as_secs_f64()
            );
        }
    }
    // A last life checks every ack ever logged, integrity and convergence, and shuts down.
    let mut last = spawn("crash-final", dir.path());
    let fin = wait_line(&mut last, "final ok", Duration::from_secs(300), cycles + 1);
    let status = last.child.wait().unwrap();
    assert!(status.success(), "the final check exited with {status}");
    let acks = std::fs::read_to_string(dir.path().join("acks.log"))
        .unwrap_or_default()
        .lines()
        .count();
    assert!(load_kills > 0 && acks > 0, "no load ran: {load_kills} load kills, {acks} acks");
    eprintln!(
        "crash harness: {cycles} SIGKILL cycles ({load_kills} under load, {startup_kills} during start-up) in {:.0} s; \
         {checked} ack checks and {region_checks} region integrity checks after restarts, {} acks logged, all {} present at the end ({fin}); max convergence wait {max_converge} ms",
        started.elapsed().as_secs_f64(),
        acks,
        field(&fin, "checked"),
    );
}
