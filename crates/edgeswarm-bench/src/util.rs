//! Small helpers the benchmarks share.

use crate::error::{BenchError, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Rounds to 3 decimals (µs when the unit is ms), as every benchmark reports.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `dir`, or a fresh directory under the system temp dir named `edgeswarm-<what>-<pid>-<ns>`;
/// created either way.
pub(crate) fn scratch_dir(dir: Option<&Path>, what: &str) -> Result<PathBuf> {
    let d = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("edgeswarm-{what}-{}-{nanos}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&d).map_err(|e| BenchError::io(format!("cannot create {}", d.display()), e))?;
    Ok(d)
}

/// The 1-minute load average (Linux), recorded so numbers from a shared machine can be read
/// in context.
pub(crate) fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()))
        .map(|x| json!(x))
        .unwrap_or(Value::Null)
}
