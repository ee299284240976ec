//! The facade's error type: wraps each layer's typed error and adds the runtime's own.

use edgeswarm_store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] edgeswarm_search::SearchError),
    #[error(transparent)]
    Sync(#[from] edgeswarm_sync::SyncError),
    #[error("no regions are configured; add them with SwarmBuilder::region to use {0}")]
    NoRegions(&'static str),
    #[error("no agent with id `{0}`; spawn it first or check the id (swarm.agents() lists them)")]
    UnknownAgent(String),
    #[error("an agent with id `{0}` already exists; ids are unique within a swarm")]
    DuplicateAgent(String),
    #[error("agent `{id}` has {capacity} tasks waiting (its mailbox is full); retry later, use send_wait, or spawn more agents")]
    MailboxFull { id: String, capacity: usize },
    #[error("agent `{id}` takes tasks of type {expected}, not {given}")]
    WrongTaskType {
        id: String,
        expected: &'static str,
        given: &'static str,
    },
    #[error("agent `{0}` is stopped (it exceeded its restart limit or was stopped)")]
    AgentStopped(String),
    #[error("the swarm is shut down; start a new one")]
    ShutDown,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("could not start actor: {0}")]
    Spawn(String),
}

impl From<edgeswarm_core::ValidationError> for Error {
    fn from(e: edgeswarm_core::ValidationError) -> Self {
        Error::Store(StoreError::Invalid(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
