//! `edgeswarm.toml`: one file for everything the swarm builder takes.
//!
//! Precedence, lowest first: built-in defaults < `edgeswarm.toml` < `EDGESWARM_*`
//! environment variables < command-line flags. The file is found at `--config PATH`
//! (or `EDGESWARM_CONFIG`), else `./edgeswarm.toml` when it exists; with neither the
//! defaults apply. Every key, its default and its meaning is in `edgeswarm.toml.example`
//! at the repository root.
//!
//! Checking reports every problem with its line and column: syntax errors, unknown keys
//! (typos), wrong types, out-of-range values, duplicate region names and bad region URLs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgeswarm::{AgentOptions, Durability, StoreConfig, SwarmBuilder};
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::cli::DbOpts;
use crate::error::{CliError, Result};

/// The default config file name, looked up in the current directory.
pub const DEFAULT_CONFIG: &str = "edgeswarm.toml";

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file, with where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// 1-based line (0 when the problem has no position).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub message: String,
}

impl Problem {
    /// `path:line:col: error: message`
    pub fn render(&self, path: &Path) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            format!("{}: {sev}: {}", path.display(), self.message)
        } else {
            format!("{}:{}:{}: {sev}: {}", path.display(), self.line, self.column, self.message)
        }
    }
}

/// One region as configured: plain data, validated here, run by edgeswarm-sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// Unique name; the key in `edge_replicas`.
    pub name: String,
    /// `file:<path>` (a local region file) or `http(s)://host[:port]` (a Hrana server).
    pub url: String,
    /// Simulated round-trip latency of a `file:` region, in ms. Default 0.
    pub latency_ms: u64,
    /// Name of the environment variable that holds an HTTP region's bearer token. The
    /// token itself never goes in the file and is never logged.
    pub token_env: Option<String>,
    /// PEM file with the CA of an `https://` region's certificate (a private CA); only
    /// it is trusted for that region. `None`: the system trust roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines on stderr (default).
    #[default]
    Text,
    /// One JSON object per line on stderr.
    Json,
}

/// The effective settings after defaults, file, environment and flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file these came from, if any.
    pub config_path: Option<PathBuf>,
    pub store: StoreConfig,
    pub agents: AgentOptions,
    /// How often expired kv entries are deleted for good. Default 1 s.
    pub kv_sweep_interval: Duration,
    pub regions: Vec<RegionSpec>,
    /// Prometheus endpoint address; none by default.
    pub metrics_addr: Option<SocketAddr>,
    /// From `[observability] log_format`; the `--log-format` flag wins.
    pub log_format: Option<LogFormat>,
    /// From `[search] embedder`; `--embedder` / `EDGESWARM_EMBEDDER` win. Default none
    /// (lexical search, no vector work).
    pub embedder: edgeswarm::EmbedderChoice,
    /// From `[mcp]`: origins and caps of `edgeswarm mcp --http`; its flags win.
    pub mcp: McpSettings,
}

/// `[mcp]`: what `edgeswarm mcp --http` allows and caps. Flags win over these; tokens are
/// never read from the file (`--token` / `EDGESWARM_MCP_TOKEN`).
#[derive(Debug, Clone, PartialEq)]
pub struct McpSettings {
    /// Browser origins allowed besides loopback ones, normalised; `--allow-origin` adds
    /// more. Default none.
    pub allow_origins: Vec<String>,
    /// Most open HTTP sessions. Default 64.
    pub max_sessions: usize,
    /// Most HTTP requests in flight at once. Default 32.
    pub max_concurrent_requests: usize,
    /// Time limit of one tool call. Default 30 s.
    pub request_timeout: Duration,
    /// An HTTP session idle this long is closed. Default 300 s.
    pub session_idle_timeout: Duration,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            allow_origins: Vec::new(),
            max_sessions: edgeswarm_mcp::DEFAULT_MAX_SESSIONS,
            max_concurrent_requests: edgeswarm_mcp::DEFAULT_MAX_CONCURRENT_REQUESTS,
            request_timeout: edgeswarm_mcp::DEFAULT_REQUEST_TIMEOUT,
            session_idle_timeout: edgeswarm_mcp::DEFAULT_SESSION_IDLE_TIMEOUT,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_path: None,
            store: StoreConfig::default(),
            agents: AgentOptions::default(),
            kv_sweep_interval: Duration::from_secs(1),
            regions: Vec::new(),
            metrics_addr: None,
            log_format: None,
            embedder: edgeswarm::EmbedderChoice::None,
            mcp: McpSettings::default(),
        }
    }
}

impl Settings {
    /// A swarm builder with every setting applied (regions are passed separately to
    /// the sync layer once it exists).
    pub fn builder(&self) -> SwarmBuilder {
        edgeswarm::Swarm::builder()
            .store_config(self.store.clone())
            .agent_defaults(self.agents.clone())
            .kv_sweep_interval(self.kv_sweep_interval)
            .embedder_choice(self.embedder)
            .regions(self.regions.iter().map(|r| edgeswarm::RegionConfig {
                name: r.name.clone(),
                url: r.url.clone(),
                latency_ms: r.latency_ms,
                token_env: r.token_env.clone(),
                ca_file: r.ca_file.clone(),
            }))
    }

    /// The effective settings as an `edgeswarm.toml` document.
    pub fn to_toml(&self) -> String {
        let s = &self.store;
        let l = &s.limits;
        let mut out = String::new();
        out.push_str(&format!("db = {}\n", toml_str(&s.path.display().to_string())));
        out.push_str(&format!("durability = \"{}\"\n", s.durability.as_str()));
        out.push_str(&format!(
            "queue_capacity = {}\nread_pool_size = {}\n",
            s.queue_capacity, s.read_pool_size
        ));
        out.push_str(&format!(
            "\n[batch]\nmax_rows = {}\nmax_bytes = {}\nmax_linger_ms = {}\n",
            s.batch.max_rows,
            s.batch.max_bytes,
            s.batch.max_linger.as_millis()
        ));
        out.push_str(&format!(
            "\n[limits]\nmax_content_bytes = {}\nmax_metadata_bytes = {}\nmax_name_bytes = {}\nmax_tags = {}\nmax_sql_bytes = {}\nmax_result_rows = {}\nmax_result_bytes = {}\nquery_timeout_ms = {}\n",
            l.max_content_bytes, l.max_metadata_bytes, l.max_name_bytes, l.max_tags, l.max_sql_bytes, l.max_result_rows, l.max_result_bytes, l.query_timeout.as_millis()
        ));
        out.push_str(&format!(
            "\n[agents]\nmailbox = {}\nmax_restarts = {}\nrestart_window_ms = {}\nrecord_task_metrics = {}\nkv_sweep_interval_ms = {}\n",
            self.agents.mailbox,
            self.agents.restart.max_restarts,
            self.agents.restart.within.as_millis(),
            self.agents.record_task_metrics,
            self.kv_sweep_interval.as_millis()
        ));
        let ch = &s.channels;
        out.push_str(&format!(
            "\n[channels]\nread_queue = {}\ncommit_events = {}\nsearch_mailbox = {}\nswarm_events = {}\nkv_watch = {}\nregion_link = {}\n",
            ch.read_queue, ch.commit_events, ch.search_mailbox, ch.swarm_events, ch.kv_watch, ch.region_link
        ));
        let r = &s.retention;
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis()).unwrap_or(0);
        out.push_str(&format!(
            "\n[retention]\nconversations_ms = {}\nmetrics_ms = {}\nsweep_interval_ms = {}\nbatch_rows = {}\nsweep_batches = {}\n",
            ms(r.conversations),
            ms(r.metrics),
            r.sweep_interval.as_millis(),
            r.batch_rows,
            r.sweep_batches
        ));
        let k = &s.cache;
        out.push_str(&format!(
            "\n[cache]\nwriter_kib = {}\nreader_kib = {}\nreader_mmap_bytes = {}\n",
            k.writer_kib, k.reader_kib, k.reader_mmap_bytes
        ));
        out.push_str(&format!("\n[search]\nembedder = \"{}\"\n", self.embedder.as_str()));
        out.push_str("\n[observability]\n");
        out.push_str(&format!(
            "log_format = \"{}\"\n",
            match self.log_format.unwrap_or_default() {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
        ));
        if let Some(a) = self.metrics_addr {
            out.push_str(&format!("metrics_addr = \"{a}\"\n"));
        }
        let m = &self.mcp;
        out.push_str(&format!(
            "\n[mcp]\nallow_origins = [{}]\nmax_sessions = {}\nmax_concurrent_requests = {}\nrequest_timeout_ms = {}\nsession_idle_timeout_ms = {}\n",
            m.allow_origins.iter().map(|o| toml_str(o)).collect::<Vec<_>>().join(", "),
            m.max_sessions,
            m.max_concurrent_requests,
            m.request_timeout.as_millis(),
            m.session_idle_timeout.as_millis()
        ));
        for r in &self.regions {
            out.push_str(&format!(
                "\n[[regions]]\nname = {}\nurl = {}\nlatency_ms = {}\n",
                toml_str(&r.name),
                toml_str(&r.url),
                r.latency_ms
            ));
            if let Some(t) = &r.token_env {
                out.push_str(&format!("token_env = {}\n", toml_str(t)));
            }
            if let Some(c) = &r.ca_file {
                out.push_str(&format!("ca_file = {}\n", toml_str(&c.display().to_string())));
            }
        }
        out
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// ---- the file's shape ---------------------------------------------------------------

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    db: S<String>,
    durability: S<String>,
    queue_capacity: S<i64>,
    read_pool_size: S<i64>,
    #[serde(default)]
    batch: BatchFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    agents: AgentsFile,
    #[serde(default)]
    observability: ObservabilityFile,
    #[serde(default)]
    channels: ChannelsFile,
    #[serde(default)]
    retention: RetentionFile,
    #[serde(default)]
    cache: CacheFile,
    #[serde(default)]
    search: SearchFile,
    #[serde(default)]
    mcp: McpFile,
    #[serde(default)]
    regions: Vec<Spanned<RegionFile>>,
}

#[derive(Debug, Default, Deserialize)]
struct BatchFile {
    max_rows: S<i64>,
    max_bytes: S<i64>,
    max_linger_ms: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct LimitsFile {
    max_content_bytes: S<i64>,
    max_metadata_bytes: S<i64>,
    max_name_bytes: S<i64>,
    max_tags: S<i64>,
    max_sql_bytes: S<i64>,
    max_result_rows: S<i64>,
    max_result_bytes: S<i64>,
    query_timeout_ms: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct AgentsFile {
    mailbox: S<i64>,
    max_restarts: S<i64>,
    restart_window_ms: S<i64>,
    record_task_metrics: S<bool>,
    kv_sweep_interval_ms: S<i64>,
}

/// `[retention]`: one key per `edgeswarm_core::RetentionConfig` field (0 = keep forever).
#[derive(Debug, Default, Deserialize)]
struct RetentionFile {
    conversations_ms: S<i64>,
    metrics_ms: S<i64>,
    sweep_interval_ms: S<i64>,
    batch_rows: S<i64>,
    sweep_batches: S<i64>,
}

/// `[cache]`: one key per `edgeswarm_core::CacheConfig` field.
#[derive(Debug, Default, Deserialize)]
struct CacheFile {
    writer_kib: S<i64>,
    reader_kib: S<i64>,
    reader_mmap_bytes: S<i64>,
}

/// `[channels]`: one key per `edgeswarm_core::ChannelConfig` field.
#[derive(Debug, Default, Deserialize)]
struct ChannelsFile {
    read_queue: S<i64>,
    commit_events: S<i64>,
    search_mailbox: S<i64>,
    swarm_events: S<i64>,
    kv_watch: S<i64>,
    region_link: S<i64>,
}

/// `[search]`: which embedder vector and hybrid search use.
#[derive(Debug, Default, Deserialize)]
struct SearchFile {
    /// `none` (default), `hash` or `semantic`.
    embedder: S<String>,
}

/// `[mcp]`: one key per [`McpSettings`] field.
#[derive(Debug, Default, Deserialize)]
struct McpFile {
    allow_origins: Option<Vec<Spanned<String>>>,
    max_sessions: S<i64>,
    max_concurrent_requests: S<i64>,
    request_timeout_ms: S<i64>,
    session_idle_timeout_ms: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct ObservabilityFile {
    log_format: S<String>,
    metrics_addr: S<String>,
}

#[derive(Debug, Deserialize)]
struct RegionFile {
    name: S<String>,
    url: S<String>,
    latency_ms: S<i64>,
    token_env: S<String>,
    ca_file: S<String>,
}

// ---- checking -----------------------------------------------------------------------

/// Result of checking a config text.
#[derive(Debug, Default)]
pub struct Checked {
    pub settings: Settings,
    pub problems: Vec<Problem>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }
}

struct Ctx<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn at(&mut self, severity: Severity, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(s) => line_col(self.text, s.start),
            None => (0, 0),
        };
        self.problems.push(Problem {
            severity,
            line,
            column,
            message: message.into(),
        });
    }
    fn err(&mut self, span: std::ops::Range<usize>, m: impl Into<String>) {
        self.at(Severity::Error, Some(span), m)
    }
    fn warn(&mut self, span: std::ops::Range<usize>, m: impl Into<String>) {
        self.at(Severity::Warning, Some(span), m)
    }

    /// An integer in [min, max], or a problem at its span.
    fn int(&mut self, v: &S<i64>, key: &str, min: i64, max: i64) -> Option<u64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(v.span(), format!("`{key}` = {n} is out of range; use a value from {min} to {max}"));
            None
        } else {
            Some(n as u64)
        }
    }
}

/// 1-based (line, column) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before[i + 1..].chars().count())
        .unwrap_or_else(|| before.chars().count())
        + 1;
    (line, col)
}

/// Checks a config text and builds settings from it (defaults where keys are absent).
pub fn check_str(text: &str) -> Checked {
    let mut cx = Ctx {
        text,
        problems: Vec::new(),
    };
    // 1. Syntax: every error the parser can recover from.
    let (table, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        cx.at(Severity::Error, e.span(), format!("TOML syntax: {}", e.message().trim()));
    }
    if !errors.is_empty() {
        return Checked {
            settings: Settings::default(),
            problems: cx.problems,
        };
    }
    // 2. Types, and unknown keys (typos): serde skips a key no struct field names, and
    //    `serde_ignored` reports each one with its path.
    let mut ignored: Vec<Vec<Seg>> = Vec::new();
    let parsed = toml::de::Deserializer::parse(text)
        .and_then(|d| serde_ignored::deserialize::<_, _, FileConfig>(d, |path| ignored.push(segments(&path))));
    for path in &ignored {
        unknown_key(&mut cx, table.get_ref(), path);
    }
    let file = match parsed {
        Ok(f) => f,
        Err(e) => {
            cx.at(Severity::Error, e.span(), e.message().trim().to_string());
            cx.problems.sort_by_key(|p| (p.line, p.column));
            return Checked {
                settings: Settings::default(),
                problems: cx.problems,
            };
        }
    };
    // 3. Values.
    let settings = apply_file(&mut cx, file);
    cx.problems.sort_by_key(|p| (p.line, p.column));
    Checked {
        settings,
        problems: cx.problems,
    }
}

/// One step of a key's path in the document.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    /// A key of a table.
    Key(String),
    /// An element of an array of tables.
    Index(usize),
}

/// A `serde_ignored` path as document steps (serde's wrappers and the private keys of
/// `Spanned` left out).
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Seg::Index(*index)),
        Path::Map { key, .. } if !key.starts_with("$__serde_spanned_private") => out.push(Seg::Key(key.clone())),
        _ => {}
    }
    out
}

/// The field names of a derived `Deserialize` struct, read from serde itself (the names
/// it passes to `deserialize_struct`), so no list of keys is kept by hand.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Reports one unknown key at its place in the document, with a suggestion.
fn unknown_key(cx: &mut Ctx<'_>, root: &DeTable<'_>, path: &[Seg]) {
    let Some((Seg::Key(name), parents)) = path.split_last() else {
        return;
    };
    // The keys allowed where this one sits: the fields of the struct that table maps to.
    let (known, section): (&[&str], &str) = match parents.first() {
        None => (fields_of::<FileConfig>(), ""),
        Some(Seg::Key(k)) => match k.as_str() {
            "batch" => (fields_of::<BatchFile>(), "batch"),
            "limits" => (fields_of::<LimitsFile>(), "limits"),
            "agents" => (fields_of::<AgentsFile>(), "agents"),
            "observability" => (fields_of::<ObservabilityFile>(), "observability"),
            "channels" => (fields_of::<ChannelsFile>(), "channels"),
            "retention" => (fields_of::<RetentionFile>(), "retention"),
            "cache" => (fields_of::<CacheFile>(), "cache"),
            "search" => (fields_of::<SearchFile>(), "search"),
            "mcp" => (fields_of::<McpFile>(), "mcp"),
            "regions" => (fields_of::<RegionFile>(), "[regions]"),
            _ => (&[], k.as_str()),
        },
        Some(Seg::Index(_)) => (&[], ""),
    };
    // Find the key in the parsed document for its line and column.
    let mut table = Some(root);
    let mut value: Option<&DeValue<'_>> = None;
    for seg in parents {
        value = match (seg, value) {
            (Seg::Key(k), _) => table.and_then(|t| t.get(k.as_str())).map(|v| v.get_ref()),
            (Seg::Index(i), Some(DeValue::Array(items))) => items.get(*i).map(|v| v.get_ref()),
            _ => None,
        };
        table = match value {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    let span = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == name.as_str()).map(|(k, _)| k.span()));
    let secret = name == "token" || name.ends_with("_token") || name == "password";
    let hint = if secret && section == "mcp" {
        " Never put secrets in the file: the MCP server's token comes from EDGESWARM_MCP_TOKEN (or --token).".to_string()
    } else if secret {
        " Never put secrets in the file: set `token_env` to the name of an environment variable that holds the token.".to_string()
    } else {
        match closest(name, known) {
            Some(c) => format!(" Did you mean `{c}`?"),
            None => format!(" Known keys here: {}.", known.join(", ")),
        }
    };
    let message = format!(
        "unknown key `{name}`{}.{hint}",
        if section.is_empty() {
            String::new()
        } else {
            format!(" in [{section}]")
        }
    );
    cx.at(Severity::Error, span, message);
}

/// The known key within edit distance 2 (Levenshtein), if any.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

const MAX_USIZE: i64 = i64::MAX;

fn apply_file(cx: &mut Ctx<'_>, f: FileConfig) -> Settings {
    let mut s = Settings::default();
    if let Some(db) = &f.db {
        if db.get_ref().trim().is_empty() {
            cx.err(db.span(), "`db` is empty; give a file path such as \"./edgeswarm.db\"");
        } else if db.get_ref() == ":memory:" {
            cx.err(
                db.span(),
                "`db` = \":memory:\" is not durable and other processes cannot see it; give a file path",
            );
        } else {
            let p = PathBuf::from(db.get_ref());
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    cx.warn(
                        db.span(),
                        format!(
                            "the directory {} does not exist yet; create it before starting (mkdir -p {})",
                            parent.display(),
                            parent.display()
                        ),
                    );
                }
            }
            s.store.path = p;
        }
    }
    if let Some(d) = &f.durability {
        match parse_durability(d.get_ref()) {
            Some(v) => s.store.durability = v,
            None => cx.err(d.span(), format!("`durability` = \"{}\" is not one of \"full\" (acks survive power loss; the default) or \"normal\" (acks survive a process crash)", d.get_ref())),
        }
        if d.get_ref() == "normal" {
            cx.warn(
                d.span(),
                "durability \"normal\": an acked write can be lost on power loss; use \"full\" unless you measured that you need the speed",
            );
        }
    }
    if let Some(n) = cx.int(&f.queue_capacity, "queue_capacity", 1, 1 << 24) {
        s.store.queue_capacity = n as usize;
    }
    if let Some(n) = cx.int(&f.read_pool_size, "read_pool_size", 1, 64) {
        s.store.read_pool_size = n as usize;
    }
    let b = &f.batch;
    if let Some(n) = cx.int(&b.max_rows, "batch.max_rows", 1, 1_000_000) {
        s.store.batch.max_rows = n as usize;
    }
    if let Some(n) = cx.int(&b.max_bytes, "batch.max_bytes", 1024, 1 << 30) {
        s.store.batch.max_bytes = n as usize;
    }
    if let Some(n) = cx.int(&b.max_linger_ms, "batch.max_linger_ms", 0, 10_000) {
        if n > 100 {
            if let Some(v) = &b.max_linger_ms {
                cx.warn(
                    v.span(),
                    format!("batch.max_linger_ms = {n} adds up to {n} ms to every ack when the queue is quiet; 0 to 10 is usual"),
                );
            }
        }
        s.store.batch.max_linger = Duration::from_millis(n);
    }
    let l = &f.limits;
    let lim = &mut s.store.limits;
    if let Some(n) = cx.int(&l.max_content_bytes, "limits.max_content_bytes", 1, 1 << 30) {
        lim.max_content_bytes = n as usize;
    }
    if let Some(n) = cx.int(&l.max_metadata_bytes, "limits.max_metadata_bytes", 2, 1 << 30) {
        lim.max_metadata_bytes = n as usize;
    }
    if let Some(n) = cx.int(&l.max_name_bytes, "limits.max_name_bytes", 1, 1 << 20) {
        lim.max_name_bytes = n as usize;
    }
    if let Some(n) = cx.int(&l.max_tags, "limits.max_tags", 0, 1 << 20) {
        lim.max_tags = n as usize;
    }
    if let Some(n) = cx.int(&l.max_sql_bytes, "limits.max_sql_bytes", 16, 1 << 30) {
        lim.max_sql_bytes = n as usize;
    }
    if let Some(n) = cx.int(&l.max_result_rows, "limits.max_result_rows", 1, MAX_USIZE) {
        lim.max_result_rows = n as usize;
    }
    if let Some(n) = cx.int(&l.max_result_bytes, "limits.max_result_bytes", 1024, 1 << 30) {
        lim.max_result_bytes = n as usize;
    }
    if let Some(n) = cx.int(&l.query_timeout_ms, "limits.query_timeout_ms", 1, 3_600_000) {
        lim.query_timeout = Duration::from_millis(n);
    }
    let a = &f.agents;
    if let Some(n) = cx.int(&a.mailbox, "agents.mailbox", 1, 1 << 24) {
        s.agents.mailbox = n as usize;
    }
    if let Some(n) = cx.int(&a.max_restarts, "agents.max_restarts", 0, 1_000_000) {
        s.agents.restart.max_restarts = n as usize;
    }
    if let Some(n) = cx.int(&a.restart_window_ms, "agents.restart_window_ms", 1, 86_400_000) {
        s.agents.restart.within = Duration::from_millis(n);
    }
    if let Some(v) = &a.record_task_metrics {
        s.agents.record_task_metrics = *v.get_ref();
    }
    if let Some(n) = cx.int(&a.kv_sweep_interval_ms, "agents.kv_sweep_interval_ms", 10, 3_600_000) {
        s.kv_sweep_interval = Duration::from_millis(n);
    }
    let c = &f.channels;
    let ch = &mut s.store.channels;
    for (v, key, field) in [
        (&c.read_queue, "channels.read_queue", &mut ch.read_queue),
        (&c.commit_events, "channels.commit_events", &mut ch.commit_events),
        (&c.search_mailbox, "channels.search_mailbox", &mut ch.search_mailbox),
        (&c.swarm_events, "channels.swarm_events", &mut ch.swarm_events),
        (&c.kv_watch, "channels.kv_watch", &mut ch.kv_watch),
        (&c.region_link, "channels.region_link", &mut ch.region_link),
    ] {
        if let Some(n) = cx.int(v, key, 1, 1 << 24) {
            *field = n as usize;
        }
    }
    let r = &f.retention;
    let keep = |n: u64| (n > 0).then(|| Duration::from_millis(n));
    // Up to 100 years; 0 keeps rows forever.
    if let Some(n) = cx.int(&r.conversations_ms, "retention.conversations_ms", 0, 3_153_600_000_000) {
        s.store.retention.conversations = keep(n);
    }
    if let Some(n) = cx.int(&r.metrics_ms, "retention.metrics_ms", 0, 3_153_600_000_000) {
        s.store.retention.metrics = keep(n);
    }
    if let Some(n) = cx.int(&r.sweep_interval_ms, "retention.sweep_interval_ms", 100, 86_400_000) {
        s.store.retention.sweep_interval = Duration::from_millis(n);
    }
    if let Some(n) = cx.int(&r.batch_rows, "retention.batch_rows", 1, 1_000_000) {
        s.store.retention.batch_rows = n as usize;
    }
    if let Some(n) = cx.int(&r.sweep_batches, "retention.sweep_batches", 1, 1_000_000) {
        s.store.retention.sweep_batches = n as usize;
    }
    let k = &f.cache;
    if let Some(n) = cx.int(&k.writer_kib, "cache.writer_kib", 64, 64 << 20) {
        s.store.cache.writer_kib = n;
    }
    if let Some(n) = cx.int(&k.reader_kib, "cache.reader_kib", 64, 64 << 20) {
        s.store.cache.reader_kib = n;
    }
    if let Some(n) = cx.int(&k.reader_mmap_bytes, "cache.reader_mmap_bytes", 0, 1 << 40) {
        s.store.cache.reader_mmap_bytes = n;
    }
    let o = &f.observability;
    if let Some(v) = &o.log_format {
        match v.get_ref().as_str() {
            "text" => s.log_format = Some(LogFormat::Text),
            "json" => s.log_format = Some(LogFormat::Json),
            other => cx.err(
                v.span(),
                format!("`observability.log_format` = \"{other}\" is not \"text\" or \"json\""),
            ),
        }
    }
    if let Some(v) = &o.metrics_addr {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    cx.warn(
                        v.span(),
                        format!("metrics_addr {addr} is reachable from other machines; use 127.0.0.1 unless a scraper elsewhere needs it"),
                    );
                }
                s.metrics_addr = Some(addr);
            }
            Err(_) => cx.err(
                v.span(),
                format!(
                    "`observability.metrics_addr` = \"{}\" is not an IP:PORT address such as \"127.0.0.1:9464\"",
                    v.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = &f.search.embedder {
        match v.get_ref().parse::<edgeswarm::EmbedderChoice>() {
            Ok(e) => s.embedder = e,
            Err(m) => cx.err(v.span(), format!("`search.embedder`: {m}")),
        }
    }
    let m = &f.mcp;
    for o in m.allow_origins.iter().flatten() {
        match edgeswarm_mcp::http::check_origin_setting(o.get_ref()) {
            Ok(n) => s.mcp.allow_origins.push(n),
            Err(e) => cx.err(o.span(), format!("`mcp.allow_origins`: {e}")),
        }
    }
    if let Some(n) = cx.int(&m.max_sessions, "mcp.max_sessions", 1, 1_000_000) {
        s.mcp.max_sessions = n as usize;
    }
    if let Some(n) = cx.int(&m.max_concurrent_requests, "mcp.max_concurrent_requests", 1, 1_000_000) {
        s.mcp.max_concurrent_requests = n as usize;
    }
    if let Some(n) = cx.int(&m.request_timeout_ms, "mcp.request_timeout_ms", 1, 86_400_000) {
        s.mcp.request_timeout = Duration::from_millis(n);
    }
    if let Some(n) = cx.int(&m.session_idle_timeout_ms, "mcp.session_idle_timeout_ms", 1000, 86_400_000) {
        s.mcp.session_idle_timeout = Duration::from_millis(n);
    }
    s.regions = check_regions(cx, &f.regions);
    s
}

fn check_regions(cx: &mut Ctx<'_>, regions: &[Spanned<RegionFile>]) -> Vec<RegionSpec> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in regions {
        let whole = r.span();
        let r = r.get_ref();
        let Some(name) = &r.name else {
            cx.err(whole, "a [[regions]] entry has no `name`; add name = \"us-west-2\" (unique)");
            continue;
        };
        let n = name.get_ref().trim().to_string();
        if n.is_empty() {
            cx.err(name.span(), "region `name` is empty");
            continue;
        }
        if !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            cx.err(
                name.span(),
                format!("region name `{n}` may use only letters, digits, '-', '_' and '.'"),
            );
        }
        let line = line_col(cx.text, name.span().start).0;
        if let Some(first) = seen.get(&n) {
            cx.err(
                name.span(),
                format!("region name `{n}` appears twice (first on line {first}); names must be unique"),
            );
            continue;
        }
        seen.insert(n.clone(), line);
        let Some(url) = &r.url else {
            cx.err(
                whole,
                format!("region `{n}` has no `url`; use \"file:regions/{n}.db\" or \"https://<host>\""),
            );
            continue;
        };
        let u = url.get_ref().trim();
        let is_file = u.starts_with("file:");
        let is_http = u.starts_with("http://") || u.starts_with("https://") || u.starts_with("libsql://");
        if !is_file && !is_http {
            cx.err(
                url.span(),
                format!("region `{n}`: url `{u}` must start with file:, http://, https:// or libsql://"),
            );
            continue;
        }
        if is_file && u.len() == 5 {
            cx.err(
                url.span(),
                format!("region `{n}`: `file:` needs a path, e.g. \"file:regions/{n}.db\""),
            );
            continue;
        }
        if is_http && u.split_once("://").map(|(_, h)| h.trim_matches('/').is_empty()).unwrap_or(true) {
            cx.err(url.span(), format!("region `{n}`: url `{u}` has no host"));
            continue;
        }
        let latency_ms = cx.int(&r.latency_ms, "latency_ms", 0, 60_000).unwrap_or(0);
        if is_http {
            if let Some(l) = &r.latency_ms {
                cx.warn(
                    l.span(),
                    format!("region `{n}`: latency_ms is only simulated for file: regions; an HTTP region's latency is measured"),
                );
            }
        }
        let token_env = r.token_env.as_ref().map(|t| t.get_ref().clone());
        if let Some(t) = &r.token_env {
            let te = t.get_ref();
            if te.is_empty() || !te.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                cx.err(
                    t.span(),
                    format!("region `{n}`: token_env `{te}` is not an environment variable name"),
                );
            } else if is_file {
                cx.warn(t.span(), format!("region `{n}`: token_env is ignored for file: regions"));
            } else if std::env::var_os(te).is_none() {
                cx.warn(
                    t.span(),
                    format!("region `{n}`: environment variable {te} is not set; the region will be refused with 401 until it is"),
                );
            }
        } else if (u.starts_with("https://") || u.starts_with("libsql://")) && !u.contains("authToken=") {
            cx.warn(
                url.span(),
                format!("region `{n}` is remote but has no token_env; Turso Cloud and most sqld deployments need a bearer token"),
            );
        }
        let ca_file = r.ca_file.as_ref().map(|c| PathBuf::from(c.get_ref()));
        if let (Some(c), Some(p)) = (&r.ca_file, &ca_file) {
            if u.starts_with("http://") || is_file {
                cx.warn(
                    c.span(),
                    format!("region `{n}`: ca_file is only used for https:// and libsql:// urls"),
                );
            } else if !p.is_file() {
                cx.err(
                    c.span(),
                    format!(
                        "region `{n}`: ca_file `{}` does not exist; point it at the CA certificate (PEM)",
                        p.display()
                    ),
                );
            }
        }
        out.push(RegionSpec {
            name: n,
            url: u.to_string(),
            latency_ms,
            token_env,
            ca_file,
        });
    }
    out
}

pub fn parse_durability(s: &str) -> Option<Durability> {
    match s {
        "full" => Some(Durability::Full),
        "normal" => Some(Durability::Normal),
        _ => None,
    }
}

/// Which config file applies: `--config`, else `./edgeswarm.toml` when it exists.
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG);
            p.is_file().then_some(p)
        }
    }
}

/// Reads a config file.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CliError::ConfigRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Loads settings: defaults < file < environment (via clap) < flags. Refuses a file with
/// errors; warnings are logged.
pub fn load(opts: &DbOpts) -> Result<Settings> {
    let mut settings = load_file(opts.config.as_deref())?.unwrap_or_default();
    apply_flags(&mut settings, opts)?;
    Ok(settings)
}

/// The settings of the config file (`explicit`, else ./edgeswarm.toml when it exists),
/// without flags; `None` when there is no file. Refuses a file with errors; warnings
/// are logged.
pub fn load_file(explicit: Option<&Path>) -> Result<Option<Settings>> {
    let Some(path) = resolve_path(explicit) else { return Ok(None) };
    let text = read(&path)?;
    let checked = check_str(&text);
    if checked.errors() > 0 {
        return Err(CliError::Config {
            path,
            problems: checked.problems.into_iter().filter(|p| p.severity == Severity::Error).collect(),
        });
    }
    for p in &checked.problems {
        tracing::warn!("{}", p.render(&path));
    }
    let mut s = checked.settings;
    s.config_path = Some(path);
    Ok(Some(s))
}

/// Applies flags and `EDGESWARM_*` variables (clap has merged them) over the file.
pub fn apply_flags(s: &mut Settings, o: &DbOpts) -> Result<()> {
    if let Some(db) = &o.db {
        if db.as_os_str().is_empty() {
            return Err(CliError::Setting {
                name: "--db / EDGESWARM_DB".into(),
                reason: "empty path".into(),
            });
        }
        s.store.path = db.clone();
    }
    if let Some(d) = o.durability {
        s.store.durability = d.into();
    }
    let pos = |name: &str, v: usize| -> Result<usize> {
        if v == 0 {
            Err(CliError::Setting {
                name: name.into(),
                reason: "must be at least 1".into(),
            })
        } else {
            Ok(v)
        }
    };
    if let Some(n) = o.queue_capacity {
        s.store.queue_capacity = pos("--queue-capacity / EDGESWARM_QUEUE_CAPACITY", n)?;
    }
    if let Some(n) = o.read_pool_size {
        s.store.read_pool_size = pos("--read-pool-size / EDGESWARM_READ_POOL_SIZE", n)?;
    }
    if let Some(n) = o.batch_max_rows {
        s.store.batch.max_rows = pos("--batch-max-rows / EDGESWARM_BATCH_MAX_ROWS", n)?;
    }
    if let Some(n) = o.batch_max_bytes {
        s.store.batch.max_bytes = pos("--batch-max-bytes / EDGESWARM_BATCH_MAX_BYTES", n)?;
    }
    if let Some(n) = o.batch_max_linger_ms {
        s.store.batch.max_linger = Duration::from_millis(n);
    }
    if let Some(a) = o.metrics_addr {
        s.metrics_addr = Some(a);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_file() {
        let c = check_str("");
        assert_eq!(c.errors(), 0);
        assert_eq!(c.settings.store.queue_capacity, StoreConfig::default().queue_capacity);
    }

    #[test]
    fn search_embedder_is_read_and_checked() {
        assert_eq!(check_str("").settings.embedder, edgeswarm::EmbedderChoice::None);
        let c = check_str("[search]\nembedder = \"hash\"\n");
        assert_eq!(c.errors(), 0);
        assert_eq!(c.settings.embedder, edgeswarm::EmbedderChoice::Hash);
        let c = check_str("[search]\nembedder = \"bert\"\n");
        assert_eq!(c.errors(), 1);
        assert!(c.problems[0].message.contains("none, hash, semantic"), "{:?}", c.problems);
        let c = check_str("[search]\nembeder = \"hash\"\n");
        assert_eq!(c.errors(), 1, "typo in [search] is caught");
        assert!(check_str(&c.settings.to_toml()).errors() == 0);
    }

    #[test]
    fn every_problem_has_its_line() {
        let text = "durability = \"fast\"\nqueue_capacity = 0\n[batch]\nmax_rowz = 5\n[[regions]]\nname = \"a\"\nurl = \"file:a.db\"\n[[regions]]\nname = \"a\"\nurl = \"ftp://x\"\n";
        let c = check_str(text);
        let lines: Vec<usize> = c
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.line)
            .collect();
        assert_eq!(lines, vec![1, 2, 4, 9], "{:?}", c.problems);
        assert!(c.problems.iter().any(|p| p.message.contains("max_rows")));
        assert!(c.problems.iter().any(|p| p.message.contains("first on line 6")));
    }

    #[test]
    fn syntax_and_type_errors_have_lines() {
        let c = check_str("db = \"x.db\"\nqueue_capacity = \"many\"\n");
        assert_eq!(c.errors(), 1);
        assert_eq!(c.problems[0].line, 2);
        let c = check_str("db = \n");
        assert!(c.errors() >= 1);
        assert_eq!(c.problems[0].line, 1);
    }

    #[test]
    fn regions_parse_and_secrets_are_refused() {
        let c = check_str("[[regions]]\nname = \"eu\"\nurl = \"file:eu.db\"\nlatency_ms = 45\n[[regions]]\nname = \"cloud\"\nurl = \"http://127.0.0.1:8080\"\ntoken = \"abc\"\n");
        assert_eq!(c.errors(), 1);
        assert!(c.problems[0].message.contains("token_env"));
        let c = check_str("[[regions]]\nname = \"eu\"\nurl = \"file:eu.db\"\nlatency_ms = 45\n");
        assert_eq!(
            c.settings.regions,
            vec![RegionSpec {
                name: "eu".into(),
                url: "file:eu.db".into(),
                latency_ms: 45,
                token_env: None,
                ca_file: None
            }]
        );
    }

    #[test]
    fn unknown_keys_everywhere_get_suggestions() {
        let c = check_str("queue_capacty = 5\n[channels]\nsearch_mailbx = 8\nkv_watch = 4\n[[regions]]\nname = \"eu\"\nurl = \"file:eu.db\"\nlatncy_ms = 3\n");
        let errs: Vec<(usize, &str)> = c.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(c.errors(), 3, "{errs:?}");
        assert!(errs[0].0 == 1 && errs[0].1.contains("Did you mean `queue_capacity`?"), "{errs:?}");
        assert!(
            errs[1].0 == 3 && errs[1].1.contains("in [channels]. Did you mean `search_mailbox`?"),
            "{errs:?}"
        );
        assert!(
            errs[2].0 == 8 && errs[2].1.contains("in [[regions]]. Did you mean `latency_ms`?"),
            "{errs:?}"
        );
        assert_eq!(c.settings.store.channels.kv_watch, 4);
    }

    #[test]
    fn retention_section_is_read_checked_and_round_trips() {
        let c = check_str("");
        assert_eq!(c.settings.store.retention, edgeswarm::RetentionConfig::default());
        assert!(!c.settings.store.retention.enabled(), "kept forever by default");
        let c = check_str("[retention]\nconversations_ms = 2592000000\nmetrics_ms = 0\nsweep_interval_ms = 30000\nbatch_rows = 500\n");
        assert_eq!(c.errors(), 0, "{:?}", c.problems);
        let r = &c.settings.store.retention;
        assert_eq!(r.conversations, Some(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(r.metrics, None, "0 keeps rows forever");
        assert_eq!((r.sweep_interval, r.batch_rows), (Duration::from_secs(30), 500));
        let again = check_str(&c.settings.to_toml());
        assert_eq!(again.errors(), 0, "{:?}", again.problems);
        assert_eq!(&again.settings.store.retention, r);
        let c = check_str("[cache]\nwriter_kib = 8192\nreader_kib = 4096\nreader_mmap_bytes = 0\n");
        assert_eq!(c.errors(), 0, "{:?}", c.problems);
        let k = &c.settings.store.cache;
        assert_eq!((k.writer_kib, k.reader_kib, k.reader_mmap_bytes), (8192, 4096, 0));
        assert_eq!(&check_str(&c.settings.to_toml()).settings.store.cache, k);
        let c = check_str("[retention]\nconversations_ms = -1\nbatch_rows = 0\nmetric_ms = 5\n");
        let errs: Vec<(usize, &str)> = c.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(c.errors(), 3, "{errs:?}");
        assert!(
            errs.iter().any(|(l, m)| *l == 4 && m.contains("Did you mean `metrics_ms`?")),
            "{errs:?}"
        );
    }

    #[test]
    fn mcp_section_is_read_checked_and_round_trips() {
        let c = check_str("");
        assert_eq!(c.settings.mcp, McpSettings::default());
        assert_eq!(c.settings.mcp.max_sessions, 64);
        let c = check_str(
            "[mcp]\nallow_origins = [\"https://App.example.com/\", \"http://10.0.0.5:3000\"]\nmax_sessions = 3\nmax_concurrent_requests = 2\nrequest_timeout_ms = 700\nsession_idle_timeout_ms = 5000\n",
        );
        assert_eq!(c.errors(), 0, "{:?}", c.problems);
        let m = &c.settings.mcp;
        assert_eq!(m.allow_origins, vec!["https://app.example.com", "http://10.0.0.5:3000"]);
        assert_eq!((m.max_sessions, m.max_concurrent_requests), (3, 2));
        assert_eq!(m.request_timeout, Duration::from_millis(700));
        assert_eq!(m.session_idle_timeout, Duration::from_secs(5));
        let again = check_str(&c.settings.to_toml());
        assert_eq!(again.errors(), 0, "{:?}", again.problems);
        assert_eq!(&again.settings.mcp, m);

        let c = check_str("[mcp]\nallow_origins = [\"*\"]\nmax_sessions = 0\nmax_sesions = 4\ntoken = \"abc\"\n");
        let errs: Vec<(usize, &str)> = c.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(c.errors(), 4, "{errs:?}");
        assert!(errs[0].0 == 2 && errs[0].1.contains("http(s)://host[:port]"), "{errs:?}");
        assert!(errs[1].0 == 3 && errs[1].1.contains("mcp.max_sessions"), "{errs:?}");
        assert!(errs[2].0 == 4 && errs[2].1.contains("Did you mean `max_sessions`?"), "{errs:?}");
        assert!(errs[3].0 == 5 && errs[3].1.contains("EDGESWARM_MCP_TOKEN"), "{errs:?}");
    }

    #[test]
    fn settings_round_trip_through_toml() {
        let c = check_str("durability = \"normal\"\n[batch]\nmax_rows = 10\n[[regions]]\nname = \"eu\"\nurl = \"file:eu.db\"\n");
        let again = check_str(&c.settings.to_toml());
        assert_eq!(again.errors(), 0, "{:?}", again.problems);
        assert_eq!(again.settings.store.batch.max_rows, 10);
        assert_eq!(again.settings.store.channels, c.settings.store.channels);
        assert_eq!(again.settings.regions.len(), 1);
    }
}
