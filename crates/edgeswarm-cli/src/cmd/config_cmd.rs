//! `edgeswarm config check|show`.

use crate::cli::{ConfigAction, ConfigArgs};
use crate::config::{self, Severity};
use crate::error::{CliError, Result};

pub fn run(a: ConfigArgs) -> Result<()> {
    match a.action {
        ConfigAction::Check { path, json, db } => {
            let path = config::resolve_path(path.as_deref().or(db.config.as_deref())).ok_or_else(|| {
                CliError::Invalid(format!(
                    "no config file: pass a path, set --config / EDGESWARM_CONFIG, or create ./{} (see edgeswarm.toml.example)",
                    config::DEFAULT_CONFIG
                ))
            })?;
            let text = config::read(&path)?;
            let checked = config::check_str(&text);
            let errors = checked.errors();
            let warnings = checked.problems.len() - errors;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"path": path.display().to_string(), "ok": errors == 0, "errors": errors, "warnings": warnings, "problems": checked.problems})
                );
            } else {
                for p in &checked.problems {
                    println!("{}", p.render(&path));
                }
                if errors == 0 {
                    println!(
                        "{}: ok ({} warning{}; {} region{})",
                        path.display(),
                        warnings,
                        if warnings == 1 { "" } else { "s" },
                        checked.settings.regions.len(),
                        if checked.settings.regions.len() == 1 { "" } else { "s" }
                    );
                }
            }
            if errors > 0 {
                return Err(CliError::Config {
                    path,
                    problems: checked.problems.into_iter().filter(|p| p.severity == Severity::Error).collect(),
                });
            }
            Ok(())
        }
        ConfigAction::Show { db } => {
            let s = config::load(&db)?;
            if let Some(p) = &s.config_path {
                println!("# from {} plus environment and flags", p.display());
            } else {
                println!("# built-in defaults plus environment and flags");
            }
            print!("{}", s.to_toml());
            Ok(())
        }
    }
}
