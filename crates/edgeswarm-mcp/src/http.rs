//! Streamable HTTP: rmcp's `StreamableHttpService` at `/mcp`, behind a guard that checks
//! the bearer token (401 with a JSON body saying what is wrong) and refuses request bodies
//! that are too large (413) or not UTF-8 (400, a JSON-RPC parse error) before rmcp sees them.

use crate::server::EdgeswarmMcp;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edgeswarm::dashboard::auth::same;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the guard needs.
#[derive(Clone)]
pub struct Guard {
    pub token: Option<Arc<str>>,
    pub max_body_bytes: usize,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn unauthorized(msg: &str) -> Response {
    let mut r = json_response(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized", "message": msg}));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"edgeswarm\""),
    );
    r
}

fn parse_error(status: StatusCode, msg: String) -> Response {
    json_response(
        status,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": msg}}),
    )
}

/// Checks the bearer token, then (for requests with a body) its size and encoding.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if let Some(token) = &g.token {
        let Some(h) = req.headers().get(header::AUTHORIZATION) else {
            return unauthorized("missing bearer token: send the header `Authorization: Bearer <token>` with the token the server was started with (--token or EDGESWARM_MCP_TOKEN)");
        };
        let given = h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match given {
            None => return unauthorized("the Authorization header is not of the form `Bearer <token>`"),
            Some(t) if !same(t.trim().as_bytes(), token.as_bytes()) => {
                return unauthorized(
                    "wrong bearer token: it does not match the token the server was started with (--token or EDGESWARM_MCP_TOKEN)",
                )
            }
            Some(_) => {}
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
        Err(BodyError::TooLarge) => {
            return parse_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} bytes (--max-body-bytes); send less content per call",
                    g.max_body_bytes
                ),
            )
        }
        Err(BodyError::Read(e)) => return parse_error(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")),
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
    next.run(Request::from_parts(parts, Body::from(bytes))).await
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

/// Serves `server` at `http://ADDR/mcp` until ctrl-c.
pub async fn serve(server: EdgeswarmMcp, addr: SocketAddr, g: Guard) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    hosts.push(addr.ip().to_string());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(g.max_body_bytes);
    let ct = config.cancellation_token.clone();
    let s = server.clone();
    let service = StreamableHttpService::new(move || Ok(s.clone()), Arc::new(LocalSessionManager::default()), config);
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .route(
            "/health",
            axum::routing::get(|| async { json_response(StatusCode::OK, json!({"ok": true})) }),
        )
        .layer(axum::middleware::from_fn_with_state(g, guard));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    eprintln!("edgeswarm mcp: serving streamable HTTP at http://{local}/mcp");
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

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
