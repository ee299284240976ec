//! `AgentCtx`: what an agent's behaviour uses to reach the swarm's memory.

use crate::error::{Error, Result};
use crate::memory::{KvWatch, Page};
use crate::swarm::{Swarm, SwarmInner};
use edgeswarm_core::{Knowledge, KvEntry, Message, Metric};
use edgeswarm_store::kv::CasOutcome;
use edgeswarm_store::{QueryResult, SqlValue};
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Handed to every agent callback. Cheap to clone.
#[derive(Clone)]
pub struct AgentCtx {
    /// The agent's id (unique in the swarm).
    id: Arc<str>,
    /// The region the agent runs in; stamped on its metrics and knowledge.
    region: Arc<str>,
    /// Weak so an agent never keeps a shut-down swarm alive.
    swarm: Weak<SwarmInner>,
}

impl AgentCtx {
    pub(crate) fn new(id: &str, region: &str, swarm: Weak<SwarmInner>) -> Self {
        AgentCtx {
            id: id.into(),
            region: region.into(),
            swarm,
        }
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn region(&self) -> &str {
        &self.region
    }
    pub(crate) fn swarm_inner(&self) -> Option<Arc<SwarmInner>> {
        self.swarm.upgrade()
    }
    /// The swarm handle (to send tasks to other agents, for instance).
    pub fn swarm(&self) -> Result<Swarm> {
        self.swarm_inner().map(Swarm::from_inner).ok_or(Error::ShutDown)
    }

    /// Records one task measurement; returns once it is committed.
    pub async fn record_metric(&self, task_type: &str, duration_ms: f64, tokens_used: i64) -> Result<()> {
        let m = Metric::new(self.id(), task_type, duration_ms, tokens_used).region(self.region());
        self.swarm()?.record_metric(m).await?;
        Ok(())
    }
    /// Appends a message to a global session; returns its id once committed.
    pub async fn add_conversation(&self, session_id: &str, role: &str, content: &str, metadata: Option<Value>) -> Result<String> {
        let mut m = Message::new(session_id, role, content);
        m.metadata = metadata;
        self.swarm()?.add_conversation(m).await
    }
    /// Reads a session's messages in order, a page at a time.
    pub async fn get_conversations(&self, session_id: &str, cursor: Option<&str>, limit: usize) -> Result<Page<Message>> {
        self.swarm()?.get_conversations(session_id, cursor, limit).await
    }
    /// Adds a knowledge entry (stamped with the agent's region unless set).
    pub async fn add_knowledge(&self, mut k: Knowledge) -> Result<String> {
        if k.region.is_none() {
            k.region = Some(self.region().to_string());
        }
        self.swarm()?.add_knowledge(k).await
    }
    /// Searches the knowledge base.
    pub async fn search_knowledge(&self, query: &str, limit: usize) -> Result<Vec<crate::swarm::KnowledgeHit>> {
        self.swarm()?.search_knowledge(query, limit).await
    }
    /// Runs read-only SQL against the home file.
    pub async fn sql_read(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.swarm()?.read_sql(sql, params).await
    }
    /// Reads a shared-memory entry (`None` if missing, deleted or expired).
    pub async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvEntry>> {
        self.swarm()?.kv_get(ns, key).await
    }
    /// Sets a shared-memory entry; returns its new version.
    pub async fn kv_set(&self, ns: &str, key: &str, value: Value, ttl: Option<Duration>) -> Result<i64> {
        self.swarm()?.kv_set(ns, key, value, ttl).await
    }
    /// Compare-and-swap on a shared-memory entry's version.
    pub async fn kv_cas(&self, ns: &str, key: &str, expected: Option<i64>, value: Value, ttl: Option<Duration>) -> Result<CasOutcome> {
        self.swarm()?.kv_cas(ns, key, expected, value, ttl).await
    }
    /// Deletes a shared-memory entry; true if it existed.
    pub async fn kv_delete(&self, ns: &str, key: &str) -> Result<bool> {
        self.swarm()?.kv_delete(ns, key).await
    }
    /// Task-duration aggregates (see `Swarm::metrics`).
    pub async fn metrics(&self, since_ms: Option<i64>) -> Result<crate::swarm::MetricsSummary> {
        self.swarm()?.metrics(since_ms).await
    }
    /// The whole live knowledge entry with this id, or `None`.
    pub async fn get_knowledge(&self, id: &str) -> Result<Option<edgeswarm_search::KnowledgeEntry>> {
        self.swarm()?.get_knowledge(id).await
    }
    /// Runs one SQL statement of any kind (writes commit before this returns).
    pub async fn sql_execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.swarm()?.execute_sql(sql, params).await
    }
    /// Watches a key prefix in a namespace.
    pub fn watch(&self, ns: &str, prefix: &str) -> Result<KvWatch> {
        Ok(self.swarm()?.watch(ns, prefix))
    }
}
