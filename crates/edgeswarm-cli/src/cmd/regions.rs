//! `edgeswarm regions add|remove|partition|heal|list`: steers a running demo.
//!
//! The desired region set lives in the home file, kv namespace `edgeswarm/regions`, one
//! key per region name, value `{"url": "...", "latency_ms": N, "token_env": null,
//! "partitioned": false}`. Removing a region deletes its key. A running demo watches the
//! namespace and applies each change live, without a restart (`Swarm::add_region`,
//! seeded from home; `Swarm::remove_region`, drained for at most `remove_drain`, then
//! abandoned), or flips a link's partition switch. Health and lag come back
//! through `edge_replicas`, which `regions list` and `status` show.

use serde_json::{json, Value};

use crate::cli::{RegionAction, RegionsArgs};
use crate::cmd::status::region_rows;
use crate::config;
use crate::error::{CliError, Result};
use crate::{open, table};

/// kv namespace of the region control plane.
pub const REGIONS_NS: &str = "edgeswarm/regions";

fn valid_name(n: &str) -> Result<()> {
    if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(CliError::Invalid(format!(
            "region name `{n}` must be 1-64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

pub async fn run(a: RegionsArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let swarm = open::swarm(&settings, false).await?;
    let r: Result<()> = async {
        let out: Value = match &a.action {
            RegionAction::List => {
                let desired = swarm.kv_list(REGIONS_NS, "", 1000).await?;
                let live = region_rows(&swarm).await.unwrap_or_default();
                let mut names: Vec<String> = desired.iter().map(|e| e.key.clone()).chain(live.iter().map(|r| r.region.clone())).collect();
                names.sort();
                names.dedup();
                let rows: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let d = desired.iter().find(|e| &e.key == n);
                        let l = live.iter().find(|r| &r.region == n);
                        json!({
                            "region": n,
                            "latency_ms": d.and_then(|e| e.value.get("latency_ms").cloned()),
                            "partitioned": d.and_then(|e| e.value.get("partitioned").cloned()).unwrap_or(json!(false)),
                            "controlled": d.is_some(),
                            "status": l.map(|r| r.status.clone()),
                            "lag_rows": l.map(|r| r.lag_rows),
                        })
                    })
                    .collect();
                if !a.json {
                    let t: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| ["region", "latency_ms", "partitioned", "status", "lag_rows"].iter().map(|k| match &r[*k] { Value::String(s) => s.clone(), Value::Null => "-".into(), v => v.to_string() }).collect())
                        .collect();
                    if t.is_empty() {
                        println!("no regions: none configured for a running demo and none in edge_replicas");
                    } else {
                        print!("{}", table::render(&["region".into(), "latency ms".into(), "partitioned".into(), "status".into(), "lag rows".into()], &t, 40));
                    }
                }
                json!({ "regions": rows })
            }
            RegionAction::Add { name, url, latency_ms, token_env, ca_file } => {
                valid_name(name)?;
                let url = url.clone().unwrap_or_else(|| {
                    let dir = settings
                        .store
                        .path
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .map(|p| p.join("regions"))
                        .unwrap_or_else(|| "regions".into());
                    format!("file:{}", dir.join(format!("{name}.db")).display())
                });
                let url_ok = (url.starts_with("file:") && url.len() > 5)
                    || url.starts_with("http://")
                    || url.starts_with("https://")
                    || url.starts_with("libsql://");
                if !url_ok {
                    return Err(CliError::Invalid(format!(
                        "--url `{}` must start with file:<path>, http://, https:// or libsql://",
                        edgeswarm::redact_url(&url)
                    )));
                }
                if let Some(c) = ca_file {
                    if !c.is_file() {
                        return Err(CliError::Invalid(format!("--ca-file `{}` does not exist; point it at the CA certificate (PEM)", c.display())));
                    }
                }
                if swarm.kv_get(REGIONS_NS, name).await?.is_some() {
                    return Err(CliError::Invalid(format!("region `{name}` already exists; remove it first or pick another name")));
                }
                let ca_file = ca_file.as_ref().map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()));
                let v = json!({"url": url, "latency_ms": latency_ms, "token_env": token_env, "ca_file": ca_file, "partitioned": false});
                swarm.kv_set(REGIONS_NS, name, v.clone(), None).await?;
                // The url may carry a token (?authToken=): never echo it.
                let mut shown = v.clone();
                shown["url"] = json!(edgeswarm::redact_url(&url));
                json!({"added": name, "desired": shown})
            }
            RegionAction::Remove { name } => {
                valid_name(name)?;
                if !swarm.kv_delete(REGIONS_NS, name).await? {
                    return Err(CliError::Invalid(format!("no region `{name}` under control; `edgeswarm regions list` shows them")));
                }
                json!({"removed": name})
            }
            RegionAction::Partition { name } | RegionAction::Heal { name } => {
                valid_name(name)?;
                let partitioned = matches!(a.action, RegionAction::Partition { .. });
                let Some(mut e) = swarm.kv_get(REGIONS_NS, name).await? else {
                    return Err(CliError::Invalid(format!("no region `{name}` under control; `edgeswarm regions list` shows them (a running demo registers its regions there)")));
                };
                if let Value::Object(m) = &mut e.value {
                    m.insert("partitioned".into(), json!(partitioned));
                }
                swarm.kv_set(REGIONS_NS, name, e.value.clone(), None).await?;
                json!({"region": name, "partitioned": partitioned})
            }
        };
        if a.json {
            println!("{out}");
        } else if !matches!(a.action, RegionAction::List) {
            println!("ok: {out} (a running demo applies it live within a second; `edgeswarm regions list` shows it)");
        }
        Ok(())
    }
    .await;
    let closed = swarm.shutdown().await;
    r?;
    closed?;
    Ok(())
}
