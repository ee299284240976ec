//! The MCP tools over one `Swarm` handle. Every tool validates its arguments, calls the
//! runtime, and answers with a JSON object (`structuredContent`) that is also sent as
//! text. A failed call is an `isError` result with `{kind, retryable, message}`; only an
//! unknown tool is a JSON-RPC error (see `errors`). Each call runs under the request time
//! limit (`--request-timeout-ms`).

use crate::args::*;
use crate::errors::{self, invalid, ToolError};
use edgeswarm::{CasOutcome, Knowledge, KnowledgeEntry, Message, Metric, QueryResult, Swarm, TableInfo};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest, CustomResult, ErrorCode, Implementation,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Every tool this server serves, in the order the README lists them.
pub const TOOL_NAMES: &[&str] = &[
    "execute_read_only_query",
    "execute_query",
    "list_databases",
    "get_database_info",
    "list_tables",
    "describe_table",
    "setup_memory_tables",
    "add_conversation",
    "get_conversations",
    "add_knowledge",
    "search_knowledge",
    "record_metric",
    "get_metrics",
    "sync_status",
    "kv_get",
    "kv_set",
    "kv_cas",
    "kv_delete",
];

/// Tables `setup_memory_tables` reports (created by the store's migrations).
const MEMORY_TABLES: &[&str] = &["conversations", "knowledge", "knowledge_fts", "agent_metrics", "kv"];

/// Longest knowledge content returned inline in a search hit.
const HIT_CONTENT_BYTES: usize = 4096;

/// Text results larger than this are sent compact instead of pretty-printed.
const PRETTY_TEXT_MAX: usize = 64 * 1024;

const INSTRUCTIONS: &str = "edgeswarm: persistent memory for agents on a libSQL database. \
Store and page through conversations (add_conversation / get_conversations), keep and search a \
knowledge base (add_knowledge / search_knowledge), record task metrics (record_metric / get_metrics), \
share state with versions and compare-and-swap (kv_get / kv_set / kv_cas / kv_delete), and run SQL \
(execute_read_only_query for reads, execute_query for writes; one statement per call, values as `params`). \
list_tables / describe_table show the schema; sync_status and list_databases show regions.";

struct Shared {
    /// The runtime every tool calls.
    swarm: Swarm,
    /// The home file, as list_databases and get_database_info report it.
    path: PathBuf,
    /// The home file's stem, accepted as the home database's name.
    home_stem: String,
    /// Longest a tool call may run before it is answered with `request_timeout`, so a
    /// call stuck behind a full queue or a slow region cannot hold a client (or an HTTP
    /// concurrency slot) forever.
    request_timeout: Duration,
}

/// Default of `--request-timeout-ms`: 30 s, well above the default query time limit (5 s)
/// so a statement is interrupted by its own limit first.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The MCP server: cheap to clone (one per HTTP session).
#[derive(Clone)]
pub struct EdgeswarmMcp {
    /// What every session shares: the swarm, the home file, the limits.
    shared: Arc<Shared>,
    /// rmcp's table of the tools below (built once by `#[tool_router]`).
    tool_router: ToolRouter<Self>,
}

type ToolResult = Result<CallToolResult, ToolError>;

/// A successful result: `value` as structured content and as JSON text.
pub fn ok(value: Value) -> ToolResult {
    let text = match serde_json::to_string_pretty(&value) {
        Ok(t) if t.len() <= PRETTY_TEXT_MAX => t,
        _ => value.to_string(),
    };
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(value);
    Ok(r)
}

/// A query result as JSON: column names, rows as objects keyed by column, typed values.
pub fn query_json(q: &QueryResult) -> Value {
    json!({
        "columns": q.columns,
        "rows": q.rows_as_objects(),
        "row_count": q.rows.len(),
        "truncated": q.truncated,
        "rows_affected": q.rows_affected,
        "last_insert_rowid": q.last_insert_rowid,
    })
}

impl EdgeswarmMcp {
    /// A server over `swarm`, whose home file is `path`.
    pub fn new(swarm: Swarm, path: PathBuf) -> Self {
        let home_stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "home".into());
        EdgeswarmMcp {
            shared: Arc::new(Shared {
                swarm,
                path,
                home_stem,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
            }),
            tool_router: Self::tool_router(),
        }
    }

    /// The same server with `limit` as the time limit of each tool call.
    pub fn with_request_timeout(self, limit: Duration) -> Self {
        let s = &self.shared;
        EdgeswarmMcp {
            shared: Arc::new(Shared {
                swarm: s.swarm.clone(),
                path: s.path.clone(),
                home_stem: s.home_stem.clone(),
                request_timeout: limit,
            }),
            tool_router: self.tool_router,
        }
    }

    /// The time limit of one tool call.
    pub fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }

    pub fn swarm(&self) -> &Swarm {
        &self.shared.swarm
    }

    /// Refuses a `database` that is not the home one, saying why.
    async fn check_database(&self, database: Option<&str>) -> Result<(), ToolError> {
        if is_home(database, &self.shared.home_stem) {
            return Ok(());
        }
        let name = database.unwrap_or_default().to_string();
        let regions = self.regions().await?;
        if regions
            .iter()
            .any(|r| r.get("region").and_then(Value::as_str) == Some(name.as_str()))
        {
            return Err(invalid(
                "database_not_served",
                format!("database `{name}` is a region replica; this server answers tool calls from the home database only (sync keeps regions in step with it). Omit `database` or pass \"home\"; sync_status shows the region's lag"),
            ));
        }
        Err(invalid(
            "unknown_database",
            format!("no database named `{name}`; list_databases lists them (omit `database` for the home database)"),
        ))
    }

    /// The regions recorded in the home file, as JSON objects (with pending change counts).
    async fn regions(&self) -> Result<Vec<Value>, ToolError> {
        let rows = self.shared.swarm.recorded_regions().await.map_err(errors::swarm)?;
        rows.iter()
            .map(|r| serde_json::to_value(r).map_err(|e| errors::internal("serialize", e.to_string(), false)))
            .collect()
    }

    fn file_sizes(&self) -> (u64, u64) {
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.shared.path.clone().into_os_string();
        wal.push("-wal");
        (size(&self.shared.path), size(std::path::Path::new(&wal)))
    }

    /// Tables of the home database, internal ones only when asked.
    async fn tables(&self, include_internal: bool) -> Result<Vec<TableInfo>, ToolError> {
        self.shared.swarm.list_tables(include_internal).await.map_err(errors::swarm)
    }

    async fn row_count(&self, table: &str) -> Result<i64, ToolError> {
        self.shared.swarm.row_count(table).await.map_err(errors::swarm)
    }

    /// The one place search is dispatched; the richer search actor plugs in here.
    async fn run_search(
        &self,
        a: &SearchKnowledgeArgs,
        limit: usize,
    ) -> Result<(Vec<Value>, &'static str, Option<String>, Value), ToolError> {
        use edgeswarm::{Filters, Mode, SearchRequest};
        let filters = Filters {
            category: a.category.clone(),
            tags_all: a.tags.clone().unwrap_or_default(),
            region: a.region.clone(),
            ..Default::default()
        };
        let mut req = SearchRequest::new(a.query.clone()).filters(filters).limit(limit as i64);
        if let Some(m) = a.mode {
            req = req.mode(match m {
                SearchMode::Lexical => Mode::Lexical,
                SearchMode::Vector => Mode::Vector,
                SearchMode::Hybrid => Mode::Hybrid,
            });
        }
        let resp = self.shared.swarm.search_with(req).await.map_err(errors::swarm)?;
        let mode_used = match resp.mode {
            Mode::Lexical => "lexical",
            Mode::Vector => "vector",
            Mode::Hybrid => "hybrid",
        };
        let mut notes: Vec<String> = resp.fallback_reason.iter().cloned().collect();
        notes.extend(resp.notes.iter().cloned());
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let vectors = json!({ "embedder": resp.embedder, "vectors_complete": resp.vectors_complete });
        let ids: Vec<String> = resp.hits.iter().map(|h| h.id.clone()).collect();
        let entries = self.shared.swarm.get_knowledge_many(&ids).await.map_err(errors::swarm)?;
        let by_id: std::collections::HashMap<&str, &KnowledgeEntry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
        let mut out = Vec::new();
        for h in resp.hits {
            let Some(e) = by_id.get(h.id.as_str()) else { continue };
            let (content, cut) = clip(&e.content, HIT_CONTENT_BYTES);
            out.push(json!({
                "id": h.id, "category": h.category, "topic": h.topic, "snippet": h.snippet, "score": h.score,
                "content": content, "content_truncated": cut, "tags": e.tags,
                "metadata": e.metadata, "region": e.region, "created_at": e.created_at,
            }));
        }
        Ok((out, mode_used, note, vectors))
    }
}

fn obj(m: Option<Map<String, Value>>) -> Option<Value> {
    m.map(Value::Object)
}

#[tool_router]
impl EdgeswarmMcp {
    #[tool(
        description = "Run ONE read-only SQL statement (SELECT, WITH ... SELECT, read-only PRAGMA) on the database and get rows back as objects keyed by column name. SQLite itself checks the statement cannot write: writes in any form, multiple statements, ATTACH and PRAGMA setters are refused. Results are capped (`truncated` is true when more rows existed) and a statement running past the time limit is interrupted. Use `?` placeholders with `params` for values.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn execute_read_only_query(&self, Parameters(a): Parameters<QueryArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let limits = self.shared.swarm.limits();
        check_query(&a.query, limits.max_sql_bytes).map_err(|m| invalid("invalid_argument", m))?;
        let params = check_params(a.params.as_deref()).map_err(|m| invalid("invalid_argument", m))?;
        let q = self.shared.swarm.read_sql(a.query, params).await.map_err(errors::swarm)?;
        ok(query_json(&q))
    }

    #[tool(
        description = "Run ONE SQL statement of any kind (INSERT, UPDATE, DELETE, CREATE TABLE, or a read) on the database; writes are committed before this returns and replicate like every other write. Pass values as `params` (a JSON array for the `?` placeholders), e.g. query \"INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used) VALUES (?, ?, ?, ?)\" with params [\"agent-123\", \"code-analysis\", 1250, 3500]. Returns rows_affected and last_insert_rowid (and rows for reads). Transactions, ATTACH and writes to the runtime's internal `_` tables are refused.",
        annotations(read_only_hint = false, destructive_hint = true, open_world_hint = false)
    )]
    async fn execute_query(&self, Parameters(a): Parameters<QueryArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let limits = self.shared.swarm.limits();
        check_query(&a.query, limits.max_sql_bytes).map_err(|m| invalid("invalid_argument", m))?;
        let params = check_params(a.params.as_deref()).map_err(|m| invalid("invalid_argument", m))?;
        let q = self.shared.swarm.execute_sql(a.query, params).await.map_err(errors::swarm)?;
        ok(query_json(&q))
    }

    #[tool(
        description = "List the databases this server knows: the home database (where every tool call runs) and every region replica with its sync status. Use a name as the `database` argument of other tools.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_databases(&self) -> ToolResult {
        let (size, wal) = self.file_sizes();
        let mut dbs = vec![json!({
            "name": "home", "role": "home", "path": self.shared.path.display().to_string(),
            "size_bytes": size, "wal_bytes": wal, "origin": self.shared.swarm.origin(),
        })];
        for r in self.regions().await? {
            dbs.push(json!({
                "name": r["region"], "role": "region", "url": r["url"], "status": r["status"],
                "avg_latency_ms": r["avg_latency_ms"], "performance_tier": r["performance_tier"],
                "pending_push_changes": r["pending_push_changes"], "last_sync_at": r["last_sync_at"],
            }));
        }
        ok(json!({ "databases": dbs }))
    }

    #[tool(
        description = "Describe a database: file size, page count and size, journal mode, schema version, every table with its row count, and the sync status of each region.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_database_info(&self, Parameters(a): Parameters<DatabaseArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let info = self.shared.swarm.database_info().await.map_err(errors::swarm)?;
        let mut tables = Vec::new();
        for t in self.tables(false).await? {
            let rows = self.row_count(&t.name).await?;
            tables.push(json!({ "name": t.name, "type": t.kind, "rows": rows }));
        }
        let (size, wal) = self.file_sizes();
        ok(json!({
            "name": "home",
            "path": self.shared.path.display().to_string(),
            "size_bytes": size,
            "wal_bytes": wal,
            "page_count": info.page_count,
            "page_size": info.page_size,
            "freelist_count": info.freelist_count,
            "journal_mode": info.journal_mode,
            "schema_version": info.schema_version,
            "origin": self.shared.swarm.origin(),
            "tables": tables,
            "sync": self.regions().await?,
        }))
    }

    #[tool(
        description = "List the tables and views of a database with their column and row counts. Internal runtime tables (names starting with `_`) and full-text shadow tables are hidden unless include_internal is true.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tables(&self, Parameters(a): Parameters<ListTablesArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let mut tables = Vec::new();
        for t in self.tables(a.include_internal).await? {
            let rows = if t.has_rows() { Some(self.row_count(&t.name).await?) } else { None };
            tables.push(json!({ "name": t.name, "type": t.kind, "columns": t.columns, "rows": rows }));
        }
        ok(json!({ "tables": tables }))
    }

    #[tool(
        description = "Describe one table: its columns (name, declared type, NOT NULL, default, primary-key position), primary key, indexes (with their columns and uniqueness), foreign keys, and the CREATE statement.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn describe_table(&self, Parameters(a): Parameters<DescribeTableArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let t = a.table.trim().to_string();
        if t.is_empty() {
            return Err(invalid("invalid_argument", "`table` is empty; list_tables lists the tables"));
        }
        let Some(d) = self.shared.swarm.describe_table(&t).await.map_err(errors::swarm)? else {
            return Err(invalid(
                "not_found",
                format!("no table or view named `{t}`; list_tables lists them (names are case-sensitive here)"),
            ));
        };
        ok(serde_json::to_value(d).map_err(|e| errors::internal("serialize", e.to_string(), false))?)
    }

    #[tool(
        description = "Make sure the memory tables (conversations, knowledge with its full-text index, agent_metrics, kv) exist. Idempotent: the schema is created and migrated when the database opens, so this reports what is there and changes nothing.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn setup_memory_tables(&self, Parameters(a): Parameters<DatabaseArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let present: Vec<String> = self.tables(true).await?.into_iter().map(|t| t.name).collect();
        let missing: Vec<&str> = MEMORY_TABLES.iter().copied().filter(|t| !present.iter().any(|p| p == t)).collect();
        if !missing.is_empty() {
            return Err(errors::internal(
                "schema_incomplete",
                format!("memory tables missing: {missing:?}; the database was not migrated by this build (open it with `edgeswarm mcp --db PATH` on a fresh file)"),
                false,
            ));
        }
        let info = self.shared.swarm.database_info().await.map_err(errors::swarm)?;
        ok(json!({
            "ok": true,
            "created": [],
            "already_present": MEMORY_TABLES,
            "schema_version": info.schema_version,
            "note": "the schema is created and migrated when the database opens; nothing needed creating",
        }))
    }

    #[tool(
        description = "Append a message to a conversation (session). Example: session_id \"global-session-123\", role \"user\", content \"Query from edge location\", metadata {\"region\": \"us-west-2\", \"latency\": 25}. Returns the message id once it is committed.",
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn add_conversation(&self, Parameters(a): Parameters<AddConversationArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let mut m = Message::new(a.session_id, a.role, a.content);
        m.metadata = obj(a.metadata);
        m.validate(self.shared.swarm.limits()).map_err(errors::validation)?;
        let (session, created_at) = (m.session_id.clone(), m.created_at);
        let id = self.shared.swarm.add_conversation(m).await.map_err(errors::swarm)?;
        ok(json!({ "id": id, "session_id": session, "created_at": created_at }))
    }

    #[tool(
        description = "Read a session's messages oldest first, one page at a time. Pass the returned `next_cursor` as `cursor` to get the next page; it is null on the last page.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_conversations(&self, Parameters(a): Parameters<GetConversationsArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let limit = check_page_limit(a.limit).map_err(|m| invalid("invalid_argument", m))?;
        let page = self
            .shared
            .swarm
            .get_conversations(&a.session_id, a.cursor.as_deref(), limit)
            .await
            .map_err(errors::swarm)?;
        ok(json!({
            "session_id": a.session_id,
            "count": page.items.len(),
            "messages": page.items,
            "next_cursor": page.next_cursor,
        }))
    }

    #[tool(
        description = "Add an entry to the shared knowledge base (indexed for search at once). Example: category \"edge-computing\", topic \"latency-optimization\", content \"Best practices for edge deployment\", tags [\"performance\", \"edge\", \"distributed\"], metadata {\"regions\": [\"us-west-2\", \"eu-central-1\"]}. Returns the entry id once committed.",
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn add_knowledge(&self, Parameters(a): Parameters<AddKnowledgeArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let mut k = Knowledge::new(a.category, a.topic, a.content).tags(a.tags.unwrap_or_default());
        k.metadata = obj(a.metadata);
        k.region = a.region;
        k.validate(self.shared.swarm.limits()).map_err(errors::validation)?;
        let (category, topic) = (k.category.clone(), k.topic.clone());
        let id = self.shared.swarm.add_knowledge(k).await.map_err(errors::swarm)?;
        ok(json!({ "id": id, "category": category, "topic": topic }))
    }

    #[tool(
        description = "Search the knowledge base. Any text works as `query` (words are matched, best first, with a highlighted snippet). Optional filters: category, tags (all must match), region. Questions in plain sentences work: stop words are dropped and entries matching more of the words rank first. `mode` is lexical, vector or hybrid (default: hybrid when the server has an embedder, else lexical; vector/hybrid without one answer lexically and say why in `note`); the result says which mode ranked it (`mode_used`), the embedder (`embedder`, null when none) and whether every entry has a vector (`vectors_complete`).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search_knowledge(&self, Parameters(a): Parameters<SearchKnowledgeArgs>) -> ToolResult {
        self.check_database(a.database.as_deref()).await?;
        let limit = check_search_limit(a.limit).map_err(|m| invalid("invalid_argument", m))?;
        let max = self.shared.swarm.limits().max_content_bytes;
        check_query(&a.query, max).map_err(|m| invalid("invalid_argument", m))?;
        let (hits, mode_used, note, vectors) = self.run_search(&a, limit).await?;
        ok(json!({
            "query": a.query,
            "mode": a.mode.map(|m| m.as_str()).unwrap_or("default"),
            "mode_used": mode_used,
            "embedder": vectors["embedder"],
            "vectors_complete": vectors["vectors_complete"],
            "note": note,
            "count": hits.len(),
            "hits": hits,
        }))
    }

    #[tool(
        description = "Record one agent task measurement (a row of agent_metrics): agent_id, task_type, duration_ms, optional tokens_used, region and extra (JSON object). get_metrics aggregates them.",
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn record_metric(&self, Parameters(a): Parameters<RecordMetricArgs>) -> ToolResult {
        let mut m = Metric::new(a.agent_id, a.task_type, a.duration_ms, a.tokens_used.unwrap_or(0));
        m.region = a.region;
        m.extra = obj(a.extra);
        m.validate(self.shared.swarm.limits()).map_err(errors::validation)?;
        let id = self.shared.swarm.record_metric(m).await.map_err(errors::swarm)?;
        ok(json!({ "id": id }))
    }

    #[tool(
        description = "Aggregate task metrics: count, mean, p50/p95/p99 duration (ms) and tokens, overall and by agent, task type and region; optionally only since `since_ms` (epoch milliseconds).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_metrics(&self, Parameters(a): Parameters<GetMetricsArgs>) -> ToolResult {
        let s = self.shared.swarm.metrics(a.since_ms).await.map_err(errors::swarm)?;
        ok(serde_json::to_value(s).map_err(|e| errors::internal("serialize", e.to_string(), false))?)
    }

    #[tool(
        description = "Sync status of each region replica: status, latency, lag (rows and ms), last sync time, errors and changes not yet pushed. Optionally one `region`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn sync_status(&self, Parameters(a): Parameters<SyncStatusArgs>) -> ToolResult {
        let mut regions = self.regions().await?;
        if let Some(want) = a.region.as_deref() {
            regions.retain(|r| r["region"].as_str() == Some(want));
            if regions.is_empty() {
                return Err(invalid(
                    "not_found",
                    format!("no region named `{want}`; sync_status without `region` lists them"),
                ));
            }
        }
        ok(json!({ "home_origin": self.shared.swarm.origin(), "regions": regions }))
    }

    #[tool(
        description = "Read a shared-memory entry by namespace (default \"default\") and key. Returns found=false if it is missing, deleted or expired; otherwise the value and its version (use the version with kv_cas).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn kv_get(&self, Parameters(a): Parameters<KvKeyArgs>) -> ToolResult {
        let ns = namespace(a.namespace.as_deref());
        match self.shared.swarm.kv_get(ns, &a.key).await.map_err(errors::swarm)? {
            Some(e) => ok(
                json!({ "found": true, "namespace": e.namespace, "key": e.key, "value": e.value, "version": e.version, "expires_at": e.expires_at, "updated_at": e.updated_at }),
            ),
            None => ok(json!({ "found": false, "namespace": ns, "key": a.key })),
        }
    }

    #[tool(
        description = "Set a shared-memory entry (any JSON value) under namespace (default \"default\") and key, optionally expiring after ttl_ms. Returns the entry's new version.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn kv_set(&self, Parameters(a): Parameters<KvSetArgs>) -> ToolResult {
        let ns = namespace(a.namespace.as_deref()).to_string();
        let ttl = check_ttl(a.ttl_ms).map_err(|m| invalid("invalid_argument", m))?;
        let v = self.shared.swarm.kv_set(&ns, &a.key, a.value, ttl).await.map_err(errors::swarm)?;
        ok(json!({ "namespace": ns, "key": a.key, "version": v }))
    }

    #[tool(
        description = "Compare-and-swap a shared-memory entry: writes `value` only if the entry's current version equals expected_version (null/omitted: only if the key does not exist). Returns swapped=true with the new version, or swapped=false with the current version so you can re-read and retry. Exactly one of several concurrent swaps from the same version wins.",
        annotations(read_only_hint = false, destructive_hint = true, open_world_hint = false)
    )]
    async fn kv_cas(&self, Parameters(a): Parameters<KvCasArgs>) -> ToolResult {
        let ns = namespace(a.namespace.as_deref()).to_string();
        let ttl = check_ttl(a.ttl_ms).map_err(|m| invalid("invalid_argument", m))?;
        match self
            .shared
            .swarm
            .kv_cas(&ns, &a.key, a.expected_version, a.value, ttl)
            .await
            .map_err(errors::swarm)?
        {
            CasOutcome::Swapped { version } => ok(json!({ "swapped": true, "namespace": ns, "key": a.key, "version": version })),
            CasOutcome::Conflict { current } => ok(
                json!({ "swapped": false, "namespace": ns, "key": a.key, "current_version": current, "expected_version": a.expected_version }),
            ),
        }
    }

    #[tool(
        description = "Delete a shared-memory entry (namespace default \"default\"). Returns deleted=true if it existed.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn kv_delete(&self, Parameters(a): Parameters<KvKeyArgs>) -> ToolResult {
        let ns = namespace(a.namespace.as_deref()).to_string();
        let deleted = self.shared.swarm.kv_delete(&ns, &a.key).await.map_err(errors::swarm)?;
        ok(json!({ "deleted": deleted, "namespace": ns, "key": a.key }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EdgeswarmMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("edgeswarm", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn on_custom_request(&self, request: CustomRequest, _context: RequestContext<RoleServer>) -> Result<CustomResult, ErrorData> {
        Err(malformed_request(&request.method, request.params.as_ref()))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        if !self.tool_router.has_route(&name) {
            return Err(errors::unknown_tool(&name, TOOL_NAMES));
        }
        let limit = self.shared.request_timeout;
        let tcc = ToolCallContext::new(self, request, context);
        let response = match tokio::time::timeout(limit, self.tool_router.call(tcc)).await {
            Ok(r) => r?,
            Err(_) => return Ok(request_timed_out(&name, limit).into_result().into()),
        };
        match response {
            // rmcp reports arguments that do not deserialize as an error result with text
            // only; give it the shape of every other failure, naming the tool.
            CallToolResponse::Complete(r) if r.is_error == Some(true) && r.structured_content.is_none() => {
                let text = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join("; ");
                let text = text.strip_prefix("failed to deserialize parameters: ").unwrap_or(&text).to_string();
                Ok(invalid(
                    "invalid_argument",
                    format!("{name}: invalid arguments: {text} (tools/list shows this tool's inputSchema)"),
                )
                .into_result()
                .into())
            }
            other => Ok(other),
        }
    }
}

/// The JSON-RPC error for a request rmcp could not read as the method it names (e.g.
/// `tools/call` without `name`, or with `arguments` that are not an object): rmcp hands
/// those over as custom requests, and "method not found" would send the client looking in
/// the wrong place.
fn malformed_request(method: &str, params: Option<&Value>) -> ErrorData {
    let why = match method {
        "tools/call" => serde_json::from_value::<CallToolRequestParams>(params.cloned().unwrap_or(Value::Null))
            .err()
            .map(|e| format!("{e}; params must be {{\"name\": <tool>, \"arguments\": {{...}}}}")),
        _ => None,
    };
    match why {
        Some(why) => ErrorData::new(
            ErrorCode::INVALID_PARAMS,
            format!("malformed {method} request: {why}"),
            Some(json!({"kind": "malformed_request", "retryable": false})),
        ),
        None => ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method `{method}` is not served here, or its params are malformed; this server serves tools (tools/list, tools/call)"),
            Some(json!({"kind": "malformed_request", "retryable": false})),
        ),
    }
}

/// The failure of a call cut off by the request time limit.
fn request_timed_out(tool: &str, limit: Duration) -> ToolError {
    ToolError::new(
        "request_timeout",
        format!(
            "{tool} did not finish within {} ms (--request-timeout-ms) and was abandoned; a write it made may still commit, \
             so read before repeating one. Narrow the call, or ask the operator to raise the limit",
            limit.as_millis()
        ),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeswarm::SqlValue;

    #[test]
    fn every_tool_is_routed_with_an_object_schema_and_a_description() {
        let tools = EdgeswarmMcp::tool_router().list_all();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort();
        let mut want = TOOL_NAMES.to_vec();
        want.sort();
        assert_eq!(names, want);
        for t in &tools {
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
            assert!(t.description.as_ref().is_some_and(|d| d.len() > 40), "{}", t.name);
        }
    }

    #[test]
    fn malformed_requests_are_json_rpc_errors_that_say_why() {
        let e = malformed_request("tools/call", Some(&json!({"arguments": {}})));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("name"), "{}", e.message);
        let e = malformed_request("tools/call", Some(&json!({"name": "kv_get", "arguments": "x"})));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("malformed tools/call"), "{}", e.message);
        let e = malformed_request("resources/frobnicate", None);
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(e.data.unwrap()["kind"], "malformed_request");
        let t = request_timed_out("execute_query", Duration::from_millis(700)).into_result();
        assert_eq!(t.is_error, Some(true));
        assert_eq!(t.structured_content.as_ref().unwrap()["kind"], "request_timeout");
        assert!(t.content[0].as_text().unwrap().text.contains("700 ms"));
    }

    #[test]
    fn results_are_structured_and_text() {
        let r = ok(json!({"a": 1})).unwrap();
        assert_eq!(r.structured_content, Some(json!({"a": 1})));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"a": 1}));
        let q = QueryResult {
            columns: vec!["n".into()],
            rows: vec![vec![SqlValue::Integer(3)]],
            ..Default::default()
        };
        assert_eq!(query_json(&q)["rows"], json!([{"n": 3}]));
    }
}
