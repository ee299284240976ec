//! The swarm runtime: agents, supervision, shared memory, shutdown.

use edgeswarm::{Agent, AgentCtx, AgentOptions, BoxError, CasOutcome, Error, RestartPolicy, Swarm, SwarmEvent, TaskReport};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn swarm(dir: &tempfile::TempDir) -> Swarm {
    edgeswarm_testkit::open_swarm(dir.path().join("swarm.db")).await
}

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);
impl Agent for Counter {
    type Task = u32;
    async fn on_task(&mut self, _ctx: &AgentCtx, _t: u32) -> Result<TaskReport, BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(TaskReport::new("count", 1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_agents_spawn_work_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let n = Arc::new(AtomicUsize::new(0));
    for i in 0..500 {
        s.spawn_agent(&format!("a{i}"), ["us-west-2", "eu-central-1"][i % 2], Counter(n.clone()))
            .await
            .unwrap();
    }
    assert_eq!(s.agents().len(), 500);
    let (ok, errs) = s.broadcast(1u32).await.unwrap();
    assert_eq!((ok, errs.len()), (500, 0));
    for _ in 0..200 {
        if n.load(Ordering::SeqCst) == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 500);
    s.shutdown().await.unwrap();
    assert!(s.agents().iter().all(|a| a.status == edgeswarm::AgentStatus::Stopped));
    // Automatic task metrics were flushed by shutdown.
    let s2 = swarm(&dir).await;
    let m = s2.metrics(None).await.unwrap();
    assert_eq!(m.by_task_type.iter().find(|a| a.key == "count").map(|a| a.count), Some(500));
    assert_eq!(m.by_region.len(), 2);
    s2.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Crashy;
impl Agent for Crashy {
    type Task = bool;
    async fn on_task(&mut self, _ctx: &AgentCtx, crash: bool) -> Result<TaskReport, BoxError> {
        if crash {
            panic!("crash requested");
        }
        Ok(TaskReport::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_agent_is_restarted_within_limits_then_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let mut events = s.events();
    let opts = AgentOptions {
        restart: RestartPolicy {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        ..Default::default()
    };
    s.spawn_agent_with("crashy", "us-west-2", Crashy, opts).await.unwrap();
    let mut restarts = 0;
    let mut stopped = None;
    for _ in 0..3 {
        s.send("crashy", true).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap() {
                SwarmEvent::AgentRestarted { .. } => {
                    restarts += 1;
                    break;
                }
                SwarmEvent::AgentStopped { reason, .. } => {
                    stopped = Some(reason);
                    break;
                }
                _ => {}
            }
        }
        if stopped.is_none() {
            // Restarted agents work again.
            s.send("crashy", false).await.unwrap();
        }
    }
    assert_eq!(restarts, 2);
    let reason = stopped.expect("stopped past its limit");
    assert!(reason.contains("more than 2 times"), "{reason}");
    assert!(matches!(s.send("crashy", false).await, Err(Error::AgentStopped(_))));
    assert_eq!(s.agent("crashy").unwrap().restarts, 2);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_acked_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for p in 0..32 {
        let s = s.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let m = edgeswarm::Message::new(format!("sess-{p}"), "user", format!("msg {i}"));
                let id = m.id.clone();
                match s.add_conversation(m).await {
                    Ok(_) => acked.lock().unwrap().push(id),
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.shutdown().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let s2 = swarm(&dir).await;
    let n = s2
        .store()
        .read_sql("SELECT count(*) FROM conversations", vec![])
        .await
        .unwrap()
        .rows[0][0]
        .as_i64()
        .unwrap();
    assert!(n as usize >= acked.len(), "stored {n} < acked {}", acked.len());
    for id in acked.iter().step_by(97) {
        let r = s2
            .store()
            .read_sql("SELECT count(*) FROM conversations WHERE id = ?1", vec![id.clone().into()])
            .await
            .unwrap();
        assert_eq!(r.rows[0][0].as_i64(), Some(1), "acked {id} missing");
    }
    assert!(
        matches!(s.send("nobody", 1u32).await, Err(Error::ShutDown)),
        "send after shutdown is refused"
    );
    s2.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Claimer(Arc<AtomicUsize>);
impl Agent for Claimer {
    type Task = u32;
    async fn on_task(&mut self, ctx: &AgentCtx, task: u32) -> Result<TaskReport, BoxError> {
        if let CasOutcome::Swapped { .. } = ctx.kv_cas("claims", &format!("task-{task}"), None, json!(ctx.id()), None).await? {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(TaskReport::new("claim", 0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_under_contention_gives_each_claim_to_exactly_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let wins = Arc::new(AtomicUsize::new(0));
    for i in 0..64 {
        s.spawn_agent(&format!("c{i}"), "eu-central-1", Claimer(wins.clone()))
            .await
            .unwrap();
    }
    for t in 0..20u32 {
        let (ok, _) = s.broadcast(t).await.unwrap();
        assert_eq!(ok, 64);
    }
    // 64 agents x 20 tasks = 1280 claim attempts.
    for _ in 0..500 {
        let done: u64 = s.agents().iter().map(|a| a.tasks_ok).sum();
        if done == 1280 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wins.load(Ordering::SeqCst), 20, "each of 20 tasks claimed exactly once");
    let owners = s.store().kv_list("claims", "task-", 100).await.unwrap();
    assert_eq!(owners.len(), 20);
    assert!(owners.iter().all(|e| e.version == 1));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Swarm::builder()
        .path(dir.path().join("w.db"))
        .kv_sweep_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut w = s.watch("jobs", "job-");
    s.store()
        .kv_set("jobs", "job-1", json!({"state": "new"}), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    s.store().kv_set("jobs", "other", json!(1), None).await.unwrap();
    let ch = tokio::time::timeout(Duration::from_secs(2), w.recv()).await.unwrap().unwrap();
    assert_eq!(ch.key, "job-1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.store().kv_get("jobs", "job-1").await.unwrap().is_none());
    let raw = s
        .store()
        .read_sql("SELECT count(*) FROM kv WHERE key = 'job-1'", vec![])
        .await
        .unwrap();
    assert_eq!(raw.rows[0][0].as_i64(), Some(0), "the sweeper deleted the expired row for good");
    let bad = s.store().kv_set("jobs", "x", json!(1), Some(Duration::ZERO)).await.unwrap_err();
    assert!(bad.to_string().contains("TTL of zero"), "{bad}");
    let huge = s
        .store()
        .kv_set("jobs", "x", json!(1), Some(Duration::from_secs(u64::MAX / 4)))
        .await
        .unwrap_err();
    assert!(huge.to_string().contains("10-year"), "{huge}");
    s.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Slow;
impl Agent for Slow {
    type Task = u32;
    async fn on_task(&mut self, _ctx: &AgentCtx, _t: u32) -> Result<TaskReport, BoxError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(TaskReport::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_agent_never_blocks_others_and_bad_input_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let n = Arc::new(AtomicUsize::new(0));
    s.spawn_agent_with(
        "slow",
        "us-west-2",
        Slow,
        AgentOptions {
            mailbox: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.spawn_agent("fast", "us-west-2", Counter(n.clone())).await.unwrap();
    let mut full = None;
    for i in 0..10u32 {
        if let Err(e) = s.send("slow", i).await {
            full = Some(e);
            break;
        }
    }
    assert!(matches!(full, Some(Error::MailboxFull { capacity: 4, .. })), "{full:?}");
    for i in 0..100u32 {
        s.send("fast", i).await.unwrap();
    }
    for _ in 0..200 {
        if n.load(Ordering::SeqCst) == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 100, "the fast agent kept working");

    assert!(matches!(s.send("ghost", 1u32).await, Err(Error::UnknownAgent(_))));
    assert!(matches!(
        s.spawn_agent("fast", "us-west-2", Counter(n.clone())).await,
        Err(Error::DuplicateAgent(_))
    ));
    assert!(matches!(s.send("fast", "wrong type").await, Err(Error::WrongTaskType { .. })));
    assert!(s.spawn_agent("", "r", Slow).await.is_err());
    s.stop_agent("slow").await.unwrap();
    s.shutdown().await.unwrap();
    assert!(matches!(s.spawn_agent("late", "r", Slow).await, Err(Error::ShutDown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_sessions_are_ordered_and_paginated() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    for i in 0..25 {
        let m = edgeswarm::Message::new(
            "global-session-123",
            if i % 2 == 0 { "user" } else { "assistant" },
            format!("m{i:02}"),
        )
        .metadata(json!({"region": "us-west-2", "latency": 25}));
        s.add_conversation(m).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.get_conversations("global-session-123", cursor.as_deref(), 10).await.unwrap();
        seen.extend(page.items.iter().map(|m| m.content.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(s.get_conversations("global-session-123", Some("garbage"), 10).await.is_err());
    s.shutdown().await.unwrap();
}

/// Every memory family and the schema tools through `Swarm` methods alone (what the MCP
/// server and the CLI use): kv, metrics, conversations, knowledge, SQL, schema, import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_covers_memory_sql_and_schema() {
    use edgeswarm::{ErrorKind, Knowledge, Message, Metric, Record, SqlValue};
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;

    // kv
    let v1 = s.kv_set("ns", "k", json!(1), None).await.unwrap();
    assert!(matches!(
        s.kv_cas("ns", "k", Some(v1), json!(2), None).await.unwrap(),
        CasOutcome::Swapped { .. }
    ));
    assert!(matches!(
        s.kv_cas("ns", "k", Some(v1), json!(3), None).await.unwrap(),
        CasOutcome::Conflict { .. }
    ));
    assert_eq!(s.kv_get("ns", "k").await.unwrap().map(|e| e.value), Some(json!(2)));
    assert_eq!(s.kv_list("ns", "", 10).await.unwrap().len(), 1);
    assert_eq!(s.kv_count().await.unwrap(), 1);
    assert!(s.kv_delete("ns", "k").await.unwrap());
    assert_eq!(s.kv_get("ns", "k").await.unwrap(), None);

    // metrics
    for (agent, d) in [("a1", 10.0), ("a1", 30.0), ("a2", 20.0)] {
        s.record_metric(Metric::new(agent, "t", d, 5).region("r1")).await.unwrap();
    }
    let m = s.metrics(None).await.unwrap();
    assert_eq!((m.overall.count, m.overall.tokens, m.by_agent.len()), (3, 15, 2));
    assert_eq!(s.metric_count().await.unwrap(), 3);
    assert_eq!(s.metric_activity(0).await.unwrap(), (2, 3));

    // conversations: a session's pages, and every session in storage order
    for i in 0..5 {
        s.add_conversation(Message::new(if i % 2 == 0 { "s1" } else { "s2" }, "user", format!("m{i}")))
            .await
            .unwrap();
    }
    let p = s.get_conversations("s1", None, 2).await.unwrap();
    assert_eq!(p.items.len(), 2);
    let rest = s.get_conversations("s1", p.next_cursor.as_deref(), 2).await.unwrap();
    assert_eq!((rest.items.len(), rest.next_cursor), (1, None));
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_conversations(cursor.as_deref(), 2).await.unwrap();
        all.extend(page.items.into_iter().map(|m| m.content));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(s.conversation_count().await.unwrap(), 5);
    let bad = s.list_conversations(Some("not-a-cursor"), 2).await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Invalid);

    // knowledge
    let a = s
        .add_knowledge(Knowledge::new("code", "alpha", "first entry").tags(["x"]))
        .await
        .unwrap();
    let b = s.add_knowledge(Knowledge::new("code", "beta", "second entry")).await.unwrap();
    let mut got = s.get_knowledge_many(&[a.clone(), b.clone(), "missing".into()]).await.unwrap();
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert_eq!(got.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(), ["alpha", "beta"]);
    assert_eq!(got[0].tags, ["x"]);
    assert_eq!(s.get_knowledge(&a).await.unwrap().map(|e| e.content), Some("first entry".into()));
    let page = s.list_knowledge(None, 1).await.unwrap();
    assert_eq!(page.items[0].id, a);
    let page = s.list_knowledge(page.next_cursor.as_deref(), 1).await.unwrap();
    assert_eq!(page.items[0].id, b);
    assert!(s.delete_knowledge(&b).await.unwrap());
    assert_eq!(s.knowledge_count().await.unwrap(), 1);
    let e = s.search_with(edgeswarm::SearchRequest::new("   ")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);

    // SQL and schema
    s.execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL DEFAULT '')", vec![])
        .await
        .unwrap();
    s.execute_sql("INSERT INTO notes (body) VALUES (?1)", vec![SqlValue::Text("hi".into())])
        .await
        .unwrap();
    assert_eq!(
        s.read_sql("SELECT body FROM notes", vec![]).await.unwrap().rows[0][0],
        SqlValue::Text("hi".into())
    );
    assert_eq!(
        s.read_sql("DELETE FROM notes", vec![]).await.unwrap_err().kind(),
        ErrorKind::SqlRefused
    );
    assert_eq!(s.read_sql("SELEC 1", vec![]).await.unwrap_err().kind(), ErrorKind::SqlError);
    let tables = s.list_tables(false).await.unwrap();
    assert!(tables.iter().any(|t| t.name == "notes" && t.kind == "table" && t.columns == 2));
    assert!(tables.iter().all(|t| !t.name.starts_with('_')));
    assert!(s.list_tables(true).await.unwrap().iter().any(|t| t.name == "_changes"));
    assert_eq!(s.row_count("notes").await.unwrap(), 1);
    let d = s.describe_table("notes").await.unwrap().unwrap();
    assert_eq!(d.primary_key, ["id"]);
    assert_eq!(d.columns[1].default.as_deref(), Some("''"));
    assert!(d.columns[1].not_null);
    assert!(d.sql.unwrap().starts_with("CREATE TABLE notes"));
    assert_eq!(s.describe_table("nowhere").await.unwrap(), None);
    let info = s.database_info().await.unwrap();
    assert_eq!(info.journal_mode, "wal");
    assert!(info.schema_version > 0 && info.page_count > 0);
    assert!(s.schema_sql(Some("notes")).await.unwrap()[0].contains("body TEXT"));
    assert!(s.recorded_regions().await.unwrap().is_empty());
    assert!(!s.origin().is_empty());

    // import keeps ids and counts what was already there
    let k = Knowledge::new("docs", "imported", "from a file");
    let recs: Vec<Record> = vec![k.clone().into(), Message::new("s3", "user", "hello").into()];
    let c = s.import_records(recs.clone()).await.unwrap();
    assert_eq!((c.knowledge, c.conversations, c.already_present), (1, 1, 0));
    let c = s.import_records(recs).await.unwrap();
    assert_eq!((c.knowledge, c.conversations, c.already_present), (0, 0, 2));
    assert_eq!(s.get_knowledge(&k.id).await.unwrap().map(|e| e.topic), Some("imported".into()));
    s.shutdown().await.unwrap();
}
