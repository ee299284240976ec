//! A live web dashboard of the swarm: `Swarm::serve_dashboard(addr)`.
//!
//! - `GET /`: the page (HTML, JS and CSS embedded in the binary; charts drawn on canvas;
//!   no CDN, no network).
//! - `GET /events`: server-sent events: `snapshot` first, then `delta` (JSON Merge Patch
//!   of the state plus a chart point), resumable with `Last-Event-ID`; `dropped` when a
//!   client falls behind (see [`sse`]).
//! - `GET /api/snapshot`: the current state and chart history as JSON.
//! - `GET /api/search?q=..&limit=..`: a knowledge search (the page's search box).
//!
//! One producer task samples the swarm (default every 250 ms) and publishes; clients
//! never cause sampling, and a slow one is dropped rather than waited for. Access follows
//! the MCP-over-HTTP rules (see [`auth`]).

pub mod auth;
pub mod snapshot;
pub mod sse;

use crate::Swarm;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Longest search query accepted from the page, in bytes.
const MAX_QUERY_BYTES: usize = 1000;

/// Dashboard settings. `DashboardConfig::new(addr)` gives the defaults.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Where to listen. A non-loopback address needs `token`.
    pub addr: SocketAddr,
    /// Token clients must present (`Authorization: Bearer` or `?token=`); required on a
    /// non-loopback address, optional on loopback. At least 16 characters.
    pub token: Option<String>,
    /// Origins allowed besides loopback ones and the dashboard's own
    /// (`https://ops.example.com`).
    pub allowed_origins: Vec<String>,
    /// How often the producer samples the swarm. Default 250 ms (4 Hz).
    pub sample_interval: Duration,
    /// Frames each client may have unread before it is dropped. Default 64 (16 s at 4 Hz).
    pub client_buffer: usize,
    /// Frames kept for `Last-Event-ID` resume. Default 240 (one minute at 4 Hz).
    pub resume_frames: usize,
    /// Chart points (one a second) kept for new pages. Default 300 (five minutes).
    pub history_points: usize,
    /// Pages connected at once; more get 503. Default 64.
    pub max_clients: usize,
    /// Searches from the page running at once (the rest wait). Default 2.
    pub max_searches: usize,
}

impl DashboardConfig {
    pub fn new(addr: SocketAddr) -> Self {
        DashboardConfig {
            addr,
            token: None,
            allowed_origins: Vec::new(),
            sample_interval: Duration::from_millis(250),
            client_buffer: 64,
            resume_frames: 240,
            history_points: 300,
            max_clients: 64,
            max_searches: 2,
        }
    }
    /// Sets the token (empty or blank means none).
    pub fn token(mut self, t: Option<String>) -> Self {
        self.token = t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        self
    }
    /// Allows one more Origin.
    pub fn allow_origin(mut self, o: impl Into<String>) -> Self {
        self.allowed_origins.push(o.into());
        self
    }
}

/// Why the dashboard did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DashboardError {
    /// The configuration would expose the swarm (non-loopback without a token, short token).
    #[error("{0}")]
    Refused(String),
    /// The address could not be bound.
    #[error("cannot serve the dashboard on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

/// A running dashboard. Dropping the handle leaves it running (until the process ends);
/// `stop` ends it.
pub struct Dashboard {
    /// The address actually bound (port 0 resolved).
    addr: SocketAddr,
    /// Stops the server and the producer.
    stop: watch::Sender<bool>,
    /// The HTTP server task.
    server: tokio::task::JoinHandle<()>,
    /// The sampling task.
    producer: tokio::task::JoinHandle<()>,
    /// The hub, for client counts.
    hub: Arc<sse::Hub>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("addr", &self.addr).finish()
    }
}

impl Dashboard {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR/` (without the token).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
    /// Pages connected now.
    pub fn clients(&self) -> usize {
        self.hub.clients.load(Ordering::Relaxed)
    }
    /// Clients dropped for falling behind, since start.
    pub fn dropped_clients(&self) -> u64 {
        self.hub.dropped.load(Ordering::Relaxed)
    }
    /// Stops serving and sampling.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.producer.abort();
        self.hub.close();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err() {
            server.abort();
        }
    }
}

/// What every route needs.
#[derive(Clone)]
struct App {
    /// The feed.
    hub: Arc<sse::Hub>,
    /// For searches.
    swarm: Swarm,
    /// Caps concurrent SSE clients.
    max_clients: usize,
    /// Caps concurrent searches from pages.
    searches: Arc<Semaphore>,
}

impl Swarm {
    /// Serves the dashboard on `addr` with the default settings (loopback only without a
    /// token: use [`Swarm::serve_dashboard_with`] and a token for other addresses).
    pub async fn serve_dashboard(&self, addr: SocketAddr) -> Result<Dashboard, DashboardError> {
        self.serve_dashboard_with(DashboardConfig::new(addr)).await
    }

    /// Serves the dashboard with explicit settings.
    pub async fn serve_dashboard_with(&self, cfg: DashboardConfig) -> Result<Dashboard, DashboardError> {
        auth::check_bind(&cfg.addr, cfg.token.as_deref()).map_err(DashboardError::Refused)?;
        let listener = tokio::net::TcpListener::bind(cfg.addr).await.map_err(|e| DashboardError::Bind {
            addr: cfg.addr.to_string(),
            reason: if e.kind() == std::io::ErrorKind::AddrInUse {
                "the address is already in use; pick a free port or stop the other process".into()
            } else {
                e.to_string()
            },
        })?;
        let addr = listener.local_addr().map_err(|e| DashboardError::Bind {
            addr: cfg.addr.to_string(),
            reason: e.to_string(),
        })?;
        let hub = sse::Hub::new(cfg.client_buffer, cfg.resume_frames, cfg.history_points);
        let (stop, stop_rx) = watch::channel(false);

        // The one producer: samples, publishes, never waits for a client.
        let mut sampler = snapshot::Sampler::new(self.clone());
        let (h, every) = (hub.clone(), cfg.sample_interval.max(Duration::from_millis(50)));
        let first = sampler.sample(0, 0).await;
        hub.publish(first.0, first.1);
        let producer = tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t.tick().await;
            let mut shut_published = false;
            loop {
                t.tick().await;
                let shut = sampler.swarm_is_shut();
                if shut && shut_published {
                    // Keep serving the final state; nothing changes any more.
                    continue;
                }
                let (state, point) = sampler
                    .sample(h.clients.load(Ordering::Relaxed), h.dropped.load(Ordering::Relaxed))
                    .await;
                h.publish(state, point);
                shut_published = shut;
            }
        });

        let access = auth::Access {
            token: cfg.token.as_deref().map(Arc::from),
            origins: Arc::new(cfg.allowed_origins.iter().map(|o| auth::normalise_origin(o)).collect()),
            bound: addr,
        };
        let app = App {
            hub: hub.clone(),
            swarm: self.clone(),
            max_clients: cfg.max_clients.max(1),
            searches: Arc::new(Semaphore::new(cfg.max_searches.max(1))),
        };
        let router = axum::Router::new()
            .route("/", get(index))
            .route("/index.html", get(index))
            .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
            .route("/assets/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
            .route("/events", get(events))
            .route("/api/snapshot", get(api_snapshot))
            .route("/api/search", get(api_search))
            .fallback(|| async {
                json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "message": "no such page; the dashboard is at /"}),
                )
            })
            .with_state(app)
            .layer(axum::middleware::from_fn_with_state(access, auth::guard));
        let mut srx = stop_rx.clone();
        let server = tokio::spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = srx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "dashboard server stopped");
            }
        });
        tracing::info!(%addr, "serving the dashboard");
        Ok(Dashboard {
            addr,
            stop,
            server,
            producer,
            hub,
        })
    }
}

fn security_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
        v.to_string(),
    )
        .into_response();
    security_headers(&mut r);
    r
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")], body).into_response();
    security_headers(&mut r);
    r
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    if app.hub.clients.load(Ordering::Relaxed) >= app.max_clients {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "too_many_clients", "message": format!("{} pages are connected, the most this dashboard serves; close one or raise max_clients", app.max_clients)}),
        );
    }
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let stream = app.hub.stream(last);
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    security_headers(&mut r);
    r
}

async fn api_snapshot(State(app): State<App>) -> Response {
    let (state, history, id) = app.hub.snapshot();
    json_response(StatusCode::OK, json!({"event_id": id, "state": &*state, "history": history}))
}

#[derive(serde::Deserialize)]
struct SearchParams {
    /// The query text.
    #[serde(default)]
    q: String,
    /// Hits wanted (1-50, default 10).
    limit: Option<i64>,
}

async fn api_search(State(app): State<App>, Query(p): Query<SearchParams>) -> Response {
    let q = p.q.trim();
    if q.is_empty() {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": "empty query: type some words to search the knowledge base"}),
        );
    }
    if q.len() > MAX_QUERY_BYTES {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": format!("the query is {} bytes; at most {MAX_QUERY_BYTES}", q.len())}),
        );
    }
    let Ok(_permit) = app.searches.acquire().await else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "closed", "message": "the dashboard is stopping"}),
        );
    };
    let t = std::time::Instant::now();
    let req = crate::SearchRequest::new(q).limit(p.limit.unwrap_or(10).clamp(1, 50));
    match tokio::time::timeout(Duration::from_secs(10), app.swarm.search_with(req)).await {
        Ok(Ok(r)) => json_response(
            StatusCode::OK,
            json!({
                "query": q,
                "mode": r.mode,
                "fallback_reason": r.fallback_reason,
                "notes": r.notes,
                "took_ms": snapshot::num(t.elapsed().as_secs_f64() * 1000.0, 2),
                "hits": r.hits.iter().map(|h| json!({
                    "id": h.id, "category": h.category, "topic": h.topic, "snippet": h.snippet,
                    "score": snapshot::num(h.score, 4),
                })).collect::<Vec<_>>(),
            }),
        ),
        Ok(Err(e)) => json_response(StatusCode::BAD_REQUEST, json!({"error": "search_failed", "message": e.to_string()})),
        Err(_) => json_response(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "timeout", "message": "the search took longer than 10 s; the swarm may be overloaded"}),
        ),
    }
}

#[cfg(test)]
mod tests;
