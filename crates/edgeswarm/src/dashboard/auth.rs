//! Who may talk to the dashboard: the rules of MCP over HTTP. Loopback by default; any
//! other address needs a token (`Authorization: Bearer <token>` or `?token=<token>`, the
//! latter for the page and `EventSource`, which cannot set headers), and the server
//! refuses to start without one. A request carrying `Origin` must come from a loopback
//! origin, the page's own origin, or a configured one; without a token the `Host` must
//! be a loopback name too, so a DNS-rebound page cannot read the swarm.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Shortest token accepted: a guessable token on a network address is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// The checks one server applies to every request.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token clients must present; `None` on loopback without one.
    pub token: Option<Arc<str>>,
    /// Origins allowed besides loopback ones, normalised (`scheme://host[:port]`, lower case).
    pub origins: Arc<Vec<String>>,
    /// The address the server listens on (its IP is an allowed `Host`).
    pub bound: SocketAddr,
}

/// A guarded server as its refusals name it, so each message points at that server's own
/// flags. The dashboard and the MCP server (edgeswarm-mcp) share the checks below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// How messages name the server ("the dashboard").
    pub name: &'static str,
    /// What anyone who can reach an open server could do, for the bind refusal.
    pub exposure: &'static str,
    /// Where the token is set ("--dashboard-token or EDGESWARM_DASHBOARD_TOKEN").
    pub token_source: &'static str,
    /// Where other Origins are allowed ("--dashboard-origin").
    pub origin_source: &'static str,
    /// Whether a request from the server's own origin (`http(s)://` + its Host) passes the
    /// Origin check. The dashboard serves its page from there; a server that serves no
    /// page (MCP) allows only loopback and configured origins.
    pub own_origin: bool,
}

/// The dashboard's names.
pub const DASHBOARD: Service = Service {
    name: "the dashboard",
    exposure: "watch the swarm",
    token_source: "--dashboard-token or EDGESWARM_DASHBOARD_TOKEN",
    origin_source: "--dashboard-origin",
    own_origin: true,
};

/// Refuses a configuration that would expose the swarm: a non-loopback address without a
/// token, or a token too short to resist guessing.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    check_bind_for(&DASHBOARD, addr, token)
}

/// [`check_bind`] for any guarded server, naming its flags.
pub fn check_bind_for(service: &Service, addr: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    match token {
        None if !addr.ip().is_loopback() => Err(format!(
            "refusing to serve {} on {addr} without a token: it is not a loopback address, so anyone who can reach it \
             could {}; set a token ({}, e.g. `openssl rand -hex 16`) or bind 127.0.0.1",
            service.name, service.exposure, service.token_source
        )),
        Some(t) if t.trim().len() < MIN_TOKEN_LEN => Err(format!(
            "the token of {} is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`)",
            service.name,
            t.trim().len()
        )),
        _ => Ok(()),
    }
}

/// Constant-time comparison, so the token cannot be found byte by byte from timing.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `scheme://host[:port]` in lower case, without a trailing slash.
pub fn normalise_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_name(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport)
}

fn is_loopback_name(h: &str) -> bool {
    let h = h.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True for `http(s)://localhost[:port]`, `http(s)://127.x.x.x[:port]`, `http(s)://[::1][:port]`.
pub fn is_loopback_origin(origin: &str) -> bool {
    let o = normalise_origin(origin);
    let Some(rest) = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")) else {
        return false;
    };
    is_loopback_name(host_name(rest))
}

/// Percent-decodes a query value (`+` is a space).
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `name` in a query string, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (pct_decode(k) == name).then(|| pct_decode(v))
    })
}

/// Why a request was refused: status and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 (token) or 403 (Origin, Host).
    pub status: StatusCode,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let err = if self.status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
            json!({"error": err, "message": self.message}).to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"edgeswarm-dashboard\""),
            );
        }
        r
    }
}

impl Access {
    /// Origin and Host checks (every route, static assets included).
    pub fn check_origin_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_host(&DASHBOARD, headers)?;
        self.check_origin(&DASHBOARD, headers)
    }

    /// Without a token, the `Host` must be a loopback name, the bound IP or the host of a
    /// configured origin, so a DNS-rebound page cannot reach the server. With a token any
    /// Host passes: the token is what protects it.
    pub fn check_host(&self, service: &Service, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.token.is_some() {
            return Ok(());
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let name = host_name(host);
        let configured = self.origins.iter().any(|o| {
            o.split_once("://")
                .map(|(_, hp)| host_name(hp).eq_ignore_ascii_case(name))
                .unwrap_or(false)
        });
        let bound = name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == self.bound.ip());
        if !(is_loopback_name(name) || bound || configured) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is not allowed: without a token {} only answers to loopback names \
                     (localhost, 127.0.0.1, [::1]); this blocks DNS-rebinding pages. Set a token to serve other names",
                    service.name
                ),
            ));
        }
        Ok(())
    }

    /// A request carrying `Origin` (a browser's) must come from a loopback origin, a
    /// configured one, or (when the service allows it) the server's own. No `Origin`
    /// (curl, SDK clients) passes.
    pub fn check_origin(&self, service: &Service, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let o = normalise_origin(origin.to_str().unwrap_or("null"));
        let own = service.own_origin
            && !host.is_empty()
            && (o == format!("http://{}", host.to_ascii_lowercase()) || o == format!("https://{}", host.to_ascii_lowercase()));
        if !(is_loopback_origin(&o) || own || self.origins.iter().any(|a| a == &o)) {
            let own_text = if service.own_origin { ", its own origin" } else { "" };
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin `{o}` is not allowed: only loopback origins{own_text} and origins given with {} may use {}",
                    service.origin_source, service.name
                ),
            ));
        }
        Ok(())
    }

    /// Token check (data routes and the page).
    pub fn check_token(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        let Some(token) = &self.token else { return Ok(()) };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|t| t.trim().to_string());
        let given = bearer.or_else(|| query_param(query, "token"));
        match given {
            None => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "this dashboard needs a token: open it as /?token=<token> or send `Authorization: Bearer <token>` \
                 (the token the server was started with: --dashboard-token or EDGESWARM_DASHBOARD_TOKEN)",
            )),
            Some(t) if !same(t.as_bytes(), token.as_bytes()) => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "wrong token: it does not match the token the dashboard was started with",
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Whether the request says a body follows (`Content-Length` above 0, or chunked).
fn declares_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v.to_str().map_or(true, |v| v.trim() != "0"),
        None => false,
    }
}

/// `r` with `Connection: close`: for a refusal given before the request body was read.
///
/// hyper closes a connection whose request body a handler left unread and that has not
/// fully arrived, but it may already have written the reply as keep-alive. A client that
/// reuses the connection for its next request then sees it drop without a reply (CI saw
/// the Python SDK's HTTP client do exactly that after a 401). Saying `close` in the reply
/// makes the client open a new connection instead.
pub fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `r`, a refusal of the request with `headers` given before its body was read:
/// [`closing`] when the request declares a body, else as is (the connection stays usable).
pub fn before_body(headers: &HeaderMap, r: Response) -> Response {
    if declares_body(headers) {
        closing(r)
    } else {
        r
    }
}

/// Middleware: Origin/Host on every route, the token on all but `/assets/`.
pub async fn guard(State(a): State<Access>, req: Request, next: Next) -> Response {
    if let Err(r) = a.check_origin_host(req.headers()) {
        return before_body(req.headers(), r.into_response());
    }
    if !req.uri().path().starts_with("/assets/") {
        if let Err(r) = a.check_token(req.headers(), req.uri().query()) {
            return before_body(req.headers(), r.into_response());
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, origins: &[&str]) -> Access {
        Access {
            token: token.map(Into::into),
            origins: Arc::new(origins.iter().map(|o| normalise_origin(o)).collect()),
            bound: "127.0.0.1:8080".parse().unwrap(),
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
    fn bind_rules() {
        assert!(check_bind(&"127.0.0.1:1".parse().unwrap(), None).is_ok());
        assert!(check_bind(&"[::1]:1".parse().unwrap(), None).is_ok());
        let e = check_bind(&"0.0.0.0:1".parse().unwrap(), None).unwrap_err();
        assert!(e.contains("without a token"), "{e}");
        assert!(check_bind(&"0.0.0.0:1".parse().unwrap(), Some("short")).is_err());
        assert!(check_bind(&"0.0.0.0:1".parse().unwrap(), Some("0123456789abcdef")).is_ok());
    }

    #[test]
    fn origins_and_hosts() {
        let a = access(None, &["https://ops.example.com"]);
        let ok = |h: &[(&'static str, &str)]| a.check_origin_host(&headers(h)).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8080")]));
        assert!(ok(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")]));
        assert!(ok(&[("host", "127.0.0.1:8080"), ("origin", "http://[::1]:3000")]));
        assert!(ok(&[("host", "127.0.0.1:8080"), ("origin", "https://ops.example.com")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        // DNS rebinding: same-origin by Host, but the Host is not a loopback name.
        assert!(!ok(&[("host", "evil.example:8080"), ("origin", "http://evil.example:8080")]));
        assert_eq!(
            a.check_origin_host(&headers(&[("host", "evil.example:8080")])).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn tokens() {
        let a = access(Some("0123456789abcdef"), &[]);
        let h = HeaderMap::new();
        assert_eq!(a.check_token(&h, None).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(a.check_token(&h, Some("token=0123456789abcdef")).is_ok());
        assert!(a.check_token(&h, Some("x=1&token=0123456789abcdef")).is_ok());
        assert!(a.check_token(&h, Some("token=0123456789abcdeX")).is_err());
        assert!(a
            .check_token(&headers(&[("authorization", "Bearer 0123456789abcdef")]), None)
            .is_ok());
        assert!(a.check_token(&headers(&[("authorization", "Bearer nope")]), None).is_err());
        // With a token, any Host is fine (the token protects it), Origin still checked.
        assert!(a
            .check_origin_host(&headers(&[("host", "10.0.0.5:8080"), ("origin", "http://10.0.0.5:8080")]))
            .is_ok());
        assert!(a
            .check_origin_host(&headers(&[("host", "10.0.0.5:8080"), ("origin", "http://evil.example")]))
            .is_err());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"abcd"));
        assert_eq!(query_param(Some("q=a%20b+c&token=x"), "q").as_deref(), Some("a b c"));
    }

    #[test]
    fn a_refusal_before_an_unread_body_closes_the_connection() {
        let refused = || Refusal::new(StatusCode::UNAUTHORIZED, "no").into_response();
        let close = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            before_body(&h, refused())
                .headers()
                .get(header::CONNECTION)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(close(&[("content-length", "12")]).as_deref(), Some("close"));
        assert_eq!(close(&[("transfer-encoding", "chunked")]).as_deref(), Some("close"));
        assert_eq!(close(&[("content-length", "0")]), None);
        assert_eq!(close(&[]), None);
    }
}
