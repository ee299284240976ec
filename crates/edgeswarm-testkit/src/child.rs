//! Helper processes for crash and cross-process tests: start one with its stdout piped,
//! collect the lines it prints on a thread, kill it with SIGKILL (no chance to flush or
//! clean up, as in a power cut of the process).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

/// A running helper process whose stdout lines are being collected.
pub struct ChildLines {
    /// The process.
    pub child: Child,
    /// The thread reading stdout until EOF (or a read error); joins to every full line.
    reader: Option<JoinHandle<Vec<String>>>,
}

impl ChildLines {
    /// Starts `cmd` with stdout piped (stderr inherited) and collects its lines.
    pub fn spawn(mut cmd: Command) -> ChildLines {
        let mut child = match cmd.stdout(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {cmd:?}: {e}"),
        };
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let Some(out) = stdout else { return Vec::new() };
            BufReader::new(out).lines().map_while(Result::ok).collect()
        });
        ChildLines {
            child,
            reader: Some(reader),
        }
    }

    /// Kills the process with SIGKILL (what `Child::kill` sends on Unix), reaps it, and
    /// returns every line it printed.
    pub fn sigkill(mut self) -> Vec<String> {
        sigkill(&mut self.child);
        self.lines()
    }

    /// Waits for the process to exit and returns every line it printed.
    pub fn wait(mut self) -> Vec<String> {
        let _ = self.child.wait();
        self.lines()
    }

    fn lines(&mut self) -> Vec<String> {
        match self.reader.take().map(|r| r.join()) {
            Some(Ok(lines)) => lines,
            Some(Err(_)) => panic!("the thread reading the child's stdout panicked"),
            None => Vec::new(),
        }
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGKILL to `child` and reaps it. Panics if the signal could not be sent (the
/// process already exited: the test's premise is broken).
pub fn sigkill(child: &mut Child) {
    if let Err(e) = child.kill() {
        panic!("cannot SIGKILL child {}: {e}", child.id());
    }
    let _ = child.wait();
}
