//! `edgeswarm export` / `import`: knowledge and conversations as JSON Lines, one record a
//! line, `{"type":"knowledge",...}` or `{"type":"conversation",...}`. Ids are kept, so
//! importing the same file twice stores each record once (idempotent by id).

use std::io::{BufRead, BufWriter, Write};

use edgeswarm::{Knowledge, Message, Record, Swarm};
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

const PAGE: usize = 1000;

/// Writes every live record; returns (knowledge, conversations) counts.
pub async fn export(swarm: &Swarm, what: ExportWhat, out: &mut dyn Write) -> Result<(u64, u64)> {
    let mut counts = (0u64, 0u64);
    if matches!(what, ExportWhat::Knowledge | ExportWhat::All) {
        let mut cursor: Option<String> = None;
        loop {
            let page = swarm.list_knowledge(cursor.as_deref(), PAGE).await?;
            for e in page.items {
                let k = Knowledge {
                    id: e.id,
                    category: e.category,
                    topic: e.topic,
                    content: e.content,
                    tags: e.tags,
                    metadata: e.metadata,
                    region: e.region,
                    created_at: e.created_at,
                };
                write_line(out, &Line::Knowledge(k))?;
                counts.0 += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    if matches!(what, ExportWhat::Conversations | ExportWhat::All) {
        let mut cursor: Option<String> = None;
        loop {
            let page = swarm.list_conversations(cursor.as_deref(), PAGE).await?;
            for m in page.items {
                write_line(out, &Line::Conversation(m))?;
                counts.1 += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
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
pub async fn import(swarm: &Swarm, input: &mut dyn BufRead, name: &str) -> Result<ImportSummary> {
    let limits = swarm.limits().clone();
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
    let lines = records.len() as u64;
    let c = swarm.import_records(records).await?;
    Ok(ImportSummary {
        knowledge: c.knowledge,
        conversations: c.conversations,
        already_present: c.already_present,
        lines,
    })
}

pub async fn run_export(a: ExportArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let swarm = open::swarm(&settings, true).await?;
    let r: Result<()> = async {
        match &a.output {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| CliError::file(p.display(), e))?;
                let (k, c) = export(&swarm, a.what, &mut BufWriter::new(f)).await?;
                eprintln!("exported {k} knowledge entries and {c} conversation messages to {}", p.display());
            }
            None => {
                let stdout = std::io::stdout();
                let mut lock = BufWriter::new(stdout.lock());
                export(&swarm, a.what, &mut lock).await?;
            }
        }
        Ok(())
    }
    .await;
    let closed = swarm.shutdown().await;
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
    let swarm = open::swarm(&settings, false).await?;
    let r = import(&swarm, &mut *reader, &name).await;
    let closed = swarm.shutdown().await;
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
