//! `tursodb --sync-server`: a real Hrana server for the remote-region test and the sync
//! benchmark's `hrana_rows_per_sec`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the tests and the benchmark look for `tursodb` (npm package `turso`, pinned
/// 0.6.0): `$EDGESWARM_TURSODB` (scripts/test.sh sets it), then
/// `<repo>/.ci/tools/node_modules/@tursodatabase/cli-<platform>/tursodb`, then `PATH`.
/// The npm `.bin/turso` wrapper is a node script that does not forward SIGKILL, so
/// the platform binary is used directly.
pub fn tursodb_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EDGESWARM_TURSODB") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scope = root.join(".ci/tools/node_modules/@tursodatabase");
    if let Ok(rd) = std::fs::read_dir(&scope) {
        for e in rd.flatten() {
            let p = e.path().join("tursodb");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("tursodb")).find(|p| p.is_file()))
}

/// How to install `tursodb` for the tests and benchmark.
pub const TURSODB_HINT: &str =
    "tursodb not found: run `npm install --prefix .ci/tools turso@0.6.0` in the repo root (or set EDGESWARM_TURSODB to the tursodb binary)";

/// A `tursodb --sync-server` child process on a loopback port (killed on drop).
pub struct TursoServer {
    /// The child.
    pub child: std::process::Child,
    /// Its base url.
    pub url: String,
    /// Port it listens on.
    pub port: u16,
}

impl TursoServer {
    /// Starts `bin --sync-server 127.0.0.1:<port> <db>` (a free port when `None`) and
    /// waits until it accepts connections (10 s at most).
    pub async fn start(bin: &Path, db: &Path, port: Option<u16>) -> std::io::Result<Self> {
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let child = std::process::Command::new(bin)
            .arg("--sync-server")
            .arg(format!("127.0.0.1:{port}"))
            .arg(db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display())))?;
        let url = format!("http://127.0.0.1:{port}");
        let s = TursoServer { child, url, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "tursodb did not start listening within 10 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TursoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tursodb binaries the remote-region tests run against, labelled by version:
/// `$EDGESWARM_TURSODB` (or the one [`tursodb_path`] finds; npm `turso`, pinned in
/// .ci/turso-version) and `$EDGESWARM_TURSODB_07` (npm
/// `@tursodatabase/cli-linux-x64-gnu@0.7.0`) when set. Panics with the install hint
/// when there is none.
pub fn tursodb_binaries() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    let mut add = |p: PathBuf| {
        if p.is_file() && !out.iter().any(|(_, q)| *q == p) {
            let v = std::process::Command::new(&p)
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            out.push((if v.is_empty() { p.display().to_string() } else { v }, p));
        }
    };
    if let Some(p) = tursodb_path() {
        add(p);
    }
    if let Some(p) = std::env::var_os("EDGESWARM_TURSODB_07") {
        add(p.into());
    }
    if out.is_empty() {
        panic!("{}", TURSODB_HINT);
    }
    out
}
