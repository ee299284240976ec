//! `edgeswarm sql` and the interactive shell.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use edgeswarm::{QueryResult, SqlValue, Swarm};

use crate::cli::{ShellArgs, SqlArgs};
use crate::config::{self, Settings};
use crate::error::{CliError, Result};
use crate::{metrics, open, table};

/// Parses `--param` values: JSON when it parses, else a bare string.
pub fn parse_params(raw: &[String]) -> Vec<SqlValue> {
    raw.iter()
        .map(|p| match serde_json::from_str::<serde_json::Value>(p) {
            Ok(v) => SqlValue::from_json(&v),
            Err(_) => SqlValue::Text(p.clone()),
        })
        .collect()
}

async fn with_swarm<T>(settings: &Settings, f: impl AsyncFnOnce(&Swarm) -> Result<T>) -> Result<T> {
    let swarm = open::swarm(settings, false).await?;
    let _metrics = match settings.metrics_addr {
        Some(a) => Some(metrics::serve(a, metrics::Source::store(swarm.store().clone())).await),
        None => None,
    };
    let r = match _metrics {
        Some(Err(e)) => Err(e),
        _ => f(&swarm).await,
    };
    let closed = swarm.shutdown().await;
    let v = r?;
    closed?;
    Ok(v)
}

pub async fn run(a: SqlArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let Some(stmt) = a.statement else {
        return shell(&settings, None).await;
    };
    let params = parse_params(&a.params);
    let sql = stmt.trim().trim_end_matches(';').trim().to_string();
    if sql.is_empty() {
        return Err(CliError::Invalid(
            "empty statement; give one SQL statement, e.g. edgeswarm sql \"SELECT count(*) FROM knowledge\"".into(),
        ));
    }
    let r = with_swarm(&settings, async |swarm| {
        Ok(if a.read_only {
            swarm.read_sql(sql, params).await?
        } else {
            swarm.execute_sql(sql, params).await?
        })
    })
    .await?;
    if a.json {
        println!("{}", table::result_json(&r));
    } else {
        print!("{}", table::render_result(&r));
    }
    Ok(())
}

pub async fn run_shell(a: ShellArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    shell(&settings, a.history).await
}

const HELP: &str = "Enter SQL ending with `;` (reads run on the read pool, writes through the storage actor).\n\
.tables            list tables\n\
.schema [TABLE]    show CREATE statements\n\
.json              toggle JSON output\n\
.stats             storage queue and batch counters\n\
.help              this help\n\
.quit              leave (Ctrl-D works too)\n";

struct Session {
    json: bool,
}

impl Session {
    async fn line(&mut self, swarm: &Swarm, input: &str) -> Result<bool> {
        let cmd = input.trim();
        if let Some(dot) = cmd.strip_prefix('.') {
            let mut parts = dot.split_whitespace();
            match parts.next().unwrap_or("") {
                "quit" | "exit" | "q" => return Ok(false),
                "help" => print!("{HELP}"),
                "json" => {
                    self.json = !self.json;
                    println!("json output {}", if self.json { "on" } else { "off" });
                }
                "tables" => {
                    let names = swarm
                        .list_tables(true)
                        .await?
                        .into_iter()
                        .filter(|t| !t.name.starts_with("sqlite_"))
                        .map(|t| t.name);
                    self.show("name", names)
                }
                "schema" => {
                    let sql = swarm.schema_sql(parts.next()).await?;
                    self.show("sql", sql.into_iter())
                }
                "stats" => println!("{}", serde_json::to_string(&swarm.store_stats()).unwrap_or_default()),
                other => println!("unknown command .{other}; try .help"),
            }
            return Ok(true);
        }
        let sql = cmd.trim_end_matches(';').trim();
        if sql.is_empty() {
            return Ok(true);
        }
        let r = swarm.execute_sql(sql.to_string(), vec![]).await?;
        if self.json {
            println!("{}", table::result_json(&r));
        } else {
            print!("{}", table::render_result(&r));
        }
        Ok(true)
    }

    /// Prints one text column, one value a line (or as a JSON result).
    fn show(&self, column: &str, values: impl Iterator<Item = String>) {
        let r = QueryResult {
            columns: vec![column.to_string()],
            rows: values.map(|v| vec![SqlValue::Text(v)]).collect(),
            ..Default::default()
        };
        if self.json {
            println!("{}", table::result_json(&r));
        } else {
            for row in &r.rows {
                println!("{}", row.iter().map(table::cell).collect::<Vec<_>>().join(" ").replace("\\n", "\n"));
            }
        }
    }
}

fn history_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".edgeswarm_history")))
}

/// The interactive shell: rustyline with history on a terminal, plain lines otherwise.
pub async fn shell(settings: &Settings, history: Option<PathBuf>) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    with_swarm(settings, async |swarm| {
        let mut s = Session { json: false };
        if interactive {
            println!(
                "edgeswarm shell on {} — .help for commands, Ctrl-D to leave",
                settings.store.path.display()
            );
            let mut ed = rustyline::DefaultEditor::new().map_err(|e| CliError::Invalid(format!("cannot start line editor: {e}")))?;
            let hist = history_path(history);
            if let Some(h) = &hist {
                let _ = ed.load_history(h);
            }
            let mut buf = String::new();
            loop {
                let prompt = if buf.is_empty() { "edgeswarm> " } else { "      ...> " };
                let line = match ed.readline(prompt) {
                    Ok(l) => l,
                    Err(rustyline::error::ReadlineError::Interrupted) => {
                        buf.clear();
                        continue;
                    }
                    Err(_) => break,
                };
                if !complete(&mut buf, &line) {
                    continue;
                }
                let stmt = std::mem::take(&mut buf);
                let _ = ed.add_history_entry(stmt.as_str());
                match s.line(swarm, &stmt).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            if let Some(h) = &hist {
                if let Err(e) = ed.save_history(h) {
                    tracing::warn!(path = %h.display(), error = %e, "could not save shell history");
                }
            }
            Ok(())
        } else {
            // Piped input: statements end with `;` or a newline-terminated dot command;
            // the first error stops the run (exit 1), like `sqlite3 -bail`.
            let stdin = std::io::stdin();
            let mut buf = String::new();
            for line in stdin.lock().lines() {
                let line = line?;
                if !complete(&mut buf, &line) {
                    continue;
                }
                let stmt = std::mem::take(&mut buf);
                if !s.line(swarm, &stmt).await? {
                    break;
                }
            }
            if !buf.trim().is_empty() {
                s.line(swarm, &buf).await?;
            }
            Ok(())
        }
    })
    .await
}

/// Appends a line; true when the buffer holds a whole command.
fn complete(buf: &mut String, line: &str) -> bool {
    if buf.is_empty() && line.trim_start().starts_with('.') {
        buf.push_str(line.trim());
        return true;
    }
    if !buf.is_empty() {
        buf.push('\n');
    }
    buf.push_str(line);
    buf.trim_end().ends_with(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_json_or_text() {
        let p = parse_params(&["1".into(), "x y".into(), "\"q\"".into(), "2.5".into()]);
        assert_eq!(
            p,
            vec![
                SqlValue::Integer(1),
                SqlValue::Text("x y".into()),
                SqlValue::Text("q".into()),
                SqlValue::Real(2.5)
            ]
        );
    }

    #[test]
    fn statements_end_at_semicolons() {
        let mut b = String::new();
        assert!(!complete(&mut b, "SELECT 1"));
        assert!(complete(&mut b, "  + 1;"));
        assert_eq!(b, "SELECT 1\n  + 1;");
        let mut b = String::new();
        assert!(complete(&mut b, ".tables"));
    }
}
