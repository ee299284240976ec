//! The live feed: one producer publishes frames into a [`Hub`]; every page reads them as
//! server-sent events.
//!
//! - A new client gets a `snapshot` event (the whole state and the chart history), then
//!   `delta` events (a JSON Merge Patch of the state, plus the new chart point if any).
//! - Every frame has an id `<epoch>-<seq>`. A client reconnecting with `Last-Event-ID`
//!   from this server run, still inside the resume window, gets exactly the frames it
//!   missed; otherwise a fresh snapshot.
//! - Each client reads from a bounded ring (`client_buffer` frames, a tokio broadcast
//!   channel: sending never waits). A client that falls that far behind gets a
//!   `dropped` event saying so and its stream ends; the producer never waits for anyone.

use axum::response::sse::Event;
use futures::Stream;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

use super::snapshot::merge_diff;

/// One published frame (shared by every client; serialised once).
#[derive(Debug)]
pub struct Frame {
    /// Position in this server run.
    pub seq: u64,
    /// The SSE `data:` line: `{"patch": {...}, "point": {...}}`.
    pub data: String,
}

/// What the hub holds under its lock.
struct HubState {
    /// Sequence number of the last frame.
    seq: u64,
    /// The current full state.
    state: Arc<Value>,
    /// Recent frames for resume, oldest first.
    frames: VecDeque<Arc<Frame>>,
    /// Chart points, oldest first.
    history: VecDeque<Value>,
}

/// Fan-out of the producer's frames, with a resume window.
pub struct Hub {
    /// Identifies this server run in event ids (a resume id from another run is ignored).
    epoch: String,
    /// Frames to every client; its capacity is each client's buffer.
    tx: broadcast::Sender<Arc<Frame>>,
    /// Everything new clients and resumes need.
    state: Mutex<HubState>,
    /// Frames kept for resume.
    resume_frames: usize,
    /// Chart points kept.
    history_points: usize,
    /// Per-client buffer (frames), for the `dropped` message.
    client_buffer: usize,
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Clients dropped for falling behind, since start.
    pub dropped: AtomicU64,
    /// Set when the dashboard stops: every stream ends (so the server can shut down).
    closed: tokio::sync::watch::Sender<bool>,
}

/// How a new stream starts.
pub enum Start {
    /// A full snapshot (new client, or resume not possible).
    Snapshot(Event),
    /// Replayed frames the client missed (possibly none).
    Resume(Vec<Event>),
}

fn delta_event(epoch: &str, f: &Frame) -> Event {
    Event::default().id(format!("{epoch}-{}", f.seq)).event("delta").data(&f.data)
}

impl Hub {
    pub fn new(client_buffer: usize, resume_frames: usize, history_points: usize) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(client_buffer.max(1));
        let epoch = format!("{:x}", edgeswarm_core::record::now_millis());
        Arc::new(Hub {
            epoch,
            tx,
            state: Mutex::new(HubState {
                seq: 0,
                state: Arc::new(json!({})),
                frames: VecDeque::new(),
                history: VecDeque::new(),
            }),
            resume_frames,
            history_points,
            client_buffer: client_buffer.max(1),
            clients: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    /// Ends every client stream (the dashboard is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// This run's epoch (the part of event ids before the dash).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a new state (and chart point). Never waits for clients.
    pub fn publish(&self, state: Value, point: Option<Value>) {
        let mut h = self.lock();
        let patch = merge_diff(&h.state, &state);
        if patch.is_none() && point.is_none() {
            return;
        }
        h.seq += 1;
        let mut data = serde_json::Map::new();
        data.insert("patch".into(), patch.unwrap_or_else(|| json!({})));
        if let Some(p) = &point {
            data.insert("point".into(), p.clone());
        }
        let frame = Arc::new(Frame {
            seq: h.seq,
            data: Value::Object(data).to_string(),
        });
        h.state = Arc::new(state);
        if let Some(p) = point {
            h.history.push_back(p);
            while h.history.len() > self.history_points {
                h.history.pop_front();
            }
        }
        h.frames.push_back(frame.clone());
        while h.frames.len() > self.resume_frames {
            h.frames.pop_front();
        }
        // Under the lock, so a subscriber sees each frame either in its replay or live.
        let _ = self.tx.send(frame);
    }

    /// The current state, chart history and last event id.
    pub fn snapshot(&self) -> (Arc<Value>, Vec<Value>, String) {
        let h = self.lock();
        (
            h.state.clone(),
            h.history.iter().cloned().collect(),
            format!("{}-{}", self.epoch, h.seq),
        )
    }

    fn snapshot_event(&self, h: &HubState) -> Event {
        let data = json!({"state": &*h.state, "history": h.history.iter().collect::<Vec<_>>()});
        Event::default()
            .id(format!("{}-{}", self.epoch, h.seq))
            .event("snapshot")
            .retry(std::time::Duration::from_millis(1000))
            .data(data.to_string())
    }

    /// Subscribes a client: what to send first, and the live receiver.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> (Start, broadcast::Receiver<Arc<Frame>>) {
        let h = self.lock();
        let rx = self.tx.subscribe();
        let resume = last_event_id
            .and_then(|id| id.trim().split_once('-'))
            .filter(|(e, _)| *e == self.epoch)
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .filter(|&n| n <= h.seq && h.frames.front().map_or(n == h.seq, |f| n + 1 >= f.seq));
        let start = match resume {
            Some(n) => Start::Resume(h.frames.iter().filter(|f| f.seq > n).map(|f| delta_event(&self.epoch, f)).collect()),
            None => Start::Snapshot(self.snapshot_event(&h)),
        };
        (start, rx)
    }

    /// The event stream of one client: its start, then live frames until it falls
    /// `client_buffer` frames behind (then one `dropped` event) or the hub closes.
    pub fn stream(
        self: &Arc<Self>,
        last_event_id: Option<&str>,
    ) -> impl Stream<Item = Result<Event, std::convert::Infallible>> + Send + 'static {
        let (start, rx) = self.subscribe(last_event_id);
        let first: VecDeque<Event> = match start {
            Start::Snapshot(e) => VecDeque::from([e]),
            Start::Resume(v) => v.into(),
        };
        self.clients.fetch_add(1, Ordering::Relaxed);
        let guard = ClientGuard(self.clone(), self.closed.subscribe());
        futures::stream::unfold((first, rx, guard, false), |(mut first, mut rx, mut guard, done)| async move {
            if done || *guard.1.borrow() {
                return None;
            }
            if let Some(e) = first.pop_front() {
                return Some((Ok(e), (first, rx, guard, false)));
            }
            let got = tokio::select! {
                r = rx.recv() => r,
                _ = guard.1.changed() => return None,
            };
            match got {
                Ok(f) => {
                    let e = delta_event(&guard.0.epoch, &f);
                    Some((Ok(e), (first, rx, guard, false)))
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    guard.0.dropped.fetch_add(1, Ordering::Relaxed);
                    let msg = json!({
                        "reason": "slow_client",
                        "message": format!(
                            "this page fell {missed} frames behind (its buffer holds {}); the server dropped the stream so a slow \
                             page never holds the swarm back. Reconnect for a fresh snapshot.",
                            guard.0.client_buffer
                        ),
                        "missed": missed,
                    });
                    let e = Event::default().event("dropped").data(msg.to_string());
                    Some((Ok(e), (first, rx, guard, true)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

/// Counts a connected client; uncounts it when its stream is dropped. Also holds the
/// hub's close signal.
struct ClientGuard(Arc<Hub>, tokio::sync::watch::Receiver<bool>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn ids(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| format!("{e:?}")).collect()
    }

    #[tokio::test]
    async fn resume_replays_exactly_the_missed_frames() {
        let hub = Hub::new(16, 8, 10);
        for i in 0..5 {
            hub.publish(json!({"n": i}), None);
        }
        let epoch = hub.epoch().to_string();
        // Resume from 3: frames 4 and 5.
        let (start, _rx) = hub.subscribe(Some(&format!("{epoch}-3")));
        let Start::Resume(v) = start else { panic!("expected a resume") };
        let d = ids(&v);
        assert_eq!(d.len(), 2);
        assert!(
            d[0].contains(&format!("{epoch}-4")) && d[1].contains(&format!("{epoch}-5")),
            "{d:?}"
        );
        // Up to date: nothing to replay.
        let (start, _rx) = hub.subscribe(Some(&format!("{epoch}-5")));
        assert!(matches!(start, Start::Resume(v) if v.is_empty()));
        // Another run's id, a future id, garbage, or none: a snapshot.
        for id in [Some("other-3".to_string()), Some(format!("{epoch}-99")), Some("x".into()), None] {
            let (start, _rx) = hub.subscribe(id.as_deref());
            assert!(matches!(start, Start::Snapshot(_)));
        }
        // Fall out of the resume window (8 frames kept): snapshot.
        for i in 5..20 {
            hub.publish(json!({"n": i}), None);
        }
        let (start, _rx) = hub.subscribe(Some(&format!("{epoch}-3")));
        assert!(matches!(start, Start::Snapshot(_)));
        // A resumed stream then continues live.
        let mut s = Box::pin(hub.stream(Some(&format!("{epoch}-19"))));
        let e = s.next().await.unwrap().unwrap();
        assert!(format!("{e:?}").contains(&format!("{epoch}-20")));
        hub.publish(json!({"n": 99}), None);
        let e = s.next().await.unwrap().unwrap();
        assert!(format!("{e:?}").contains(&format!("{epoch}-21")));
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_with_a_clear_event() {
        let hub = Hub::new(4, 100, 10);
        let mut s = Box::pin(hub.stream(None));
        let first = s.next().await.unwrap().unwrap();
        assert!(format!("{first:?}").contains("snapshot"));
        assert_eq!(hub.clients.load(Ordering::Relaxed), 1);
        // The client reads nothing while 10 frames go out: publishing never waits.
        let t = std::time::Instant::now();
        for i in 0..10 {
            hub.publish(json!({"n": i}), None);
        }
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        let e = s.next().await.unwrap().unwrap();
        let text = format!("{e:?}");
        assert!(text.contains("dropped") && text.contains("slow_client"), "{text}");
        assert!(s.next().await.is_none(), "the stream ends after `dropped`");
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        drop(s);
        assert_eq!(hub.clients.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn snapshot_then_deltas_rebuild_the_state() {
        let hub = Hub::new(8, 8, 3);
        hub.publish(json!({"a": 1, "b": {"c": 2}}), Some(json!({"t": 1})));
        let (before, _, _) = hub.snapshot();
        let (_start, mut rx) = hub.subscribe(None);
        hub.publish(json!({"a": 1, "b": {"d": 3}}), Some(json!({"t": 2})));
        let f = rx.try_recv().unwrap();
        let v: Value = serde_json::from_str(&f.data).unwrap();
        let mut s = (*before).clone();
        super::super::snapshot::merge_apply(&mut s, &v["patch"]);
        assert_eq!(s, json!({"a": 1, "b": {"d": 3}}));
        assert_eq!(v["point"]["t"], 2);
        for t in 3..6 {
            hub.publish(json!({"a": t}), Some(json!({"t": t})));
        }
        assert_eq!(hub.snapshot().1.len(), 3, "history is bounded");
    }
}
