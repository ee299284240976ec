//! `edgeswarm export` / `import`: knowledge and conversations as JSON Lines, one record a
//! line, `{"type":"knowledge",...}` or `{"type":"conversation",...}`. Ids are kept, so
//! importing the same file twice stores each record once (idempotent by id).
//!
//! Export to a file writes a temporary file beside it and renames it into place once
//! complete (`edgeswarm::files::AtomicFile`). Import streams its input in bounded
//! batches and records its progress after each one, so an interrupted import continues
//! where it stopped (see `import`).

use std::io::{BufRead, BufWriter, Seek, SeekFrom, Write};

use edgeswarm::{files, ImportProgress, Knowledge, Message, Record, Swarm};
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
    /// Records read from the source (over every run of a resumed import).
    pub lines: u64,
    /// The line this run started at, when it continued an interrupted import.
    pub resumed_from_line: Option<u64>,
}

/// How an import reads and commits.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Records per committed batch. Default 1000.
    pub batch_records: usize,
    /// Source bytes per committed batch (a batch closes at whichever comes first).
    /// Default 4 MiB: with the line cap, this bounds the memory an import holds.
    pub batch_bytes: usize,
    /// The longest line accepted, in bytes. Default 16 MiB.
    pub max_line_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_records: 1000,
            batch_bytes: 4 << 20,
            max_line_bytes: 16 << 20,
        }
    }
}

/// FNV-1a 64: the import's prefix hash (is this still the file an interrupted import
/// read?). Not cryptographic; it only has to notice an edited or different file.
#[derive(Debug, Clone, Copy)]
pub struct PrefixHash(u64);

impl Default for PrefixHash {
    fn default() -> Self {
        PrefixHash(0xcbf2_9ce4_8422_2325)
    }
}

impl PrefixHash {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
    pub fn from_hex(s: &str) -> Option<PrefixHash> {
        u64::from_str_radix(s, 16).ok().map(PrefixHash)
    }
}

/// Reads one line (newline included, if any) into `buf`, hashing what it consumes.
/// Returns the bytes consumed (0 at the end of input); fails once a line passes `cap`
/// bytes, so one huge line cannot take all memory.
fn read_line_capped(input: &mut dyn BufRead, buf: &mut Vec<u8>, cap: usize, hash: &mut PrefixHash) -> std::io::Result<usize> {
    buf.clear();
    let mut total = 0;
    loop {
        let avail = input.fill_buf()?;
        if avail.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (&avail[..=i], true),
            None => (avail, false),
        };
        let n = chunk.len();
        if buf.len() + n > cap.saturating_add(1) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line is longer than {cap} bytes"),
            ));
        }
        hash.update(chunk);
        buf.extend_from_slice(chunk);
        input.consume(n);
        total += n;
        if done {
            return Ok(total);
        }
    }
}

/// Streams JSON Lines into the store: reads a batch of lines (bounded in records and
/// bytes), checks every record of it, stores the batch through the typed write path and
/// waits for its commit, then records how far it got under `source` (when given) and
/// reads the next. Memory stays bounded whatever the input's size. A bad line fails the
/// import naming its line; nothing of its batch is written, earlier batches stay, and
/// running the same import again continues after them. `start` is where a resumed
/// import begins (the input must already be positioned at `start.offset`).
pub async fn import(
    swarm: &Swarm,
    input: &mut dyn BufRead,
    name: &str,
    source: Option<&str>,
    start: ImportProgress,
    opts: ImportOptions,
) -> Result<ImportSummary> {
    let limits = swarm.limits().clone();
    let resumed_from_line = (start.offset > 0).then_some(start.lines + 1);
    let mut hash = PrefixHash::from_hex(&start.prefix_hash).unwrap_or_default();
    let mut done = start;
    let (mut offset, mut line_no, mut records) = (done.offset, done.lines, done.records);
    let mut buf = Vec::new();
    let stopped = |done: &ImportProgress| match done.lines {
        0 => "nothing was imported".to_string(),
        n => format!(
            "lines 1-{n} were imported; fix this line and run the same import again to continue from line {}",
            n + 1
        ),
    };
    loop {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut eof = false;
        while batch.len() < opts.batch_records.max(1) && batch_bytes < opts.batch_bytes {
            let n = read_line_capped(input, &mut buf, opts.max_line_bytes, &mut hash)
                .map_err(|e| CliError::file(format!("{name}:{}", line_no + 1), format!("{e}; {}", stopped(&done))))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            offset += n as u64;
            batch_bytes += n;
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let l: Line = serde_json::from_slice(text).map_err(|e| {
                CliError::Invalid(format!(
                    "{name}:{line_no}: not a record written by `edgeswarm export`: {e}; {}",
                    stopped(&done)
                ))
            })?;
            let rec: Record = match l {
                Line::Knowledge(k) => k.into(),
                Line::Conversation(m) => m.into(),
            };
            rec.validate(&limits)
                .map_err(|e| CliError::Invalid(format!("{name}:{line_no}: {e}; {}", stopped(&done))))?;
            batch.push(rec);
            records += 1;
        }
        if !batch.is_empty() {
            let c = swarm.import_records(batch).await?;
            done.counts.add(&c);
        }
        done.offset = offset;
        done.lines = line_no;
        done.records = records;
        done.prefix_hash = hash.hex();
        if eof {
            break;
        }
        if let Some(s) = source {
            swarm.set_import_progress(s, Some(&done)).await?;
        }
    }
    if let Some(s) = source {
        swarm.set_import_progress(s, None).await?;
    }
    Ok(ImportSummary {
        knowledge: done.counts.knowledge,
        conversations: done.counts.conversations,
        already_present: done.counts.already_present,
        lines: done.records,
        resumed_from_line,
    })
}

pub async fn run_export(a: ExportArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    // Checked before the swarm opens: a refused path leaves nothing behind.
    let mut file = match &a.output {
        Some(p) => {
            files::refuse_database_path(&settings.store.path, p).map_err(|e| CliError::Invalid(e.to_string()))?;
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !d.is_dir() {
                    return Err(CliError::file(
                        p.display(),
                        format!("directory {} does not exist; create it first", d.display()),
                    ));
                }
            }
            Some((p, files::AtomicFile::create(p).map_err(|e| CliError::file(p.display(), e))?))
        }
        None => None,
    };
    let swarm = open::swarm(&settings, true).await?;
    let r: Result<()> = async {
        match file.take() {
            // Written to a temporary file beside the output and renamed over it once
            // complete and synced: an existing file is never truncated, and an error
            // leaves it as it was (the temporary file is removed when `f` drops).
            Some((p, mut f)) => {
                let (k, c) = export(&swarm, a.what, &mut f).await.map_err(|e| match e {
                    CliError::Io(e) => CliError::file(p.display(), format!("{e}; the export was discarded and the file left as it was")),
                    e => e,
                })?;
                f.commit(true).map_err(|e| CliError::file(p.display(), e))?;
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

/// Reads exactly `n` bytes from `input` into `hash`; false if the input ends first.
fn hash_prefix(input: &mut dyn BufRead, mut n: u64, hash: &mut PrefixHash) -> std::io::Result<bool> {
    while n > 0 {
        let avail = input.fill_buf()?;
        if avail.is_empty() {
            return Ok(false);
        }
        let take = avail.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        hash.update(&avail[..take]);
        input.consume(take);
        n -= take as u64;
    }
    Ok(true)
}

pub async fn run_import(a: ImportArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let name = a.input.display().to_string();
    if name == "-" {
        let swarm = open::swarm(&settings, false).await?;
        let mut reader = std::io::BufReader::new(std::io::stdin());
        let r = import(
            &swarm,
            &mut reader,
            &name,
            None,
            ImportProgress::default(),
            ImportOptions::default(),
        )
        .await;
        let closed = swarm.shutdown().await;
        let s = r?;
        closed?;
        return print_summary(&s, a.json);
    }
    let f = std::fs::File::open(&a.input).map_err(|e| CliError::file(&name, e))?;
    // Progress is kept under the file's canonical path, so `./x.jsonl` and `/abs/x.jsonl`
    // resume each other.
    let source = std::fs::canonicalize(&a.input)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| name.clone());
    let mut reader = std::io::BufReader::with_capacity(256 << 10, f);
    let swarm = open::swarm(&settings, false).await?;
    let r = async {
        let mut start = ImportProgress::default();
        if let Some(p) = swarm.import_progress(&source).await? {
            if a.restart {
                eprintln!("{name}: starting over (--restart); the records already stored are left as they are");
            } else {
                let mut h = PrefixHash::default();
                let same = hash_prefix(&mut reader, p.offset, &mut h).map_err(|e| CliError::file(&name, e))? && h.hex() == p.prefix_hash;
                if same {
                    eprintln!(
                        "{name}: continuing an interrupted import at line {} ({} records were stored before)",
                        p.lines + 1,
                        p.records
                    );
                    start = p;
                } else {
                    eprintln!("{name}: the file changed since an interrupted import of it; importing it from the start");
                    reader.seek(SeekFrom::Start(0)).map_err(|e| CliError::file(&name, e))?;
                }
            }
        }
        import(&swarm, &mut reader, &name, Some(&source), start, ImportOptions::default()).await
    }
    .await;
    let closed = swarm.shutdown().await;
    let s = r?;
    closed?;
    print_summary(&s, a.json)
}

fn print_summary(s: &ImportSummary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
    } else {
        println!(
            "imported {} knowledge entries and {} conversation messages; {} already present (left unchanged)",
            s.knowledge, s.conversations, s.already_present
        );
    }
    Ok(())
}
