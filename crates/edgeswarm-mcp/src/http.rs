//! Streamable HTTP: rmcp's `StreamableHttpService` at `/mcp`, behind a guard that applies,
//! in order:
//!
//! 1. **Host and Origin** (403), with the dashboard's rules (`edgeswarm::dashboard::auth`):
//!    a request carrying `Origin` must come from a loopback origin (`http(s)://localhost`,
//!    `127.x.x.x`, `[::1]`, any port) or one allowed with `--allow-origin` /
//!    `[mcp] allow_origins`; no `Origin` (SDK clients, curl) passes. Without a token the
//!    `Host` must be a loopback name or the bound IP (DNS rebinding).
//! 2. **Token** (401): `Authorization: Bearer <token>` when the server has one.
//! 3. **Body** (413 over `--max-body-bytes`; 400 with a JSON-RPC parse error when it is
//!    not UTF-8 JSON) before rmcp sees it.
//! 4. **Sessions** (503, `overloaded`): a request that would open a session beyond
//!    `--max-sessions`. Sessions idle for `--session-idle-timeout-ms` are closed by rmcp.
//! 5. **Concurrency** (503, `overloaded`, `Retry-After: 1`): a POST beyond
//!    `--max-concurrent-requests` in flight. A slot is held until the response stream ends.
//!
//! The time limit of each call is the server's (`EdgeswarmMcp::with_request_timeout`).
//! rmcp's own Host check is turned off (ours covers it and lets a token-protected server
//! answer to any name); its Origin check is left off (ours is the one that names the flag).
//!
//! Binding is checked before the server starts ([`check_bind`]): a non-loopback address
//! needs a token, unless `--insecure-no-auth` says otherwise, which is logged loudly.

use crate::server::EdgeswarmMcp;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edgeswarm::dashboard::auth::{self, normalise_origin, same, Access, Service};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// Default of `--max-sessions`: plenty for the few hosts that share one server, few enough
/// that abandoned sessions cannot pile up.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default of `--max-concurrent-requests`: several times the read pool (4 threads) and the
/// single writer, so calls queue in the runtime rather than being refused in normal use.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 32;
/// Default of `--session-idle-timeout-ms`: rmcp's own default (5 minutes).
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The MCP server's names in refusals.
pub const MCP: Service = Service {
    name: "the MCP server",
    exposure: "read and change the memory, raw SQL included",
    token_source: "--token or EDGESWARM_MCP_TOKEN",
    origin_source: "--allow-origin (or `allow_origins` in the [mcp] section of edgeswarm.toml)",
    own_origin: false,
};

/// What `edgeswarm mcp --http` was asked for, checked (see [`Options::check`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Bearer token clients must send; `None` only on loopback or with `insecure_no_auth`.
    pub token: Option<Arc<str>>,
    /// `--insecure-no-auth`: serve a non-loopback address without a token (warned at start).
    pub insecure_no_auth: bool,
    /// Origins allowed besides loopback ones, normalised (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most open sessions (503 for a new one beyond).
    pub max_sessions: usize,
    /// Most POSTs in flight at once (503 beyond).
    pub max_concurrent_requests: usize,
    /// A session with no traffic this long is closed, freeing its slot.
    pub session_idle_timeout: Duration,
}

impl Options {
    /// Options with the documented defaults for `addr`, no token and no extra origins.
    pub fn new(addr: SocketAddr) -> Self {
        Options {
            addr,
            token: None,
            insecure_no_auth: false,
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
        }
    }

    /// Refuses what would expose the memory or cannot work: see [`check_bind`], origins
    /// that are not `http(s)://host[:port]`, and zero caps.
    pub fn check(mut self) -> Result<Self, String> {
        check_bind(&self.addr, self.token.as_deref(), self.insecure_no_auth)?;
        let mut origins = Vec::new();
        for o in &self.allowed_origins {
            origins.push(check_origin_setting(o)?);
        }
        self.allowed_origins = origins;
        if self.max_sessions == 0 {
            return Err("--max-sessions must be at least 1".into());
        }
        if self.max_concurrent_requests == 0 {
            return Err("--max-concurrent-requests must be at least 1".into());
        }
        if self.session_idle_timeout < Duration::from_secs(1) {
            return Err("--session-idle-timeout-ms must be at least 1000".into());
        }
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes must be at least 1".into());
        }
        Ok(self)
    }

    /// Whether the server runs open on a network address (`--insecure-no-auth` used).
    pub fn open_to_network(&self) -> bool {
        self.token.is_none() && !self.addr.ip().is_loopback()
    }
}

/// The dashboard's bind rule with the MCP server's names: a non-loopback address needs a
/// token (of at least 16 characters), unless `insecure_no_auth`. A token and
/// `--insecure-no-auth` together are refused: one of them is a mistake.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>, insecure_no_auth: bool) -> Result<(), String> {
    if insecure_no_auth {
        if token.is_some() {
            return Err(
                "--insecure-no-auth and a token (--token or EDGESWARM_MCP_TOKEN) were both given; drop --insecure-no-auth to require the token, or unset the token"
                    .into(),
            );
        }
        return Ok(());
    }
    auth::check_bind_for(&MCP, addr, token).map_err(|e| {
        if token.is_none() {
            format!("{e}; on a network you trust, --insecure-no-auth serves without a token (logged as a warning)")
        } else {
            e
        }
    })
}

/// An allowed origin as given (`--allow-origin`, `[mcp] allow_origins`), normalised, or
/// why it is refused.
pub fn check_origin_setting(o: &str) -> Result<String, String> {
    let n = normalise_origin(o);
    let rest = n.strip_prefix("http://").or_else(|| n.strip_prefix("https://"));
    match rest {
        Some(hp) if !hp.is_empty() && !hp.contains('/') && !hp.contains('*') && !hp.contains('?') && !hp.contains('#') => Ok(n),
        _ => Err(format!(
            "allowed origin `{o}` is not of the form http(s)://host[:port] (no path, no wildcard), e.g. https://app.example.com"
        )),
    }
}

/// What the guard middleware holds.
#[derive(Clone)]
struct Guard {
    /// Host/Origin rules shared with the dashboard.
    access: Access,
    /// False when serving a network address without a token (`--insecure-no-auth`): the
    /// Host names a client uses are then unknown, and the Origin check still stops pages.
    check_host: bool,
    /// The bearer token, when one is required.
    token: Option<Arc<str>>,
    /// Largest body read (413 beyond).
    max_body_bytes: usize,
    /// One permit per POST in flight.
    requests: Arc<Semaphore>,
    /// The permit count, for the 503 message.
    max_concurrent_requests: usize,
    /// rmcp's session table, to count open sessions.
    sessions: Arc<LocalSessionManager>,
    /// Most open sessions.
    max_sessions: usize,
    /// Held while a session-opening request runs, so two cannot both take the last slot.
    opening: Arc<Mutex<()>>,
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn unauthorized(msg: &str) -> Response {
    let mut r = json_response(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized", "message": msg}));
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"edgeswarm\""));
    r
}

fn parse_error(status: StatusCode, msg: String) -> Response {
    json_response(
        status,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": msg}}),
    )
}

/// 503 with a JSON-RPC error (`kind: overloaded`, retryable) for request `id`.
fn overloaded(id: Value, msg: String) -> Response {
    let mut r = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": msg, "data": {"kind": "overloaded", "retryable": true}}}),
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What the guard needs to know of a JSON-RPC body; rmcp parses it for real.
#[derive(Debug, Default, serde::Deserialize)]
struct Probe {
    /// The request id, echoed in error replies (null when there is none).
    #[serde(default)]
    id: Value,
    /// The method: only `initialize` opens a session.
    #[serde(default)]
    method: Option<String>,
}

/// The id and method of a body (defaults when it is not a single JSON-RPC object).
fn probe(body: &[u8]) -> Probe {
    serde_json::from_slice::<Probe>(body).unwrap_or_default()
}

/// The bearer token check, or what the 401 says.
fn check_token(token: &str, headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Err(
            "missing bearer token: send the header `Authorization: Bearer <token>` with the token the server was started with (--token or EDGESWARM_MCP_TOKEN)",
        );
    };
    let given = h
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match given {
        None => Err("the Authorization header is not of the form `Bearer <token>`"),
        Some(t) if !same(t.trim().as_bytes(), token.as_bytes()) => {
            Err("wrong bearer token: it does not match the token the server was started with (--token or EDGESWARM_MCP_TOKEN)")
        }
        Some(_) => Ok(()),
    }
}

/// The checks of the module docs, in order.
async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    // Refusals before the body is read close the connection when a body is coming.
    let refuse = |r: Response| auth::before_body(req.headers(), r);
    if g.check_host {
        if let Err(r) = g.access.check_host(&MCP, req.headers()) {
            return refuse(r.into_response());
        }
    }
    if let Err(r) = g.access.check_origin(&MCP, req.headers()) {
        return refuse(r.into_response());
    }
    if let Some(token) = &g.token {
        if let Err(msg) = check_token(token, req.headers()) {
            return refuse(unauthorized(msg));
        }
    }
    if req.method() == Method::DELETE {
        // rmcp answers a session DELETE with 202; clients expect 200/204 for a completed close.
        let mut r = next.run(req).await;
        if r.status() == StatusCode::ACCEPTED {
            *r.status_mut() = StatusCode::NO_CONTENT;
        }
        return r;
    }
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, g.max_body_bytes).await {
        Ok(b) => b,
        // Both close: past the drain cap the rest of the body is left unread, and after a
        // read error the connection's state is unknown.
        Err(BodyError::TooLarge) => {
            return auth::closing(parse_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} bytes (--max-body-bytes); send less content per call",
                    g.max_body_bytes
                ),
            ))
        }
        Err(BodyError::Read(e)) => {
            return auth::closing(parse_error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ))
        }
    };
    if let Err(e) = std::str::from_utf8(&bytes) {
        return parse_error(
            StatusCode::BAD_REQUEST,
            format!(
                "Parse error: request body is not valid UTF-8 (invalid byte at offset {}); JSON-RPC bodies must be UTF-8 JSON",
                e.valid_up_to()
            ),
        );
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return parse_error(
            StatusCode::BAD_REQUEST,
            format!("Parse error: request body is not JSON ({e}); send one JSON-RPC message per POST"),
        );
    }
    let probe = probe(&bytes);
    let Ok(permit) = g.requests.clone().try_acquire_owned() else {
        return overloaded(
            probe.id,
            format!(
                "server overloaded: {} requests are already in flight (--max-concurrent-requests); retry shortly",
                g.max_concurrent_requests
            ),
        );
    };
    let req = Request::from_parts(parts, Body::from(bytes.clone()));
    // An `initialize` without a session id opens a session. (Other requests without one are
    // refused by rmcp, or served statelessly for protocol versions without sessions: they
    // must not wait on the lock.)
    let opens_session = !req.headers().contains_key("mcp-session-id") && probe.method.as_deref() == Some("initialize");
    let resp = if opens_session {
        let _opening = g.opening.lock().await;
        let open = g.sessions.sessions.read().await.len();
        if open >= g.max_sessions {
            return overloaded(
                probe.id,
                format!(
                    "too many sessions: {open} are open and the limit is {} (--max-sessions); close one (HTTP DELETE /mcp with its \
                     Mcp-Session-Id) or retry when an idle one expires",
                    g.max_sessions
                ),
            );
        }
        next.run(req).await
    } else {
        next.run(req).await
    };
    hold_until_done(resp, permit)
}

/// Keeps `permit` until the response body is finished (an SSE stream ends after the
/// call's result), so the concurrency cap counts calls, not response headers.
fn hold_until_done(resp: Response, permit: OwnedSemaphorePermit) -> Response {
    use futures::StreamExt;
    let streaming = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Past the limit the body is still read (and dropped) up to this many bytes, so a client
/// that sends the whole body before reading the reply sees the 413 instead of a reset.
const DRAIN_CAP: usize = 64 << 20;

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        seen += chunk.len();
        if seen > DRAIN_CAP {
            return Err(BodyError::TooLarge);
        }
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.into())
}

/// The warning printed when the server runs open on a network address.
fn insecure_warning(local: SocketAddr) -> String {
    format!(
        "WARNING: serving MCP on {local} with NO authentication (--insecure-no-auth): anyone who can reach this address \
         can read and change the memory and run SQL (execute_query). Use --token (or EDGESWARM_MCP_TOKEN) unless this \
         network is trusted"
    )
}

/// Serves `server` at `http://ADDR/mcp` until ctrl-c. `opts` must have passed
/// [`Options::check`].
pub async fn serve(server: EdgeswarmMcp, opts: Options) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(opts.max_body_bytes);
    let ct = config.cancellation_token.clone();
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(opts.session_idle_timeout);
    let sessions = Arc::new(manager);
    let s = server.clone();
    let service = StreamableHttpService::new(move || Ok(s.clone()), sessions.clone(), config);
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    let local = listener.local_addr()?;
    let g = Guard {
        access: Access {
            token: opts.token.clone(),
            origins: Arc::new(opts.allowed_origins.clone()),
            bound: local,
        },
        check_host: !opts.open_to_network(),
        token: opts.token.clone(),
        max_body_bytes: opts.max_body_bytes,
        requests: Arc::new(Semaphore::new(opts.max_concurrent_requests)),
        max_concurrent_requests: opts.max_concurrent_requests,
        sessions,
        max_sessions: opts.max_sessions,
        opening: Arc::new(Mutex::new(())),
    };
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .route(
            "/health",
            axum::routing::get(|| async { json_response(StatusCode::OK, json!({"ok": true})) }),
        )
        .layer(axum::middleware::from_fn_with_state(g, guard));
    let auth = if opts.token.is_some() {
        "bearer token required"
    } else if opts.open_to_network() {
        tracing::warn!("{}", insecure_warning(local));
        "NO AUTHENTICATION (--insecure-no-auth)"
    } else {
        "no token: loopback only"
    };
    // Always on stderr, whatever RUST_LOG says (stdout is free on HTTP, but hosts read stderr).
    eprintln!(
        "edgeswarm mcp: serving streamable HTTP at http://{local}/mcp ({auth}; at most {} sessions, {} requests in flight, {} ms per call)",
        opts.max_sessions,
        opts.max_concurrent_requests,
        server.request_timeout().as_millis()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            ct.cancel();
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn access(token: Option<&str>, origins: &[&str]) -> Access {
        Access {
            token: token.map(Into::into),
            origins: Arc::new(origins.iter().map(|o| check_origin_setting(o).unwrap()).collect()),
            bound: "127.0.0.1:8808".parse().unwrap(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn bind_needs_a_token_off_loopback_unless_insecure() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_bind(&lo, None, false).is_ok());
        assert!(check_bind(&"[::1]:1".parse().unwrap(), None, false).is_ok());
        let e = check_bind(&any, None, false).unwrap_err();
        assert!(e.contains("the MCP server") && e.contains("without a token"), "{e}");
        assert!(
            e.contains("--token") && e.contains("EDGESWARM_MCP_TOKEN") && e.contains("--insecure-no-auth"),
            "{e}"
        );
        assert!(check_bind(&"10.1.2.3:1".parse().unwrap(), None, false).is_err());
        assert!(check_bind(&any, Some(TOKEN), false).is_ok());
        let e = check_bind(&any, Some("short"), false).unwrap_err();
        assert!(e.contains("at least 16"), "{e}");
        assert!(check_bind(&lo, Some("short"), false).is_err());
        assert!(check_bind(&any, None, true).is_ok());
        assert!(check_bind(&lo, None, true).is_ok());
        let e = check_bind(&any, Some(TOKEN), true).unwrap_err();
        assert!(e.contains("both given"), "{e}");
    }

    #[test]
    fn options_check_origins_and_caps() {
        let mut o = Options::new("127.0.0.1:1".parse().unwrap());
        o.allowed_origins = vec!["HTTPS://App.Example.com/".into(), "http://10.0.0.5:3000".into()];
        let o = o.check().unwrap();
        assert_eq!(o.allowed_origins, vec!["https://app.example.com", "http://10.0.0.5:3000"]);
        assert!(!o.open_to_network());
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/path",
            "https://*.example.com",
            "ftp://x",
            "null",
        ] {
            let mut o = Options::new("127.0.0.1:1".parse().unwrap());
            o.allowed_origins = vec![bad.into()];
            let e = o.check().unwrap_err();
            assert!(e.contains("http(s)://host[:port]"), "{bad}: {e}");
        }
        let mut o = Options::new("127.0.0.1:1".parse().unwrap());
        o.max_sessions = 0;
        assert!(o.check().unwrap_err().contains("--max-sessions"));
        let mut o = Options::new("127.0.0.1:1".parse().unwrap());
        o.max_concurrent_requests = 0;
        assert!(o.check().unwrap_err().contains("--max-concurrent-requests"));
        let mut o = Options::new("0.0.0.0:1".parse().unwrap());
        assert!(o.clone().check().is_err());
        o.insecure_no_auth = true;
        assert!(o.check().unwrap().open_to_network());
    }

    #[test]
    fn origins_loopback_and_configured_pass_others_403() {
        let a = access(None, &["https://app.example.com"]);
        let ok = |h: &[(&'static str, &str)]| a.check_origin(&MCP, &headers(h)).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8808")]), "no Origin: non-browser clients");
        for o in [
            "http://localhost:3000",
            "https://localhost",
            "http://127.0.0.1:9999",
            "http://[::1]:8080",
            "https://app.example.com",
            "HTTPS://APP.EXAMPLE.COM/",
        ] {
            assert!(ok(&[("host", "127.0.0.1:8808"), ("origin", o)]), "{o}");
        }
        for o in [
            "http://evil.example",
            "null",
            "https://app.example.com:8443",
            "http://app.example.com",
            "file://",
        ] {
            let r = a
                .check_origin(&MCP, &headers(&[("host", "127.0.0.1:8808"), ("origin", o)]))
                .unwrap_err();
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{o}");
            assert!(r.message.contains("--allow-origin"), "{}", r.message);
        }
        // The MCP server serves no page: its own origin is not enough (a DNS-rebound page
        // has exactly that origin).
        assert!(!ok(&[("host", "evil.example:8808"), ("origin", "http://evil.example:8808")]));
    }

    #[test]
    fn host_is_checked_without_a_token_only() {
        let open = access(None, &[]);
        assert!(open.check_host(&MCP, &headers(&[("host", "localhost:8808")])).is_ok());
        assert!(open.check_host(&MCP, &headers(&[("host", "127.0.0.1:8808")])).is_ok());
        let r = open.check_host(&MCP, &headers(&[("host", "evil.example:8808")])).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.message.contains("the MCP server"), "{}", r.message);
        let locked = access(Some(TOKEN), &[]);
        assert!(locked.check_host(&MCP, &headers(&[("host", "mcp.internal:8808")])).is_ok());
    }

    #[test]
    fn token_header_forms() {
        let h = |v: &str| headers(&[("authorization", v)]);
        assert!(check_token(TOKEN, &h(&format!("Bearer {TOKEN}"))).is_ok());
        assert!(check_token(TOKEN, &h(&format!("bearer {TOKEN} "))).is_ok());
        assert!(check_token(TOKEN, &h("Bearer nope")).unwrap_err().contains("wrong bearer token"));
        assert!(check_token(TOKEN, &h(TOKEN)).unwrap_err().contains("not of the form"));
        assert!(check_token(TOKEN, &HeaderMap::new()).unwrap_err().contains("missing bearer token"));
        assert_eq!(unauthorized("x").status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn overload_replies_are_json_rpc_errors_with_the_request_id() {
        let p = probe(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#);
        assert_eq!((p.id, p.method.as_deref()), (json!(7), Some("tools/call")));
        let p = probe(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!((p.id, p.method.as_deref()), (Value::Null, Some("notifications/initialized")));
        assert_eq!(probe(b"{not json").id, Value::Null);
        assert_eq!(probe(br#"[{"id":1,"method":"initialize"}]"#).method, None);
        let r = overloaded(json!("a"), "busy".into());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert!(insecure_warning("0.0.0.0:1".parse().unwrap()).contains("--insecure-no-auth"));
    }
}
