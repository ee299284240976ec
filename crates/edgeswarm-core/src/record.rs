//! Record types agents publish. Each carries a client-generated id (UUIDv7) so a retried
//! write is idempotent. `validate` refuses bad input before it reaches the writer queue.

use crate::config::Limits;
use crate::error::ValidationError;
use crate::id::new_id;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One agent task measurement (`agent_metrics` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub id: String,
    pub agent_id: String,
    pub task_type: String,
    pub duration_ms: f64,
    pub tokens_used: i64,
    /// Region the agent ran in, if any.
    pub region: Option<String>,
    /// When the task finished (ms since epoch).
    pub ts: i64,
    /// Free-form JSON object for anything else the host wants to keep.
    pub extra: Option<Value>,
}

impl Metric {
    pub fn new(agent_id: impl Into<String>, task_type: impl Into<String>, duration_ms: f64, tokens_used: i64) -> Self {
        Metric {
            id: new_id(),
            agent_id: agent_id.into(),
            task_type: task_type.into(),
            duration_ms,
            tokens_used,
            region: None,
            ts: now_millis(),
            extra: None,
        }
    }
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    pub fn validate(&self, l: &Limits) -> Result<(), ValidationError> {
        name("id", &self.id, l)?;
        name("agent_id", &self.agent_id, l)?;
        name("task_type", &self.task_type, l)?;
        if let Some(r) = &self.region {
            name("region", r, l)?;
        }
        if !self.duration_ms.is_finite() || self.duration_ms < 0.0 {
            return Err(ValidationError::OutOfRange {
                field: "duration_ms",
                reason: format!("{} is not a finite, non-negative number", self.duration_ms),
            });
        }
        if self.tokens_used < 0 {
            return Err(ValidationError::OutOfRange {
                field: "tokens_used",
                reason: format!("{} is negative", self.tokens_used),
            });
        }
        json_object("extra", self.extra.as_ref(), l)?;
        Ok(())
    }
}

/// One conversation message (`conversations` row), keyed by session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub session_id: String,
    pub role: String,
    pub content: String,
    /// JSON object, e.g. `{"region":"us-west-2","latency":25}`.
    pub metadata: Option<Value>,
    pub created_at: i64,
}

impl Message {
    pub fn new(session_id: impl Into<String>, role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            id: new_id(),
            session_id: session_id.into(),
            role: role.into(),
            content: content.into(),
            metadata: None,
            created_at: now_millis(),
        }
    }
    pub fn metadata(mut self, m: Value) -> Self {
        self.metadata = Some(m);
        self
    }
    /// Sets metadata from JSON text, refusing text that is not a JSON object.
    pub fn metadata_str(mut self, s: &str) -> Result<Self, ValidationError> {
        self.metadata = Some(parse_object("metadata", s)?);
        Ok(self)
    }
    pub fn validate(&self, l: &Limits) -> Result<(), ValidationError> {
        name("id", &self.id, l)?;
        name("session_id", &self.session_id, l)?;
        name("role", &self.role, l)?;
        content("content", &self.content, l)?;
        json_object("metadata", self.metadata.as_ref(), l)?;
        Ok(())
    }
}

/// One knowledge entry (`knowledge` row, indexed by FTS5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knowledge {
    pub id: String,
    pub category: String,
    pub topic: String,
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: Option<Value>,
    /// Region the entry was written in, if any (search can filter on it).
    pub region: Option<String>,
    pub created_at: i64,
}

impl Knowledge {
    pub fn new(category: impl Into<String>, topic: impl Into<String>, content: impl Into<String>) -> Self {
        Knowledge {
            id: new_id(),
            category: category.into(),
            topic: topic.into(),
            content: content.into(),
            tags: Vec::new(),
            metadata: None,
            region: None,
            created_at: now_millis(),
        }
    }
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
    pub fn metadata(mut self, m: Value) -> Self {
        self.metadata = Some(m);
        self
    }
    pub fn metadata_str(mut self, s: &str) -> Result<Self, ValidationError> {
        self.metadata = Some(parse_object("metadata", s)?);
        Ok(self)
    }
    pub fn region(mut self, r: impl Into<String>) -> Self {
        self.region = Some(r.into());
        self
    }
    pub fn validate(&self, l: &Limits) -> Result<(), ValidationError> {
        name("id", &self.id, l)?;
        name("category", &self.category, l)?;
        name("topic", &self.topic, l)?;
        content("content", &self.content, l)?;
        if self.tags.len() > l.max_tags {
            return Err(ValidationError::OutOfRange {
                field: "tags",
                reason: format!("{} tags; the limit is {}", self.tags.len(), l.max_tags),
            });
        }
        for t in &self.tags {
            name("tags[]", t, l)?;
        }
        if let Some(r) = &self.region {
            name("region", r, l)?;
        }
        json_object("metadata", self.metadata.as_ref(), l)?;
        Ok(())
    }
}

/// A shared-memory entry (`kv` row): namespaced, versioned, optionally expiring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub namespace: String,
    pub key: String,
    pub value: Value,
    /// Bumped on every write; compare-and-swap compares it.
    pub version: i64,
    /// Absolute expiry (ms since epoch); `None` never expires.
    pub expires_at: Option<i64>,
    pub updated_at: i64,
}

/// Any record the store accepts on its typed write path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Metric(Metric),
    Message(Message),
    Knowledge(Knowledge),
}

impl Record {
    pub fn id(&self) -> &str {
        match self {
            Record::Metric(m) => &m.id,
            Record::Message(m) => &m.id,
            Record::Knowledge(k) => &k.id,
        }
    }
    pub fn validate(&self, l: &Limits) -> Result<(), ValidationError> {
        match self {
            Record::Metric(m) => m.validate(l),
            Record::Message(m) => m.validate(l),
            Record::Knowledge(k) => k.validate(l),
        }
    }
    /// Rough size in bytes, used for batch byte limits.
    pub fn approx_bytes(&self) -> usize {
        let meta = |v: &Option<Value>| v.as_ref().map(|v| v.to_string().len()).unwrap_or(0);
        match self {
            Record::Metric(m) => 96 + m.agent_id.len() + m.task_type.len() + meta(&m.extra),
            Record::Message(m) => 96 + m.session_id.len() + m.role.len() + m.content.len() + meta(&m.metadata),
            Record::Knowledge(k) => {
                128 + k.category.len()
                    + k.topic.len()
                    + k.content.len()
                    + k.tags.iter().map(|t| t.len() + 3).sum::<usize>()
                    + meta(&k.metadata)
            }
        }
    }
}

impl From<Metric> for Record {
    fn from(m: Metric) -> Self {
        Record::Metric(m)
    }
}
impl From<Message> for Record {
    fn from(m: Message) -> Self {
        Record::Message(m)
    }
}
impl From<Knowledge> for Record {
    fn from(k: Knowledge) -> Self {
        Record::Knowledge(k)
    }
}

// ---- validation helpers -------------------------------------------------------------

/// Short identifier-like text: non-empty, no NUL, at most `max_name_bytes`.
pub fn name(field: &'static str, v: &str, l: &Limits) -> Result<(), ValidationError> {
    if v.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    no_nul(field, v)?;
    if v.len() > l.max_name_bytes {
        return Err(ValidationError::TooLong {
            field,
            len: v.len(),
            max: l.max_name_bytes,
            limit_name: "max_name_bytes",
        });
    }
    Ok(())
}

/// Body text: non-empty, no NUL, at most `max_content_bytes`.
pub fn content(field: &'static str, v: &str, l: &Limits) -> Result<(), ValidationError> {
    if v.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if v.len() > l.max_content_bytes {
        return Err(ValidationError::TooLong {
            field,
            len: v.len(),
            max: l.max_content_bytes,
            limit_name: "max_content_bytes",
        });
    }
    no_nul(field, v)
}

fn no_nul(field: &'static str, v: &str) -> Result<(), ValidationError> {
    match v.bytes().position(|b| b == 0) {
        Some(at) => Err(ValidationError::NulByte { field, at }),
        None => Ok(()),
    }
}

/// Optional JSON metadata: an object, at most `max_metadata_bytes` serialised.
pub fn json_object(field: &'static str, v: Option<&Value>, l: &Limits) -> Result<(), ValidationError> {
    let Some(v) = v else { return Ok(()) };
    match v {
        Value::Object(_) | Value::Null => {}
        Value::Array(_) => return Err(ValidationError::NotAnObject { field, got: "an array" }),
        Value::String(_) => return Err(ValidationError::NotAnObject { field, got: "a string" }),
        Value::Number(_) => return Err(ValidationError::NotAnObject { field, got: "a number" }),
        Value::Bool(_) => return Err(ValidationError::NotAnObject { field, got: "a boolean" }),
    }
    let len = v.to_string().len();
    if len > l.max_metadata_bytes {
        return Err(ValidationError::TooLong {
            field,
            len,
            max: l.max_metadata_bytes,
            limit_name: "max_metadata_bytes",
        });
    }
    if v.to_string().contains("\\u0000") {
        return Err(ValidationError::NulByte { field, at: 0 });
    }
    Ok(())
}

/// Parses JSON text that must be an object.
pub fn parse_object(field: &'static str, s: &str) -> Result<Value, ValidationError> {
    let v: Value = serde_json::from_str(s).map_err(|e| ValidationError::InvalidJson {
        field,
        reason: e.to_string(),
    })?;
    if !v.is_object() {
        return Err(ValidationError::NotAnObject { field, got: kind(&v) });
    }
    Ok(v)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An empty JSON object, for callers that want one.
pub fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_input_with_clear_errors() {
        let l = Limits::default();
        let m = Message::new("", "user", "hi");
        assert_eq!(m.validate(&l), Err(ValidationError::Empty { field: "session_id" }));
        let m = Message::new("s", "user", "a\0b");
        assert!(matches!(m.validate(&l), Err(ValidationError::NulByte { field: "content", at: 1 })));
        let big = "x".repeat(l.max_content_bytes + 1);
        let k = Knowledge::new("c", "t", big);
        let e = k.validate(&l).unwrap_err();
        assert!(e.to_string().contains("max_content_bytes"), "{e}");
        assert!(matches!(
            Message::new("s", "u", "c").metadata_str("{nope"),
            Err(ValidationError::InvalidJson { .. })
        ));
        assert!(matches!(
            Message::new("s", "u", "c").metadata_str("[1]"),
            Err(ValidationError::NotAnObject { .. })
        ));
        let mut m = Metric::new("a", "t", 1.0, 1);
        m.duration_ms = f64::NAN;
        assert!(m.validate(&l).is_err());
        assert!(Metric::new("a", "t", 1250.0, 3500).validate(&l).is_ok());
    }
}
