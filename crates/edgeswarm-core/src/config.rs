//! Configuration structs with documented defaults. Defaults were chosen by measurement
//! on the reference machine (2 cores); see docs/ARCHITECTURE.md.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What an ack promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `PRAGMA synchronous=FULL`: an acked write survives power loss. The default.
    #[default]
    Full,
    /// `PRAGMA synchronous=NORMAL`: an acked write survives a process crash; the last
    /// transactions may roll back on power loss.
    Normal,
}

impl Durability {
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }
}

/// Group-commit limits: a batch closes at whichever is hit first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchConfig {
    /// Max writes per transaction. Default 4096: past ~2k rows the fsync is amortised
    /// and larger batches only add ack latency.
    pub max_rows: usize,
    /// Max approximate payload bytes per transaction. Default 8 MiB, so a burst of large
    /// knowledge entries does not build a transaction bigger than the WAL autocheckpoint.
    pub max_bytes: usize,
    /// How long the writer waits for more writes after the first one of a batch.
    /// Default 0: the writer never idles on purpose. Batches still form by themselves
    /// because writes queue up while the previous commit's fsync runs (natural group
    /// commit); a linger only adds latency when the queue is empty.
    pub max_linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 4096,
            max_bytes: 8 << 20,
            max_linger: Duration::ZERO,
        }
    }
}

/// Input limits; anything larger is refused with a typed error before it is queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Max bytes of a content field (message, knowledge). Default 1 MiB.
    pub max_content_bytes: usize,
    /// Max bytes of a metadata JSON object. Default 64 KiB.
    pub max_metadata_bytes: usize,
    /// Max bytes of a short field (ids, names, roles, tags). Default 256.
    pub max_name_bytes: usize,
    /// Max tags per knowledge entry. Default 64.
    pub max_tags: usize,
    /// Max bytes of one SQL statement. Default 100 KiB.
    pub max_sql_bytes: usize,
    /// Max rows a raw SQL read returns; more sets `truncated`. Default 10,000.
    pub max_result_rows: usize,
    /// A raw SQL statement running longer than this is interrupted. Default 5 s.
    pub query_timeout: Duration,
    /// Max bytes of values one raw SQL statement returns (and of any one value it
    /// computes); past it the statement is stopped with `ResultTooLarge`, so one query
    /// cannot fill the server's memory. Default 16 MiB.
    pub max_result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_content_bytes: 1 << 20,
            max_metadata_bytes: 64 << 10,
            max_name_bytes: 256,
            max_tags: 64,
            max_sql_bytes: 100 << 10,
            max_result_rows: 10_000,
            query_timeout: Duration::from_secs(5),
            max_result_bytes: 16 << 20,
        }
    }
}

/// Capacity of every bounded channel that is not sized elsewhere, one field per channel.
/// Two channels are sized by their own settings: the writer queue
/// ([`StoreConfig::queue_capacity`], channel `storage_writer`) and each agent's mailbox
/// (`AgentOptions::mailbox` in the facade, channel `agent_mailbox`, one per agent).
///
/// Every channel's depth and capacity is reported as a [`ChannelStats`] (the facade's
/// `Swarm::channels`, `StoreStats`, the Prometheus gauges `edgeswarm_channel_depth` and
/// `edgeswarm_channel_capacity` labelled by channel name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Channel `read_pool`: reads queued or running on the read-pool threads. A full
    /// queue makes readers wait (never fail). Default 4,096: a burst of agent reads
    /// waits in memory (a job is a boxed closure, ~100 bytes) instead of erroring, and
    /// the bound keeps a runaway caller from growing memory without limit.
    pub read_queue: usize,
    /// Channel `commit_events`: the broadcast of committed batches (caches, watchers,
    /// sync). The writer never waits on it: a subscriber more than this many events
    /// behind gets `Lagged` and resynchronises. Default 4,096 events: several seconds of
    /// commits at full write rate, so a busy subscriber catches up without resyncing.
    pub commit_events: usize,
    /// Channel `search_mailbox`: requests queued for the `SearchActor` (queries, status,
    /// embedder switches, cache invalidations of this node's writes). `search` waits
    /// while it is full, `try_search` returns `Overloaded`. Default 1,024: the actor
    /// only hands each query to a task, so a deep mailbox means it is stalled; the bound
    /// keeps callers from piling up unbounded work behind it.
    pub search_mailbox: usize,
    /// Channel `swarm_events`: the broadcast of agent lifecycle events (started,
    /// restarted, stopped). Slow subscribers lag instead of slowing agents. Default
    /// 1,024 events.
    pub swarm_events: usize,
    /// Channel `kv_watch`: kv changes queued for one `watch` subscriber (one channel per
    /// watcher). When it is full further changes are dropped and counted. Default 256.
    pub kv_watch: usize,
    /// Channel `region_link`: requests queued for one `file:` region's thread (one
    /// channel per region). Pipelined pushes, pulls and probes wait when it is full.
    /// Default 128: more than the push window (32) plus a pull and a probe, so a
    /// healthy region never waits on it.
    pub region_link: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            read_queue: 4096,
            commit_events: 4096,
            search_mailbox: 1024,
            swarm_events: 1024,
            kv_watch: 256,
            region_link: 128,
        }
    }
}

/// SQLite's memory per connection of the home file: the page caches and the readers'
/// memory map. These are the bulk of a long-running swarm's memory once its file is
/// larger than they are: the writer's cache, plus `read_pool_size` times the reader
/// cache and map (mapped pages count as RssFile; the kernel can drop them). Smaller
/// values bound RSS at the cost of more reads from the OS page cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// The writer's page cache, KiB (`PRAGMA cache_size = -N`). Default 65,536 (64 MiB):
    /// index pages of the hot tables stay cached across batches.
    pub writer_kib: u64,
    /// Each reader's page cache, KiB. Default 32,768 (32 MiB).
    pub reader_kib: u64,
    /// Each reader's memory map, bytes (`PRAGMA mmap_size`; 0 turns it off). Default
    /// 256 MiB: reads of a file up to that size go through the map, without copies into
    /// the page cache.
    pub reader_mmap_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            writer_kib: 65_536,
            reader_kib: 32_768,
            reader_mmap_bytes: 256 << 20,
        }
    }
}

/// How long conversations and metrics are kept, and how the sweeper that deletes older
/// ones runs. Default: both kept forever (no sweeper runs), as before retention existed.
///
/// The sweeper deletes the oldest rows first, in bounded batches on the writer (each
/// batch its own small transaction, so writes keep flowing). Deletes by retention are
/// not replicated: regions apply the same rule to their own copies (the sync layer's
/// compaction pass runs the same deletes there), so a region holds what home holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// `conversations` rows whose `created_at` is older than this are deleted.
    /// Default `None`: kept forever. Long-running swarms set it so the file, the change
    /// log and the page caches stay bounded.
    pub conversations: Option<Duration>,
    /// `agent_metrics` rows whose `ts` is older than this are deleted. Default `None`:
    /// kept forever.
    pub metrics: Option<Duration>,
    /// How often the sweeper runs. Default 60 s: retention is measured in hours or days,
    /// so a minute late costs nothing, and one sweep per minute is negligible work.
    pub sweep_interval: Duration,
    /// Rows one sweep batch deletes at most (one writer transaction). Default 1,000: a
    /// few milliseconds of writer time, so a first sweep over a large backlog never
    /// holds up other writes; a sweep repeats batches (at most `sweep_batches`) while
    /// they come back full.
    pub batch_rows: usize,
    /// Batches one sweep runs at most per table. Default 100 (100,000 rows): a backlog
    /// larger than that is worked off over the next sweeps.
    pub sweep_batches: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            conversations: None,
            metrics: None,
            sweep_interval: Duration::from_secs(60),
            batch_rows: 1000,
            sweep_batches: 100,
        }
    }
}

impl RetentionConfig {
    /// True when some table has a retention (the sweeper has work).
    pub fn enabled(&self) -> bool {
        self.conversations.is_some() || self.metrics.is_some()
    }
}

/// Depth and capacity of one named channel right now, for stats and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The channel's name (see [`ChannelConfig`]); per-instance channels add the
    /// instance after a colon, e.g. `region_link:eu-west`.
    pub name: String,
    /// Items queued (or held in flight, where the channel counts those) right now.
    pub depth: usize,
    /// The bound: at this depth senders wait, fail with `Overloaded`, or (broadcasts)
    /// the slowest subscriber starts lagging.
    pub capacity: usize,
}

impl ChannelStats {
    /// A snapshot of `name`.
    pub fn new(name: impl Into<String>, depth: usize, capacity: usize) -> Self {
        ChannelStats {
            name: name.into(),
            depth,
            capacity,
        }
    }
}

/// Everything the store needs to open the home file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The home libSQL file. Default `./edgeswarm.db`.
    pub path: PathBuf,
    /// Default `Durability::Full`.
    pub durability: Durability,
    /// When the writer closes a batch (rows, bytes, linger).
    pub batch: BatchConfig,
    /// Capacity of the bounded queue in front of the writer, in writes. When full,
    /// `publish` waits and `try_publish` returns `Overloaded`. Default 65,536 — about
    /// 16 full batches, enough to keep the writer busy during a commit, small enough to
    /// keep memory flat (~tens of MB worst case with default limits on typical rows).
    pub queue_capacity: usize,
    /// Byte budget of the same queue: the approximate payload bytes of every write
    /// queued or in flight (`Record::approx_bytes`; 256 for a custom op). When a write
    /// would go past it, `publish` waits and `try_publish` returns `Overloaded`, as for
    /// `queue_capacity`. Default 64 MiB: 64 maximal (1 MiB) writes, several full
    /// batches of typical rows, so the byte bound only bites on floods of big writes.
    /// A write larger than the whole budget is let through alone.
    pub queue_bytes: usize,
    /// Time limit of every write op on the writer (typed records, kv, custom ops,
    /// replication apply). An op past it is interrupted, rolled back and failed with
    /// `StoreError::Timeout`; the rest of its batch commits. Raw SQL writes keep
    /// `limits.query_timeout`. Default 5 s: a typed op takes microseconds, so only a
    /// pathological one (a user trigger, a stuck custom op) ever reaches it.
    pub op_timeout: Duration,
    /// Read-only connections, each on its own thread. Default 4: reads are short and
    /// mostly CPU; on a 2-core machine more threads only add contention.
    pub read_pool_size: usize,
    /// Input limits, checked before a write is queued or a read runs.
    pub limits: Limits,
    /// Capacities of the other named channels (read queue, commit events, search
    /// mailbox, swarm events, kv watchers, region links). They live here because every
    /// layer is handed the `Store` and reads them from `Store::config()`.
    pub channels: ChannelConfig,
    /// How long conversations and metrics are kept (default: forever). Here because
    /// the store's sweeper and the sync layer's region compaction both apply it.
    pub retention: RetentionConfig,
    /// Page caches and memory map of the home file's connections (the defaults the
    /// store always used).
    pub cache: CacheConfig,
    /// Name of a registered SQLite VFS the writer and the checkpointer open the home
    /// file through; `None` (default): SQLite's default VFS. For tests: the fault
    /// sweeps open the store through edgeswarm-testkit's fault-injecting VFS. Readers
    /// always use the default VFS (the same locks: the wrapper passes them through). Not
    /// read from edgeswarm.toml.
    #[serde(skip)]
    pub vfs: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./edgeswarm.db"),
            durability: Durability::Full,
            batch: BatchConfig::default(),
            queue_capacity: 65_536,
            queue_bytes: 64 << 20,
            op_timeout: Duration::from_secs(5),
            read_pool_size: 4,
            limits: Limits::default(),
            channels: ChannelConfig::default(),
            retention: RetentionConfig::default(),
            cache: CacheConfig::default(),
            vfs: None,
        }
    }
}

impl StoreConfig {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            ..Default::default()
        }
    }
}
