//! Tool arguments: one struct per tool, with the seed's argument names. Each derives a
//! JSON Schema (what `tools/list` shows) and refuses unknown fields, so a typo such as
//! `sessionId` is reported instead of silently ignored. Checks serde cannot express
//! (ranges, enums given as text) live in the `check_*` functions below.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest page `get_conversations` returns.
pub const MAX_PAGE: u32 = 1000;
/// Largest `limit` `search_knowledge` accepts.
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Most bind parameters one statement may take (SQLite's own default limit).
pub const MAX_PARAMS: usize = 32_766;
/// Default kv namespace when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A raw SQL statement with positional parameters.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// Exactly one SQL statement. Use `?` (or `?1`, `?2`, ...) placeholders for values.
    pub query: String,
    /// Values for the placeholders, in order, as a JSON array. Numbers bind as INTEGER or
    /// REAL, strings as TEXT, null as NULL, booleans as 0/1, arrays/objects as their JSON
    /// text. Example: ["agent-123", "code-analysis", 1250, 3500].
    #[serde(default)]
    pub params: Option<Vec<Value>>,
    /// Database to run on; omit (or "home") for the home database. list_databases lists them.
    #[serde(default)]
    pub database: Option<String>,
}

/// Only selects a database.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseArgs {
    /// Database to inspect; omit (or "home") for the home database. list_databases lists them.
    #[serde(default)]
    pub database: Option<String>,
}

/// Arguments of list_tables.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTablesArgs {
    /// Database to inspect; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
    /// Also list the runtime's internal tables (`_changes`, `_meta`, ...) and FTS shadow
    /// tables. Default false.
    #[serde(default)]
    pub include_internal: bool,
}

/// Arguments of describe_table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeTableArgs {
    /// Table (or view) name, exactly as list_tables shows it.
    #[serde(alias = "table_name")]
    pub table: String,
    /// Database to inspect; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
}

/// Arguments of add_conversation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddConversationArgs {
    /// Conversation/session this message belongs to, e.g. "global-session-123".
    pub session_id: String,
    /// Who wrote the message: "user", "assistant", "system", "tool" or any short label.
    pub role: String,
    /// The message text (at most the server's content limit, 1 MiB by default).
    pub content: String,
    /// Optional JSON object kept with the message, e.g. {"region": "us-west-2", "latency": 25}.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Database to write to; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
}

/// Arguments of get_conversations.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetConversationsArgs {
    /// Session whose messages to return, oldest first.
    pub session_id: String,
    /// Messages per page, 1..=1000. Default 50.
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Database to read; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
}

/// Arguments of add_knowledge.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKnowledgeArgs {
    /// Broad area, e.g. "edge-computing".
    pub category: String,
    /// What the entry is about, e.g. "latency-optimization".
    pub topic: String,
    /// The knowledge itself (searchable text).
    pub content: String,
    /// Short labels, e.g. ["performance", "edge", "distributed"].
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Optional JSON object kept with the entry, e.g. {"regions": ["us-west-2"]}.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Region the entry belongs to (search can filter on it).
    #[serde(default)]
    pub region: Option<String>,
    /// Database to write to; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
}

/// How search_knowledge ranks entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Full-text (BM25) over topic, content and tags.
    #[default]
    Lexical,
    /// Embedding similarity.
    Vector,
    /// Lexical and vector ranks fused.
    Hybrid,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Lexical => "lexical",
            SearchMode::Vector => "vector",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

/// Arguments of search_knowledge.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchKnowledgeArgs {
    /// Words to look for. Any text is accepted; search operators are treated as words.
    pub query: String,
    /// Most hits to return, 1..=100. Default 10.
    #[serde(default)]
    pub limit: Option<u32>,
    /// "lexical", "vector" or "hybrid". Default: hybrid (lexical when no embedder is set).
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Only entries of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Only entries carrying all of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Only entries of this region.
    #[serde(default)]
    pub region: Option<String>,
    /// Database to search; omit (or "home") for the home database.
    #[serde(default)]
    pub database: Option<String>,
}

/// Arguments of record_metric.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordMetricArgs {
    /// Agent that ran the task, e.g. "agent-123".
    pub agent_id: String,
    /// Kind of task, e.g. "code-analysis".
    pub task_type: String,
    /// How long the task took, in milliseconds (>= 0).
    pub duration_ms: f64,
    /// Tokens the task used (>= 0). Default 0.
    #[serde(default)]
    pub tokens_used: Option<i64>,
    /// Region the agent ran in.
    #[serde(default)]
    pub region: Option<String>,
    /// Optional JSON object with anything else worth keeping.
    #[serde(default)]
    pub extra: Option<Map<String, Value>>,
}

/// Arguments of get_metrics.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetMetricsArgs {
    /// Only tasks finished at or after this time (milliseconds since the Unix epoch).
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// Arguments of sync_status.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncStatusArgs {
    /// Only this region; omit for all.
    #[serde(default)]
    pub region: Option<String>,
}

/// Addresses one kv entry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvKeyArgs {
    /// The key.
    pub key: String,
    /// Namespace of the key. Default "default".
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Arguments of kv_set.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvSetArgs {
    /// The key.
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// Namespace of the key. Default "default".
    #[serde(default)]
    pub namespace: Option<String>,
    /// Expire the entry after this many milliseconds; omit for no expiry.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// Arguments of kv_cas.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvCasArgs {
    /// The key.
    pub key: String,
    /// The new value (any JSON).
    pub value: Value,
    /// Swap only if the entry's current version is this one; null or omitted: only if
    /// the key does not exist (create-if-absent). kv_get returns the version.
    #[serde(default)]
    pub expected_version: Option<i64>,
    /// Namespace of the key. Default "default".
    #[serde(default)]
    pub namespace: Option<String>,
    /// Expire the entry after this many milliseconds; omit for no expiry.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// Page size for get_conversations (default 50), or why the value is refused.
pub fn check_page_limit(limit: Option<u32>) -> Result<usize, String> {
    match limit {
        None => Ok(50),
        Some(0) => Err("`limit` must be at least 1".into()),
        Some(n) if n > MAX_PAGE => Err(format!(
            "`limit` is {n}; the most one page returns is {MAX_PAGE}; follow `next_cursor` for more"
        )),
        Some(n) => Ok(n as usize),
    }
}

/// Hit count for search_knowledge (default 10), or why the value is refused.
pub fn check_search_limit(limit: Option<u32>) -> Result<usize, String> {
    match limit {
        None => Ok(10),
        Some(0) => Err("`limit` must be at least 1".into()),
        Some(n) if n > MAX_SEARCH_LIMIT => Err(format!("`limit` is {n}; search returns at most {MAX_SEARCH_LIMIT} hits")),
        Some(n) => Ok(n as usize),
    }
}

/// The statement, checked for emptiness and length before it reaches SQLite.
pub fn check_query(query: &str, max_bytes: usize) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("`query` is empty; give one SQL statement".into());
    }
    if query.len() > max_bytes {
        return Err(format!(
            "`query` is {} bytes; the limit is {max_bytes} bytes (--max-sql-bytes); shorten it or pass values as `params`",
            query.len()
        ));
    }
    Ok(())
}

/// Parameters as SQL values, refusing too many.
pub fn check_params(params: Option<&[Value]>) -> Result<Vec<edgeswarm::SqlValue>, String> {
    let p = params.unwrap_or_default();
    if p.len() > MAX_PARAMS {
        return Err(format!("`params` has {} values; a statement takes at most {MAX_PARAMS}", p.len()));
    }
    Ok(p.iter().map(edgeswarm::SqlValue::from_json).collect())
}

/// A TTL in ms as a duration; zero is refused (it would expire at once).
pub fn check_ttl(ttl_ms: Option<u64>) -> Result<Option<std::time::Duration>, String> {
    match ttl_ms {
        None => Ok(None),
        Some(0) => Err("`ttl_ms` is 0, which would expire the entry at once; omit it for no expiry or give a positive number".into()),
        Some(ms) => Ok(Some(std::time::Duration::from_millis(ms))),
    }
}

/// The namespace, defaulting to "default".
pub fn namespace(ns: Option<&str>) -> &str {
    ns.unwrap_or(DEFAULT_NAMESPACE)
}

/// Whether `database` names the home database.
pub fn is_home(database: Option<&str>, home_stem: &str) -> bool {
    match database.map(str::trim) {
        None | Some("") => true,
        Some(d) => d.eq_ignore_ascii_case("home") || d == "main" || d == home_stem,
    }
}

/// `s` cut to at most `max` bytes on a char boundary, and whether it was cut.
pub fn clip(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn seed_arguments_parse() {
        let a: AddConversationArgs = parse(json!({
            "session_id": "global-session-123", "role": "user",
            "content": "Query from edge location", "metadata": {"region": "us-west-2", "latency": 25}
        }))
        .unwrap();
        assert_eq!(a.session_id, "global-session-123");
        assert_eq!(a.metadata.unwrap()["latency"], json!(25));

        let k: AddKnowledgeArgs = parse(json!({
            "category": "edge-computing", "topic": "latency-optimization",
            "content": "Best practices for edge deployment",
            "tags": ["performance", "edge", "distributed"],
            "metadata": {"regions": ["us-west-2", "eu-central-1"]}
        }))
        .unwrap();
        assert_eq!(k.tags.unwrap().len(), 3);

        let q: QueryArgs = parse(json!({
            "query": "INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used) VALUES (?, ?, ?, ?)",
            "params": ["agent-123", "code-analysis", 1250, 3500]
        }))
        .unwrap();
        let p = check_params(q.params.as_deref()).unwrap();
        assert_eq!(
            p,
            vec![
                "agent-123".into(),
                "code-analysis".into(),
                edgeswarm::SqlValue::Integer(1250),
                edgeswarm::SqlValue::Integer(3500)
            ]
        );
    }

    #[test]
    fn missing_mistyped_and_unknown_arguments_are_refused() {
        let e = parse::<AddConversationArgs>(json!({"role": "user", "content": "x"})).unwrap_err();
        assert!(e.contains("missing field `session_id`"), "{e}");
        let e = parse::<AddConversationArgs>(json!({"session_id": "s", "role": "user", "content": "x", "metadata": "not an object"}))
            .unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse::<AddConversationArgs>(json!({"sessionId": "s", "session_id": "s", "role": "u", "content": "x"})).unwrap_err();
        assert!(e.contains("unknown field `sessionId`"), "{e}");
        let e = parse::<QueryArgs>(json!({"query": "SELECT 1", "params": "a"})).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse::<AddKnowledgeArgs>(json!({"category": "c", "topic": "t", "content": "x", "tags": "edge"})).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse::<SearchKnowledgeArgs>(json!({"query": "x", "mode": "semantic"})).unwrap_err();
        assert!(e.contains("unknown variant `semantic`"), "{e}");
        let e = parse::<KvSetArgs>(json!({"key": "k"})).unwrap_err();
        assert!(e.contains("missing field `value`"), "{e}");
        let e = parse::<GetConversationsArgs>(json!({"session_id": "s", "limit": -1})).unwrap_err();
        assert!(e.contains("invalid value"), "{e}");
    }

    #[test]
    fn describe_table_accepts_table_name_alias() {
        let d: DescribeTableArgs = parse(json!({"table_name": "kv"})).unwrap();
        assert_eq!(d.table, "kv");
    }

    #[test]
    fn range_checks() {
        assert_eq!(check_page_limit(None), Ok(50));
        assert!(check_page_limit(Some(0)).is_err());
        assert!(check_page_limit(Some(1001)).unwrap_err().contains("next_cursor"));
        assert_eq!(check_search_limit(Some(100)), Ok(100));
        assert!(check_search_limit(Some(101)).is_err());
        assert!(check_query("  ", 10).is_err());
        assert!(check_query("SELECT 1", 4).unwrap_err().contains("--max-sql-bytes"));
        assert!(check_query("SELECT 1", 100).is_ok());
        assert!(check_ttl(Some(0)).is_err());
        assert_eq!(check_ttl(Some(5)).unwrap(), Some(std::time::Duration::from_millis(5)));
        assert!(check_params(Some(&vec![json!(1); MAX_PARAMS + 1])).is_err());
        assert_eq!(
            check_params(Some(&[json!(true), json!(null), json!(1.5), json!({"a":1})])).unwrap(),
            vec![
                edgeswarm::SqlValue::Integer(1),
                edgeswarm::SqlValue::Null,
                edgeswarm::SqlValue::Real(1.5),
                edgeswarm::SqlValue::Text("{\"a\":1}".into()),
            ]
        );
    }

    #[test]
    fn helpers() {
        assert!(is_home(None, "edgeswarm"));
        assert!(is_home(Some("HOME"), "edgeswarm"));
        assert!(is_home(Some("edgeswarm"), "edgeswarm"));
        assert!(!is_home(Some("us-west-2"), "edgeswarm"));
        assert_eq!(clip("héllo", 2), ("h", true));
        assert_eq!(clip("abc", 5), ("abc", false));
        assert_eq!(namespace(None), "default");
    }

    #[test]
    fn schemas_are_objects_without_extra_fields() {
        let s = serde_json::to_value(schemars::schema_for!(AddConversationArgs)).unwrap();
        assert_eq!(s["type"], "object");
        assert_eq!(s["additionalProperties"], false);
        let req: Vec<&str> = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(req, ["session_id", "role", "content"]);
        let s = serde_json::to_value(schemars::schema_for!(SearchKnowledgeArgs)).unwrap();
        assert!(s.to_string().contains("hybrid"));
    }
}
