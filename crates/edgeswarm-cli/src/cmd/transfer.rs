//! `edgeswarm export` / `import`: knowledge and conversations as JSON Lines, one record a
//! line, `{"type":"knowledge",...}` or `{"type":"conversation",...}`. Ids are kept, so
//! importing the same file twice stores each record once (idempotent by id).

use std::io::{BufRead, BufWriter, Write};

use edgeswarm::{Knowledge, Message, Store};
use edgeswarm_core::Record;
use edgeswarm_store::Inserted;
use serde::{Deserialize, Serialize};

use crate::cli::{ExportArgs, ExportWhat, ImportArgs};
use crate::config;
use crate::error::{CliError, Result};
use crate::open;

/// One exported line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Knowledge(Knowledge),
    Conversation(Message),
}

const PAGE: i64 = 1000;

fn json_col(v: &edgeswarm::SqlValue) -> Option<serde_json::Value> {
    v.as_str().and_then(|s| serde_json::from_str(s).ok())
}

/// Writes every live record; returns (knowledge, conversations) counts.
pub async fn export(store: &Store, what: ExportWhat, out: &mut dyn Write) -> Result<(u64, u64)> {
    let mut counts = (0u64, 0u64);
    if matches!(what, ExportWhat::Knowledge | ExportWhat::All) {
        let mut after = 0i64;
        loop {
            let q = store
                .read(move |r| r.query("SELECT rowid, id, category, topic, content, tags, metadata, region, created_at FROM knowledge WHERE deleted = 0 AND rowid > ?1 ORDER BY rowid LIMIT ?2", vec![after.into(), PAGE.into()]))
                .await?;
            for r in &q.rows {
                after = r[0].as_i64().unwrap_or(after);
                let k = Knowledge {
                    id: r[1].as_str().unwrap_or_default().into(),
                    category: r[2].as_str().unwrap_or_default().into(),
                    topic: r[3].as_str().unwrap_or_default().into(),
                    content: r[4].as_str().unwrap_or_default().into(),
                    tags: r[5].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default(),
                    metadata: json_col(&r[6]),
                    region: r[7].as_str().map(str::to_string),
                    created_at: r[8].as_i64().unwrap_or(0),
                };
                write_line(out, &Line::Knowledge(k))?;
                counts.0 += 1;
            }
            if (q.rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    if matches!(what, ExportWhat::Conversations | ExportWhat::All) {
        let mut after = 0i64;
        loop {
            let q = store
                .read(move |r| r.query("SELECT rowid, id, session_id, role, content, metadata, created_at FROM conversations WHERE rowid > ?1 ORDER BY rowid LIMIT ?2", vec![after.into(), PAGE.into()]))
                .await?;
            for r in &q.rows {
                after = r[0].as_i64().unwrap_or(after);
                let m = Message {
                    id: r[1].as_str().unwrap_or_default().into(),
                    session_id: r[2].as_str().unwrap_or_default().into(),
                    role: r[3].as_str().unwrap_or_default().into(),
                    content: r[4].as_str().unwrap_or_default().into(),
                    metadata: json_col(&r[5]),
                    created_at: r[6].as_i64().unwrap_or(0),
                };
                write_line(out, &Line::Conversation(m))?;
                counts.1 += 1;
            }
            if (q.rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    out.flush()?;
    Ok(counts)
}

fn write_line(out: &mut dyn Write, l: &Line) -> Result<()> {
    let s = serde_json::to_string(l).map_err(|e| CliError::Invalid(format!("cannot encode record: {e}")))?;
    writeln!(out, "{s}")?;
    Ok(())
}

/// Counts of an import.
#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub knowledge: u64,
    pub conversations: u64,
    /// Records whose id was already stored (left as they were).
    pub already_present: u64,
    pub lines: u64,
}

/// Reads JSON Lines and stores each record (validated first; the whole file is checked
/// before anything is written, so a bad line writes nothing).
pub async fn import(store: &Store, input: &mut dyn BufRead, name: &str) -> Result<ImportSummary> {
    let limits = store.config().limits.clone();
    // Knowledge records take edgeswarm-search's insert path (dedup included).
    edgeswarm_search::knowledge::install(store);
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| CliError::file(name, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let l: Line = serde_json::from_str(&line)
            .map_err(|e| CliError::Invalid(format!("{name}:{n}: not a record written by `edgeswarm export`: {e}")))?;
        let rec: Record = match l {
            Line::Knowledge(k) => k.into(),
            Line::Conversation(m) => m.into(),
        };
        rec.validate(&limits).map_err(|e| CliError::Invalid(format!("{name}:{n}: {e}")))?;
        records.push(rec);
    }
    let mut s = ImportSummary {
        lines: records.len() as u64,
        ..Default::default()
    };
    for chunk in records.chunks(1024) {
        let mut acks = Vec::with_capacity(chunk.len());
        for r in chunk {
            let is_k = matches!(r, Record::Knowledge(_));
            acks.push((is_k, store.enqueue_record(r.clone()).await?));
        }
        for (is_k, ack) in acks {
            match ack.wait().await? {
                Inserted { duplicate: true } => s.already_present += 1,
                _ if is_k => s.knowledge += 1,
                _ => s.conversations += 1,
            }
        }
    }
    Ok(s)
}

pub async fn run_export(a: ExportArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let store = open::store(&settings, true).await?;
    let r: Result<()> = async {
        match &a.output {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| CliError::file(p.display(), e))?;
                let (k, c) = export(&store, a.what, &mut BufWriter::new(f)).await?;
                eprintln!("exported {k} knowledge entries and {c} conversation messages to {}", p.display());
            }
            None => {
                let stdout = std::io::stdout();
                let mut lock = BufWriter::new(stdout.lock());
                export(&store, a.what, &mut lock).await?;
            }
        }
        Ok(())
    }
    .await;
    let closed = store.shutdown().await;
    r?;
    closed?;
    Ok(())
}

pub async fn run_import(a: ImportArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let name = a.input.display().to_string();
    let mut reader: Box<dyn BufRead> = if name == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&a.input).map_err(|e| CliError::file(&name, e))?,
        ))
    };
    let store = open::store(&settings, false).await?;
    let r = import(&store, &mut *reader, &name).await;
    let closed = store.shutdown().await;
    let s = r?;
    closed?;
    if a.json {
        println!("{}", serde_json::to_string(&s).unwrap_or_default());
    } else {
        println!(
            "imported {} knowledge entries and {} conversation messages; {} already present (left unchanged)",
            s.knowledge, s.conversations, s.already_present
        );
    }
    Ok(())
}
