//! edgeswarm's benchmarks and the swarm simulation, kept out of the library crates.
//!
//! - [`store`]: ingest (64 publishers through the storage actor) and indexed reads
//!   through the read pool, each beside plain libSQL on the same machine in the same run.
//! - [`search`]: lexical search through the `Search` actor beside the `LIKE` scan and
//!   FTS5's own ranking, the p50 growth curve, ingest with the FTS index on and off.
//! - [`sync`]: push throughput (local file and Hrana over HTTP to `tursodb`), full sync
//!   of 500 records, replication lag under steady load.
//! - [`mcp`]: tool calls per second over stdio against the `edgeswarm mcp` binary.
//! - [`peer`]: the same client driving edgeswarm and mcp-memory-libsql (npm) side by
//!   side on a narrow-vocabulary and a Zipf corpus (`bench mcp --peer`).
//! - [`dashboard`]: what the live dashboard costs ingest, with 0 and 10 pages open.
//! - [`quality`]: retrieval quality on a LoCoMo-format file (recall@10, hit@10, MRR per mode).
//! - [`soak`]: a long mixed load with region partitions; one line of RSS, file sizes
//!   and internal-table sizes per minute, and whether they stayed flat.
//! - [`sim`]: the swarm simulation behind `edgeswarm demo` and `examples/swarm_sim.rs`.
//!
//! Every benchmark returns one JSON object (what `edgeswarm bench <name> --json` prints);
//! nothing here asserts a speed. Every latency figure comes from
//! [`edgeswarm_core::LatencyHistogram`], so all percentiles share one definition
//! (nearest rank; see `edgeswarm_core::latency`).

pub mod dashboard;
pub mod error;
pub mod mcp;
pub mod peer;
pub mod quality;
pub mod remote;
pub mod search;
pub mod sim;
pub mod soak;
pub mod store;
pub mod sync;
mod util;

pub use error::{BenchError, Result};
