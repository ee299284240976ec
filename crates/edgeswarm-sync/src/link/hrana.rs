//! `HranaLink`: a region behind a Hrana-over-HTTP server (Turso Cloud, sqld,
//! `tursodb --sync-server`).
//!
//! Every request is one POST to `<url>/v2/pipeline` with a single `batch` request whose
//! steps are `BEGIN`, the statements (each conditioned on the previous step), `COMMIT`,
//! and a `ROLLBACK` that runs only if `COMMIT` did not — so a shipped batch is atomic.
//! No baton is kept (each pipeline is its own stream): `tursodb --sync-server` 0.6.0
//! does not implement `close` and ignores batons, and stateless requests need nothing
//! more. Requests of one link are serialised (one in flight): tursodb runs each
//! pipeline on its own connection, and two write transactions at once would fail with
//! "database is locked". Bodies are encoded before a request waits for its turn and
//! replies decoded after it, so encoding the next push overlaps the server's work on
//! the current one. Connections are reused where the server allows it (reqwest's pool;
//! HTTP/2 when TLS ALPN offers it); tursodb 0.6/0.7 answer `Connection: close` to
//! every request and speak HTTP/1.1 only (no h2c), so each request is a new TCP
//! connection there (~0.1 ms on loopback). Transient failures (connect errors, time
//! outs, 5xx) are retried with exponential backoff; 401/403 are not.

use super::tls::{classify, client_config, plain_http_tls, redact_url, request_url, TlsMode};
use super::{LogEntry, PullPage, PushAck, PushBatch, RegionLink, RowLookup};
use crate::error::{Result, SyncError};
use crate::row::{
    Registry, TableSpec, REGION_CURSORS_DDL, REGION_CURSOR_UPSERT, REGION_EPOCH_INIT, REGION_EPOCH_READ, REGION_EPOCH_SET, REGION_LOG_DDL,
    REGION_LOG_END, REGION_LOG_PULL, REGION_META_DDL,
};
use async_trait::async_trait;
use edgeswarm_store::{QueryResult, SqlValue};
use libsql_hrana::proto::{
    Batch, BatchResult, BatchStreamReq, ExecuteStreamReq, PipelineReqBody, PipelineRespBody, Stmt, StmtResult, StreamRequest,
    StreamResponse, StreamResult, Value,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A region served over Hrana HTTP.
pub struct HranaLink {
    /// Region name (errors and logs).
    region: String,
    /// Base url shown in status, logs and errors (redacted: no query, no password).
    url: String,
    /// Base url requests go to (`libsql://` mapped to `https://`, no trailing slash,
    /// no query).
    base: String,
    /// `<url>/v2/pipeline`.
    endpoint: String,
    /// Bearer token, if the region has one.
    token: Option<String>,
    /// Where the token came from, to name it in a 401 error.
    token_env: String,
    /// HTTP client with the request timeout.
    client: reqwest::Client,
    /// Attempts per request on transient errors.
    attempts: u32,
    /// Serialises requests (one pipeline in flight per link).
    gate: tokio::sync::Mutex<()>,
    /// Tables already created on the server.
    ensured: Mutex<HashSet<String>>,
    /// How the server certificate is checked (status).
    tls: TlsMode,
    /// What the server says it is, once asked (status); `None` until then or if it
    /// does not say.
    /// Asked once per link, before the first DDL (see `discover_version`).
    server_version: tokio::sync::OnceCell<Option<String>>,
    /// Largest reply body read, in bytes (`SyncConfig::max_reply_bytes`): a bigger one
    /// fails with [`SyncError::ReplyTooLarge`] without being read whole.
    max_reply_bytes: usize,
}

impl std::fmt::Debug for HranaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HranaLink")
            .field("region", &self.region)
            .field("url", &self.url)
            .finish()
    }
}

/// A store value as a Hrana protocol value (what a statement binds).
pub fn to_hrana(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer { value: i },
        SqlValue::Real(f) => Value::Float { value: f },
        SqlValue::Text(s) => Value::Text { value: s.into() },
        SqlValue::Blob(b) => Value::Blob { value: b.into() },
    }
}

fn from_hrana(v: Value) -> SqlValue {
    match v {
        Value::None | Value::Null => SqlValue::Null,
        Value::Integer { value } => SqlValue::Integer(value),
        Value::Float { value } => SqlValue::Real(value),
        Value::Text { value } => SqlValue::Text(value.to_string()),
        Value::Blob { value } => SqlValue::Blob(value.to_vec()),
    }
}

fn stmt(sql: &str, params: Vec<SqlValue>, want_rows: bool) -> Stmt {
    let mut s = Stmt::new(sql, want_rows);
    for p in params {
        s.bind(to_hrana(p));
    }
    s
}

fn to_result(r: StmtResult) -> QueryResult {
    QueryResult {
        columns: r.cols.into_iter().map(|c| c.name.unwrap_or_default()).collect(),
        rows: r
            .rows
            .into_iter()
            .map(|row| row.values.into_iter().map(from_hrana).collect())
            .collect(),
        truncated: false,
        rows_affected: r.affected_row_count,
        last_insert_rowid: r.last_insert_rowid,
    }
}

/// The innermost causes of an error, joined (reqwest's own message is just "error
/// sending request"; the cause says "connection refused" or "dns error").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = c.source();
    }
    parts.join(": ")
}

impl HranaLink {
    /// A link to `url` (http://, https:// or libsql://) verified against the system
    /// trust roots. `token_env` names the environment variable with the bearer token;
    /// it is read now.
    pub fn new(region: &str, url: &str, token_env: Option<&str>, timeout: Duration, attempts: u32) -> Result<Self> {
        Self::with_ca(region, url, token_env, None, timeout, attempts)
    }

    /// As [`HranaLink::new`], with an optional CA file (PEM) that replaces the system
    /// trust roots for this region (a private CA).
    pub fn with_ca(
        region: &str,
        url: &str,
        token_env: Option<&str>,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
        attempts: u32,
    ) -> Result<Self> {
        let (base, url_token) = request_url(url);
        let token = match token_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| SyncError::Config(format!("region `{region}`: environment variable `{var}` (token_env) is not set")))?,
            ),
            None => url_token,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60));
        let tls = if base.starts_with("https://") {
            let (cfg, mode) = client_config(region, ca_file)?;
            builder = builder.tls_backend_preconfigured(cfg);
            mode
        } else {
            if ca_file.is_some() {
                tracing::warn!(region, "ca_file is ignored: the url is not https://");
            }
            // reqwest builds a TLS backend even for plain http; with no process-wide
            // crypto provider it needs one handed in (it trusts nothing: never used).
            builder = builder.tls_backend_preconfigured(plain_http_tls()).http1_only();
            TlsMode::None
        };
        let client = builder
            .build()
            .map_err(|e| SyncError::Config(format!("region `{region}`: HTTP client: {}", causes(&e))))?;
        Ok(HranaLink {
            region: region.to_string(),
            endpoint: format!("{base}/v2/pipeline"),
            url: redact_url(&base),
            base,
            token,
            token_env: token_env.unwrap_or("(no token_env configured)").to_string(),
            client,
            attempts: attempts.max(1),
            gate: tokio::sync::Mutex::new(()),
            ensured: Mutex::new(HashSet::new()),
            tls,
            server_version: tokio::sync::OnceCell::new(),
            max_reply_bytes: crate::config::SyncConfig::default().max_reply_bytes,
        })
    }

    /// The same link with another reply cap (bytes).
    pub fn with_max_reply_bytes(mut self, n: usize) -> Self {
        self.max_reply_bytes = n.max(1);
        self
    }

    /// Reads a reply body, at most `max_reply_bytes` of it: refused at once when its
    /// Content-Length says it is bigger, else streamed chunk by chunk and abandoned
    /// (the connection is dropped) as soon as it passes the cap.
    async fn read_capped(&self, mut resp: reqwest::Response) -> Result<bytes::Bytes> {
        let cap = self.max_reply_bytes;
        let too_large = || SyncError::ReplyTooLarge {
            region: self.region.clone(),
            limit_bytes: cap,
        };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut buf = bytes::BytesMut::with_capacity(resp.content_length().map_or(8192, |n| n as usize));
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if buf.len() + c.len() > cap {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => {
                    return Err(SyncError::Unreachable {
                        region: self.region.clone(),
                        url: self.url.clone(),
                        reason: format!("reading the reply: {}", causes(&e.without_url())),
                    })
                }
            }
        }
    }

    /// Maps a failed send to a typed error: a TLS failure says what failed and the
    /// fix; anything else is "cannot reach" with its cause.
    fn send_error(&self, e: reqwest::Error) -> SyncError {
        if let Some(t) = classify(&self.region, &self.url, self.tls, &e) {
            return t;
        }
        let e = e.without_url();
        SyncError::Unreachable {
            region: self.region.clone(),
            url: self.url.clone(),
            reason: if e.is_timeout() { "request timed out".into() } else { causes(&e) },
        }
    }

    /// One POST of an encoded pipeline; the reply's bytes (decoded by the caller,
    /// after the gate is released).
    async fn post_once(&self, body: bytes::Bytes) -> Result<bytes::Bytes> {
        let mut req = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| self.send_error(e))?;
        let status = resp.status().as_u16();
        let bytes = self.read_capped(resp).await?;
        if status == 401 || status == 403 {
            return Err(SyncError::Unauthorized {
                region: self.region.clone(),
                status,
                token_env: self.token_env.clone(),
            });
        }
        if !(200..300).contains(&status) {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(SyncError::Http {
                region: self.region.clone(),
                status,
                body,
            });
        }
        Ok(bytes)
    }

    /// Asks the server what it is, once, best effort: `GET <url>/version` (sqld, Turso
    /// Cloud), else `SELECT turso_version()` (tursodb), else SQLite's version.
    /// One round trip, then what the server says it is (for `doctor`): `Ok(version)`
    /// when it answered (`None`: it does not report one), else the typed error.
    pub async fn probe(&self) -> Result<Option<String>> {
        self.execute(Stmt::new("SELECT 1", true)).await?;
        self.discover_version().await;
        Ok(RegionLink::server_version(self))
    }

    async fn discover_version(&self) {
        // Concurrent first callers (a push and a pull) wait for the one discovery, so
        // it runs before any DDL.
        self.server_version.get_or_init(|| self.ask_version()).await;
    }

    async fn ask_version(&self) -> Option<String> {
        let mut found = None;
        let mut req = self.client.get(format!("{}/version", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Ok(r) = req.send().await {
            if r.status().is_success() {
                if let Ok(t) = r.text().await {
                    let t = t.trim();
                    if !t.is_empty() && t.len() <= 200 && !t.starts_with('<') {
                        found = Some(t.to_string());
                    }
                }
            }
        }
        if found.is_none() {
            // tursodb 0.6/0.7 answer their own version only while the database is
            // empty; once a schema is written they answer the file header's SQLite
            // version (3.47.0), which says nothing about the server.
            if let Ok(q) = self.execute(Stmt::new("SELECT turso_version()", true)).await {
                found = q
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_str())
                    .filter(|v| v.starts_with("0."))
                    .map(|v| format!("tursodb {v}"));
            }
        }
        if found.is_none() {
            if let Ok(q) = self.execute(Stmt::new("SELECT sqlite_version()", true)).await {
                found = q
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_str())
                    .map(|v| format!("libSQL server, version not reported (SQLite {v})"));
            }
        }
        if let Some(v) = &found {
            tracing::info!(region = %self.region, server = %v, tls = self.tls.as_str(), "region server");
        }
        found
    }

    /// Sends one request with retries; returns its response.
    async fn request(&self, r: StreamRequest) -> Result<StreamResponse> {
        let body = PipelineReqBody {
            baton: None,
            requests: vec![r],
        };
        // Encoded before taking the gate: a big push is encoded while the previous
        // request is still with the server (encoding 2,000 rows is ~10-30 ms).
        let body =
            bytes::Bytes::from(serde_json::to_vec(&body).map_err(|e| SyncError::Internal(format!("encoding a Hrana request: {e}")))?);
        let g = self.gate.lock().await;
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 1;
        let reply = loop {
            match self.post_once(body.clone()).await {
                Ok(r) => break r,
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::debug!(region = %self.region, attempt, error = %e, "retrying Hrana request");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        drop(g);
        let resp = serde_json::from_slice::<PipelineRespBody>(&reply).map_err(|e| SyncError::MalformedReply {
            region: self.region.clone(),
            reason: format!(
                "{e}; reply starts with {:?}",
                String::from_utf8_lossy(&reply).chars().take(120).collect::<String>()
            ),
        })?;
        let malformed = |reason: &str| SyncError::MalformedReply {
            region: self.region.clone(),
            reason: reason.into(),
        };
        match resp.results.into_iter().next() {
            Some(StreamResult::Ok { response }) => Ok(response),
            Some(StreamResult::Error { error }) => Err(SyncError::RegionSql {
                region: self.region.clone(),
                message: format!("{} ({})", error.message, error.code),
            }),
            _ => Err(malformed("the reply has no result for the request")),
        }
    }

    async fn execute(&self, s: Stmt) -> Result<QueryResult> {
        match self.request(StreamRequest::Execute(ExecuteStreamReq { stmt: s })).await? {
            StreamResponse::Execute(r) => Ok(to_result(r.result)),
            _ => Err(SyncError::MalformedReply {
                region: self.region.clone(),
                reason: "expected an execute result".into(),
            }),
        }
    }

    /// Runs statements in one transactional batch; fails if any step failed or COMMIT
    /// did not run.
    async fn transaction(&self, stmts: Vec<Stmt>) -> Result<BatchResult> {
        let n = stmts.len();
        let batch = Batch::transactional(stmts);
        let res = match self.request(StreamRequest::Batch(BatchStreamReq { batch })).await? {
            StreamResponse::Batch(b) => b.result,
            _ => {
                return Err(SyncError::MalformedReply {
                    region: self.region.clone(),
                    reason: "expected a batch result".into(),
                })
            }
        };
        if let Some(e) = res.step_errors.iter().flatten().next() {
            return Err(SyncError::RegionSql {
                region: self.region.clone(),
                message: format!("{} ({}); the batch was rolled back", e.message, e.code),
            });
        }
        // Steps: BEGIN, n statements, COMMIT, ROLLBACK. COMMIT must have a result.
        let committed = res.step_results.get(n + 1).map(|r| r.is_some()).unwrap_or(false);
        if !committed {
            return Err(SyncError::MalformedReply {
                region: self.region.clone(),
                reason: format!(
                    "batch reply has {} step results, COMMIT (step {}) missing",
                    res.step_results.len(),
                    n + 1
                ),
            });
        }
        Ok(res)
    }

    async fn ensure_inner(&self, tables: &[Arc<TableSpec>]) -> Result<()> {
        let missing: Vec<Arc<TableSpec>> = {
            let e = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
            tables.iter().filter(|t| !e.contains(&*t.name)).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.discover_version().await;
        let mut stmts = vec![
            Stmt::new(REGION_LOG_DDL, false),
            Stmt::new(REGION_META_DDL, false),
            Stmt::new(REGION_CURSORS_DDL, false),
            stmt(REGION_EPOCH_INIT, vec![edgeswarm_core::new_id().into()], false),
        ];
        stmts.extend(
            missing
                .iter()
                .flat_map(|t| t.create_region_tables())
                .map(|sql| Stmt::new(sql, false)),
        );
        self.transaction(stmts).await?;
        let mut e = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        for t in missing {
            e.insert(t.name.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl RegionLink for HranaLink {
    fn region(&self) -> &str {
        &self.region
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn tls(&self) -> TlsMode {
        self.tls
    }
    fn server_version(&self) -> Option<String> {
        self.server_version.get().cloned().flatten()
    }

    async fn ensure_tables(&self, tables: &[Arc<TableSpec>]) -> Result<()> {
        self.ensure_inner(tables).await
    }

    async fn push(&self, batch: &PushBatch) -> Result<PushAck> {
        let tables: Vec<_> = batch.tables.values().cloned().collect();
        self.ensure_inner(&tables).await?;
        let stmts = batch
            .take_statements()
            .into_iter()
            .map(|st| stmt(&st.sql, st.params, false))
            .collect();
        match self.transaction(stmts).await {
            Ok(_) => Ok(PushAck { applied: None }),
            Err(e) => {
                // The region's tables are gone (a wiped server): create them again on
                // the next request.
                if matches!(&e, SyncError::RegionSql { message, .. } if message.contains("no such table")) {
                    self.ensured.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(e)
            }
        }
    }

    async fn pull(&self, after: i64, me: &str, limit: usize, reg: &Arc<Registry>) -> Result<PullPage> {
        // The log and every replicated table (with its superseded-versions table: a
        // region written by an older version may lack it); once per link.
        self.ensure_inner(&reg.all()).await?;
        // The page, the log end and the region's identity, in one transaction that
        // also records this puller's cursor (for the region's log compaction).
        let res = match self
            .transaction(vec![
                stmt(REGION_LOG_PULL, vec![after.into(), (limit as i64).into(), me.into()], true),
                stmt(REGION_LOG_END, vec![], true),
                stmt(REGION_EPOCH_READ, vec![], true),
                stmt(
                    REGION_CURSOR_UPSERT,
                    vec![me.into(), after.into(), edgeswarm_core::record::now_millis().into()],
                    false,
                ),
            ])
            .await
        {
            Ok(r) => r,
            // A fresh (or wiped) server has no log: nothing to pull. The tables are
            // created again on the next request; the actor notices a wiped region by
            // the missing identity.
            Err(SyncError::RegionSql { message, .. }) if message.contains("no such table") => {
                self.ensured.lock().unwrap_or_else(|p| p.into_inner()).clear();
                return Ok(PullPage::new(after, limit, 0, vec![]));
            }
            Err(e) => return Err(e),
        };
        let malformed = |reason: String| SyncError::MalformedReply {
            region: self.region.clone(),
            reason,
        };
        // Steps: BEGIN, page, end, epoch, cursor, COMMIT, ROLLBACK.
        let mut steps = res.step_results.into_iter().skip(1).take(3).map(|r| r.map(to_result));
        let (Some(Some(r)), Some(Some(e)), Some(Some(ep))) = (steps.next(), steps.next(), steps.next()) else {
            return Err(malformed("the pull reply lacks the page, the log end or the epoch".into()));
        };
        let end = e.rows.first().and_then(|r| r.first()).and_then(|v| v.as_i64()).unwrap_or(0);
        let epoch = ep.rows.first().and_then(|r| r.first()).and_then(|v| v.as_str()).map(str::to_string);
        let with_epoch = |mut p: PullPage| {
            p.epoch = epoch.clone();
            p
        };
        let mut entries = r
            .rows
            .iter()
            .map(|row| LogEntry::from_row(row).ok_or_else(|| malformed(format!("log row has unexpected shape: {row:?}"))))
            .collect::<Result<Vec<_>>>()?;
        // The versions the entries name: one more request, the point reads in one
        // read transaction.
        let lookups: Vec<(usize, RowLookup)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.row_lookup(me, reg).map(|l| (i, l)))
            .collect();
        if lookups.is_empty() {
            return Ok(with_epoch(PullPage::new(after, limit, end, entries)));
        }
        let mut stmts = Vec::with_capacity(lookups.len() * 2);
        for (_, l) in &lookups {
            stmts.push(stmt(&l.current.0, l.current.1.clone(), true));
            if let Some((sql, p)) = &l.prev {
                stmts.push(stmt(sql, p.clone(), true));
            }
        }
        let n = stmts.len();
        let res = self.transaction(stmts).await?;
        // Steps: BEGIN, the n reads, COMMIT, ROLLBACK.
        let mut results = res.step_results.into_iter().skip(1).take(n).map(|r| r.map(to_result));
        let mut next = || {
            results.next().flatten().ok_or_else(|| SyncError::MalformedReply {
                region: self.region.clone(),
                reason: "a read of the pulled rows has no result".into(),
            })
        };
        for (i, l) in lookups {
            let cur = next()?;
            let prev = if l.prev.is_some() { Some(next()?) } else { None };
            entries[i].row = l.pick(cur, prev);
        }
        Ok(with_epoch(PullPage::new(after, limit, end, entries)))
    }

    async fn ping(&self) -> Result<()> {
        self.execute(Stmt::new("SELECT 1", true)).await.map(|_| ())
    }

    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.execute(stmt(sql, params, true)).await
    }

    async fn maintain(&self, stmts: Vec<super::RegionStmt>) -> Result<usize> {
        let stmts: Vec<Stmt> = stmts.into_iter().map(|st| stmt(&st.sql, st.params, false)).collect();
        let res = self.transaction(stmts).await?;
        Ok(res.step_results.iter().flatten().map(|r| r.affected_row_count as usize).sum())
    }

    async fn set_epoch(&self, epoch: &str) -> Result<()> {
        self.execute(stmt(REGION_EPOCH_SET, vec![epoch.into()], false)).await.map(|_| ())
    }
}
