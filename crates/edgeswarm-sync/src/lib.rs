//! edgeswarm-sync: replication of the home store to edge regions.
//!
//! - [`RegionLink`]: how to reach a region. [`LocalLink`] (a libSQL file behind a
//!   simulated network with a partition switch) and [`HranaLink`] (Hrana over HTTP).
//! - One [`SyncActor`](actor::SyncActor) per region pushes the home change log in
//!   atomic batches (durable cursor; at-least-once delivery, exactly-once effect),
//!   pulls other nodes' versions from the region log and applies them through the
//!   storage actor under last-writer-wins on `(hlc, origin)`, and tracks health.
//! - [`Router`]: nearest healthy region, failover and return.
//! - [`SyncSystem::start`] → [`SyncHandle`]: status, consistency waits, routed reads,
//!   partitions, user-table registration, checksums, shutdown.
//!
//! Semantics (for docs/runtime-semantics.md) are documented on the items: see
//! [`actor`] for ordering and delivery, [`row`] for LWW, [`router`] for health.

pub mod actor;
pub mod compact;
pub mod config;
pub mod error;
pub mod home;
pub mod link;
pub mod park;
pub mod router;
pub mod row;
pub mod system;

pub use actor::{RegionStatus, SyncActor};
pub use config::{LinkProfile, RegionConfig, SyncConfig};
pub use error::{Result, SyncError};
pub use link::{HranaLink, LocalLink, RegionLink, TlsMode};
pub use park::ParkedInfo;
pub use router::{Health, ReadTarget, Router};
pub use row::{Conflict, Resolver, RowVersion, TableSpec};
pub use system::{RegionRemoved, Replicated, SyncHandle, SyncStatus, SyncSystem, TableChecksum};

// With ractor's `cluster` feature there is no blanket `Message` impl; `SyncMsg` is
// local-only (never serialized), so the trait's defaults are right.
#[cfg(feature = "cluster")]
impl ractor::Message for actor::SyncMsg {}
