//! End-to-end tests of the `edgeswarm` binary: every command's happy path and its errors
//! (missing db directory, unreadable config, unknown flag, bad SQL, a port in use).
//! Each test works in its own temporary directory; no test needs another crate's
//! unfinished parts, the network beyond loopback, or more than a few seconds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_edgeswarm")
}

/// A command run in `dir` with a clean environment (no EDGESWARM_* from the caller).
fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("EDGESWARM_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("run edgeswarm")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    );
    out(o)
}

#[track_caller]
fn fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", out(o), err(o));
    let all = format!("{}{}", out(o), err(o));
    assert!(all.contains(needle), "expected `{needle}` in output:\n{all}");
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn db(dir: &Path) -> String {
    dir.join("home.db").display().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A database with one metric, one knowledge entry and one conversation message.
fn seeded(dir: &Path) -> String {
    let d = db(dir);
    ok(&run(
        dir,
        &[
            "sql",
            "--db",
            &d,
            "INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used) VALUES ('agent-1', 'code-analysis', 12.5, 100)",
        ],
    ));
    // Knowledge goes in through its typed path (raw SQL may not write `knowledge`).
    let k = dir.join("seed-knowledge.jsonl");
    std::fs::write(
        &k,
        r#"{"type":"knowledge","id":"k1","category":"code","topic":"lifetimes","content":"borrow checker notes","tags":["rust"],"metadata":null,"region":null,"created_at":1700000000000}"#,
    )
    .expect("seed file");
    ok(&run(dir, &["import", "--db", &d, &k.display().to_string()]));
    std::fs::remove_file(&k).expect("seed file removed");
    ok(&run(dir, &["sql", "--db", &d, "INSERT INTO conversations (id, session_id, role, content, metadata) VALUES ('m1', 's1', 'user', 'hello', '{\"region\":\"us-west-2\"}')"]));
    d
}

#[test]
fn every_command_has_help() {
    let d = tmp();
    let top = ok(&run(d.path(), &["--help"]));
    let cmds = [
        "demo",
        "mcp",
        "bench",
        "status",
        "sql",
        "shell",
        "regions",
        "export",
        "import",
        "doctor",
        "config",
        "completions",
    ];
    for c in cmds {
        assert!(top.contains(c), "top-level help lists {c}");
        let h = ok(&run(d.path(), &[c, "--help"]));
        assert!(h.contains("Usage: edgeswarm"), "{c} --help:\n{h}");
    }
    for sub in [
        ["regions", "add"],
        ["regions", "remove"],
        ["regions", "partition"],
        ["regions", "heal"],
        ["regions", "list"],
        ["config", "check"],
        ["config", "show"],
    ] {
        ok(&run(d.path(), &[sub[0], sub[1], "--help"]));
    }
    assert!(ok(&run(d.path(), &["--version"])).starts_with("edgeswarm "));
}

#[test]
fn unknown_flag_and_bad_values_are_usage_errors() {
    let d = tmp();
    fails(
        &run(d.path(), &["status", "--no-such-flag"]),
        2,
        "unexpected argument '--no-such-flag'",
    );
    fails(&run(d.path(), &["bench", "nonsense"]), 2, "invalid value 'nonsense'");
    fails(
        &run(d.path(), &["sql", "--durability", "sometimes", "SELECT 1"]),
        2,
        "invalid value 'sometimes'",
    );
    fails(&run(d.path(), &["frobnicate"]), 2, "unrecognized subcommand");
}

#[test]
fn sql_reads_writes_and_prints_tables_or_json() {
    let d = tmp();
    let db = seeded(d.path());
    let t = ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &db,
            "SELECT agent_id, task_type, duration_ms, tokens_used FROM agent_metrics",
        ],
    ));
    assert!(t.contains("agent_id | task_type"), "{t}");
    assert!(t.contains("agent-1  | code-analysis | 12.5        | 100"), "{t}");
    assert!(t.contains("(1 row)"));
    let j = ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &db,
            "--json",
            "-p",
            "agent-1",
            "SELECT count(*) AS n FROM agent_metrics WHERE agent_id = ?1",
        ],
    ));
    assert_eq!(j.lines().count(), 1, "exactly one JSON line: {j}");
    let v: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(v["rows"][0]["n"], 1);
    // The seed's analytics query runs as written.
    ok(&run(d.path(), &["sql", "--db", &db, "SELECT er.region, er.status, AVG(dt.latency_ms) as avg_latency FROM edge_replicas er LEFT JOIN distributed_transactions dt ON er.region = dt.source_region GROUP BY er.region, er.status"]));
    // --read-only refuses writes.
    fails(
        &run(d.path(), &["sql", "--db", &db, "--read-only", "DELETE FROM agent_metrics"]),
        1,
        "refused",
    );
}

#[test]
fn bad_sql_is_an_error_and_writes_nothing() {
    let d = tmp();
    let db = seeded(d.path());
    fails(&run(d.path(), &["sql", "--db", &db, "SELEC 1"]), 1, "syntax error");
    fails(
        &run(d.path(), &["sql", "--db", &db, "SELECT * FROM no_such_table"]),
        1,
        "no such table",
    );
    fails(&run(d.path(), &["sql", "--db", &db, "  ;  "]), 1, "empty statement");
    let n = ok(&run(
        d.path(),
        &["sql", "--db", &db, "--json", "SELECT count(*) AS n FROM agent_metrics"],
    ));
    assert!(n.contains("\"n\":1"), "{n}");
}

#[test]
fn missing_db_directory_is_explained() {
    let d = tmp();
    let missing = d.path().join("nope/sub/home.db").display().to_string();
    for args in [
        vec!["sql", "--db", &missing, "SELECT 1"],
        vec!["status", "--db", &missing],
        vec!["import", "--db", &missing, "x.jsonl"],
        vec!["regions", "--db", &missing, "list"],
    ] {
        let o = run(d.path(), &args);
        if args[0] == "import" {
            // import checks its input file first.
            fails(&o, 1, "x.jsonl");
        } else {
            fails(&o, 1, "does not exist; create it (mkdir -p");
        }
    }
    assert!(!d.path().join("nope").exists(), "nothing was created");
    let doc = run(d.path(), &["doctor", "--db", &missing]);
    fails(&doc, 1, "FAIL  database file");
}

#[test]
fn read_commands_need_an_existing_database() {
    let d = tmp();
    let db = db(d.path());
    fails(&run(d.path(), &["status", "--db", &db]), 1, "no database at");
    fails(&run(d.path(), &["export", "--db", &db]), 1, "no database at");
    assert!(!Path::new(&db).exists());
    // The database is gone but its log is not (deleted without it): every command says
    // so, and none creates a new file beside that log.
    std::fs::write(format!("{db}-wal"), vec![7u8; 4096]).expect("write a log");
    fails(&run(d.path(), &["status", "--db", &db]), 1, "home.db-wal still holds 4096 bytes");
    fails(&run(d.path(), &["sql", "--db", &db, "SELECT 1"]), 1, "the database file is missing");
    assert!(!Path::new(&db).exists());
}

#[test]
fn unreadable_config_is_an_error() {
    let d = tmp();
    fails(
        &run(d.path(), &["status", "--config", "missing.toml"]),
        1,
        "cannot read config file missing.toml",
    );
    std::fs::create_dir(d.path().join("dir.toml")).expect("mkdir");
    fails(
        &run(d.path(), &["config", "check", "dir.toml"]),
        1,
        "cannot read config file dir.toml",
    );
    fails(&run(d.path(), &["config", "check"]), 1, "no config file");
    // Via the environment too.
    let o = cmd(d.path())
        .args(["sql", "SELECT 1"])
        .env("EDGESWARM_CONFIG", "gone.toml")
        .output()
        .expect("run");
    fails(&o, 1, "cannot read config file gone.toml");
}

#[test]
fn config_check_reports_each_problem_with_its_line() {
    let d = tmp();
    let bad = "db = \"./home.db\"\ndurability = \"fast\"\nqueue_capacity = 0\n\n[batch]\nmax_rowz = 5\n\n[[regions]]\nname = \"us-west-2\"\nurl = \"file:regions/us.db\"\n\n[[regions]]\nname = \"us-west-2\"\nurl = \"ftp://example\"\n\n[[regions]]\nname = \"cloud\"\nurl = \"https://db.example\"\ntoken = \"secret-value\"\n";
    std::fs::write(d.path().join("bad.toml"), bad).expect("write");
    let o = run(d.path(), &["config", "check", "bad.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(s.contains("bad.toml:2:14: error: `durability` = \"fast\""), "{s}");
    assert!(s.contains("bad.toml:3:18: error: `queue_capacity` = 0 is out of range"), "{s}");
    assert!(
        s.contains("bad.toml:6:1: error: unknown key `max_rowz` in [batch]. Did you mean `max_rows`?"),
        "{s}"
    );
    assert!(
        s.contains("bad.toml:13:8: error: region name `us-west-2` appears twice (first on line 9)"),
        "{s}"
    );
    assert!(s.contains("bad.toml:19:1: error: unknown key `token`"), "{s}");
    assert!(s.contains("token_env"), "{s}");
    assert!(!format!("{s}{}", err(&o)).contains("secret-value"), "secrets are never echoed");
    // JSON form.
    let j = out(&run(d.path(), &["config", "check", "--json", "bad.toml"]));
    let v: serde_json::Value = serde_json::from_str(j.trim()).expect("json");
    assert_eq!(v["ok"], false);
    assert!(v["errors"].as_u64().unwrap_or(0) >= 5);
    // Syntax errors have lines too.
    std::fs::write(d.path().join("syntax.toml"), "db = \"a.db\"\n[batch\nmax_rows = 1\n").expect("write");
    let o = run(d.path(), &["config", "check", "syntax.toml"]);
    fails(&o, 1, "syntax.toml:2:");
    // A command refuses to run on a bad config.
    fails(&run(d.path(), &["status", "--config", "bad.toml"]), 1, "config file bad.toml has");
}

#[test]
fn the_example_config_is_valid() {
    let d = tmp();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../edgeswarm.toml.example");
    let o = run(d.path(), &["config", "check", &example.display().to_string()]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains(": ok ("));
}

#[test]
fn config_layers_file_env_then_flags() {
    let d = tmp();
    std::fs::write(
        d.path().join("edgeswarm.toml"),
        "db = \"from-file.db\"\ndurability = \"normal\"\nqueue_capacity = 1000\n[batch]\nmax_rows = 77\n",
    )
    .expect("write");
    let s = ok(&run(d.path(), &["config", "show"]));
    assert!(
        s.contains("db = \"from-file.db\"") && s.contains("durability = \"normal\"") && s.contains("max_rows = 77"),
        "{s}"
    );
    let s = out(&cmd(d.path())
        .args(["config", "show"])
        .env("EDGESWARM_QUEUE_CAPACITY", "2000")
        .env("EDGESWARM_DB", "from-env.db")
        .output()
        .expect("run"));
    assert!(s.contains("queue_capacity = 2000") && s.contains("db = \"from-env.db\""), "{s}");
    let s = out(&cmd(d.path())
        .args(["config", "show", "--queue-capacity", "3000", "--durability", "full"])
        .env("EDGESWARM_QUEUE_CAPACITY", "2000")
        .output()
        .expect("run"));
    assert!(s.contains("queue_capacity = 3000") && s.contains("durability = \"full\""), "{s}");
    fails(
        &cmd(d.path())
            .args(["config", "show"])
            .env("EDGESWARM_QUEUE_CAPACITY", "0")
            .output()
            .expect("run"),
        1,
        "must be at least 1",
    );
}

#[test]
fn status_shows_tables_regions_and_json() {
    let d = tmp();
    let db = seeded(d.path());
    ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &db,
            "INSERT INTO edge_replicas (region, status, avg_latency_ms, lag_rows, lag_ms) VALUES ('eu-central-1', 'healthy', 45.0, 3, 120)",
        ],
    ));
    let s = ok(&run(d.path(), &["status", "--db", &db]));
    assert!(s.contains("schema v") && s.contains("journal wal"), "{s}");
    assert!(
        s.contains("knowledge") && s.contains("eu-central-1") && s.contains("healthy"),
        "{s}"
    );
    assert!(s.contains("1 active in the last 60 s"), "{s}");
    let j = ok(&run(d.path(), &["status", "--db", &db, "--json"]));
    assert_eq!(j.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(v["regions"][0]["lag_rows"], 3);
    // --watch refreshes in place (clear-screen) and stops after --count.
    let w = ok(&run(
        d.path(),
        &["status", "--db", &db, "--watch", "--count", "2", "--interval-ms", "50"],
    ));
    assert_eq!(w.matches("\x1b[H\x1b[2J").count(), 2);
}

#[test]
fn prometheus_endpoint_serves_metrics() {
    let d = tmp();
    let db = seeded(d.path());
    ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &db,
            "INSERT INTO edge_replicas (region, status, lag_rows, lag_ms) VALUES ('us-west-2', 'healthy', 5, 250)",
        ],
    ));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(d.path())
        .args([
            "status",
            "--db",
            &db,
            "--watch",
            "--interval-ms",
            "100",
            "--count",
            "300",
            "--metrics-addr",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    let mut body = None;
    while t.elapsed() < Duration::from_secs(20) {
        if let Some(b) = http_get(port, "/metrics") {
            body = Some(b);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("metrics endpoint answered");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("application/openmetrics-text; version=1.0.0"), "{body}");
    for m in [
        "edgeswarm_write_batch_size_bucket{le=\"1.0\"}",
        "edgeswarm_commit_latency_seconds_count",
        "edgeswarm_ack_latency_seconds_count",
        "edgeswarm_write_queue_depth",
        "edgeswarm_writer_restarts_total",
        "edgeswarm_region_lag_rows{region=\"us-west-2\"} 5",
        "edgeswarm_region_lag_seconds{region=\"us-west-2\"} 0.25",
        "edgeswarm_region_up{region=\"us-west-2\"} 1",
    ] {
        assert!(body.contains(m), "missing {m} in:\n{body}");
    }
}

#[test]
fn a_port_in_use_is_reported() {
    let d = tmp();
    let db = seeded(d.path());
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    fails(
        &run(d.path(), &["sql", "--db", &db, "--metrics-addr", &addr, "SELECT 1"]),
        1,
        "already in use",
    );
    fails(
        &run(d.path(), &["status", "--db", &db, "--metrics-addr", &addr]),
        1,
        &format!("cannot listen on {addr}"),
    );
    fails(
        &run(d.path(), &["demo", "--db", &db, "--metrics-addr", &addr]),
        1,
        &format!("cannot listen on {addr}"),
    );
    fails(
        &run(d.path(), &["sql", "--metrics-addr", "not-an-addr", "SELECT 1"]),
        2,
        "invalid value",
    );
}

#[test]
fn export_then_import_is_idempotent_by_id() {
    let d = tmp();
    let src = seeded(d.path());
    let file = d.path().join("dump.jsonl").display().to_string();
    ok(&run(d.path(), &["export", "--db", &src, "-o", &file]));
    let text = std::fs::read_to_string(&file).expect("dump");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("\"type\":\"knowledge\"") && text.contains("\"type\":\"conversation\""),
        "{text}"
    );
    // stdout export is the same.
    assert_eq!(ok(&run(d.path(), &["export", "--db", &src])), text);
    let only_k = ok(&run(d.path(), &["export", "--db", &src, "--what", "knowledge"]));
    assert_eq!(only_k.lines().count(), 1);

    let dst = d.path().join("copy.db").display().to_string();
    let first = ok(&run(d.path(), &["import", "--db", &dst, &file]));
    assert!(
        first.contains("imported 1 knowledge entries and 1 conversation messages; 0 already present"),
        "{first}"
    );
    let again = ok(&run(d.path(), &["import", "--db", &dst, "--json", &file]));
    let v: serde_json::Value = serde_json::from_str(again.trim()).expect("json");
    assert_eq!((v["knowledge"].as_u64(), v["already_present"].as_u64()), (Some(0), Some(2)));
    let n = ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &dst,
            "--json",
            "SELECT (SELECT count(*) FROM knowledge) AS k, (SELECT count(*) FROM conversations) AS c",
        ],
    ));
    assert!(n.contains("\"k\":1") && n.contains("\"c\":1"), "{n}");
    // The imported entry is searchable (FTS triggers ran).
    let hit = ok(&run(
        d.path(),
        &[
            "sql",
            "--db",
            &dst,
            "SELECT topic FROM knowledge_fts WHERE knowledge_fts MATCH 'borrow'",
        ],
    ));
    assert!(hit.contains("lifetimes"), "{hit}");
}

#[test]
fn import_refuses_bad_lines_and_writes_nothing() {
    let d = tmp();
    let dst = db(d.path());
    let good = r#"{"type":"conversation","id":"m9","session_id":"s","role":"user","content":"hi","metadata":null,"created_at":1}"#;
    std::fs::write(
        d.path().join("bad.jsonl"),
        format!("{good}\n{{\"type\":\"knowledge\",\"id\":\"\"}}\n"),
    )
    .expect("write");
    fails(&run(d.path(), &["import", "--db", &dst, "bad.jsonl"]), 1, "bad.jsonl:2:");
    std::fs::write(
        d.path().join("empty-id.jsonl"),
        r#"{"type":"conversation","id":"","session_id":"s","role":"user","content":"hi","metadata":null,"created_at":1}"#,
    )
    .expect("write");
    fails(&run(d.path(), &["import", "--db", &dst, "empty-id.jsonl"]), 1, "empty-id.jsonl:1:");
    fails(&run(d.path(), &["import", "--db", &dst, "missing.jsonl"]), 1, "missing.jsonl");
    if Path::new(&dst).exists() {
        let n = ok(&run(
            d.path(),
            &["sql", "--db", &dst, "--json", "SELECT count(*) AS n FROM conversations"],
        ));
        assert!(n.contains("\"n\":0"), "{n}");
    }
}

#[test]
fn doctor_says_whether_data_is_durable() {
    let d = tmp();
    let db = seeded(d.path());
    let s = ok(&run(d.path(), &["doctor", "--db", &db]));
    for line in [
        "ok    journal mode",
        "ok    synchronous",
        "ok    schema version",
        "ok    fts5",
        "ok    vectors",
        "ok    integrity",
        "free space",
        "embedder",
        "durable: yes",
    ] {
        assert!(s.contains(line), "missing `{line}` in:\n{s}");
    }
    let s = ok(&run(d.path(), &["doctor", "--db", &db, "--durability", "normal"]));
    assert!(
        s.contains("warn  synchronous") && s.contains("fix:") && s.contains("durable: against process crashes only"),
        "{s}"
    );
    let j = ok(&run(d.path(), &["doctor", "--db", &db, "--json"]));
    let v: serde_json::Value = serde_json::from_str(j.trim()).expect("json");
    assert_eq!(v["failed"], 0);
    // Regions from the config: a file region that exists, and an HTTP one that is down.
    let port = free_port();
    std::fs::write(d.path().join("r.toml"), format!("[[regions]]\nname = \"near\"\nurl = \"file:{db}\"\nlatency_ms = 5\n\n[[regions]]\nname = \"far\"\nurl = \"http://127.0.0.1:{port}\"\n")).expect("write");
    let o = run(d.path(), &["doctor", "--db", &db, "--config", "r.toml", "--timeout-secs", "1"]);
    fails(&o, 1, "ok    region near");
    assert!(out(&o).contains("FAIL  region far"), "{}", out(&o));
}

#[test]
fn regions_control_plane() {
    let d = tmp();
    let db = seeded(d.path());
    ok(&run(
        d.path(),
        &["regions", "--db", &db, "add", "eu-central-1", "--latency-ms", "45"],
    ));
    fails(
        &run(d.path(), &["regions", "--db", &db, "add", "eu-central-1"]),
        1,
        "already exists",
    );
    fails(
        &run(d.path(), &["regions", "--db", &db, "add", "bad name!"]),
        1,
        "must be 1-64 letters",
    );
    fails(
        &run(d.path(), &["regions", "--db", &db, "add", "x", "--url", "ftp://y"]),
        1,
        "must start with file:",
    );
    ok(&run(d.path(), &["regions", "--db", &db, "partition", "eu-central-1"]));
    let l = ok(&run(d.path(), &["regions", "--db", &db, "--json", "list"]));
    let v: serde_json::Value = serde_json::from_str(l.trim()).expect("json");
    assert_eq!(v["regions"][0]["partitioned"], true, "{l}");
    ok(&run(d.path(), &["regions", "--db", &db, "heal", "eu-central-1"]));
    let l = ok(&run(d.path(), &["regions", "--db", &db, "list"]));
    assert!(l.contains("eu-central-1 | 45") && l.contains("false"), "{l}");
    ok(&run(d.path(), &["regions", "--db", &db, "remove", "eu-central-1"]));
    fails(
        &run(d.path(), &["regions", "--db", &db, "remove", "eu-central-1"]),
        1,
        "no region `eu-central-1`",
    );
    fails(
        &run(d.path(), &["regions", "--db", &db, "heal", "nowhere"]),
        1,
        "no region `nowhere`",
    );
}

#[test]
fn shell_reads_piped_statements() {
    let d = tmp();
    let db = seeded(d.path());
    let mut c = cmd(d.path())
        .args(["shell", "--db", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(b".tables\nSELECT agent_id\n  FROM agent_metrics;\n.json\nSELECT 40 + 2 AS answer;\n")
        .expect("write");
    let o = c.wait_with_output().expect("wait");
    let s = ok(&o);
    assert!(
        s.contains("agent_metrics") && s.contains("agent-1") && s.contains("\"answer\":42"),
        "{s}"
    );
    // Bad SQL stops a piped run with exit 1.
    let mut c = cmd(d.path())
        .args(["sql", "--db", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    c.stdin.take().expect("stdin").write_all(b"SELEC 1;\nSELECT 2;\n").expect("write");
    let o = c.wait_with_output().expect("wait");
    fails(&o, 1, "syntax error");
}

#[test]
fn completions_are_printed() {
    let d = tmp();
    assert!(ok(&run(d.path(), &["completions", "bash"])).contains("_edgeswarm()"));
    assert!(ok(&run(d.path(), &["completions", "zsh"])).contains("#compdef edgeswarm"));
    fails(&run(d.path(), &["completions", "tcsh"]), 2, "invalid value");
}

#[test]
fn json_logs_on_request() {
    let d = tmp();
    let db = seeded(d.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let o = cmd(d.path())
        .args(["--log-format", "json", "sql", "--db", &db, "--metrics-addr", &addr, "SELECT 1"])
        .env("RUST_LOG", "edgeswarm_cli=info")
        .output()
        .expect("run");
    ok(&o);
    let line = err(&o)
        .lines()
        .find(|l| l.contains("Prometheus"))
        .map(str::to_string)
        .expect("a log line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
    assert_eq!(v["level"], "INFO");
    // From the config file too.
    std::fs::write(d.path().join("edgeswarm.toml"), "[observability]\nlog_format = \"json\"\n").expect("write");
    let addr = format!("127.0.0.1:{}", free_port());
    let o = cmd(d.path())
        .args(["sql", "--db", &db, "--metrics-addr", &addr, "SELECT 1"])
        .env("RUST_LOG", "edgeswarm_cli=info")
        .output()
        .expect("run");
    ok(&o);
    let line = err(&o)
        .lines()
        .find(|l| l.contains("Prometheus"))
        .map(str::to_string)
        .expect("a log line");
    assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "{line}");
}

#[test]
fn demo_and_bench_validate_their_arguments() {
    let d = tmp();
    fails(&run(d.path(), &["demo", "--agents", "0"]), 1, "--agents 0 is out of range");
    fails(&run(d.path(), &["demo", "--regions", "us-west-2"]), 1, "NAME:LATENCY_MS");
    let missing = d.path().join("no/dir/x.db").display().to_string();
    fails(&run(d.path(), &["demo", "--db", &missing]), 1, "does not exist; create it");
    fails(&run(d.path(), &["bench"]), 2, "<WHICH>");
}

#[test]
fn demo_runs_reports_and_leaves_a_sound_database() {
    let d = tmp();
    let db = db(d.path());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = cmd(d.path())
        .args([
            "demo",
            "--db",
            &db,
            "--seconds",
            "3",
            "--agents",
            "6",
            "--no-progress",
            "--metrics-addr",
            &addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Scrape mid-run: every metric named in the issue, non-zero where work happened.
    let t = Instant::now();
    let mut body = String::new();
    while t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(b) = http_get(port, "/metrics") {
            let ops = b
                .lines()
                .find(|l| l.starts_with("edgeswarm_write_ops_total "))
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if ops > 0.0 && b.contains("edgeswarm_agents{status=\"running\"} 6") {
                body = b;
                break;
            }
        }
    }
    // While it runs, the control plane lists its regions and status sees the node.
    let l = ok(&run(d.path(), &["regions", "--db", &db, "list"]));
    assert!(l.contains("us-west-2") && l.contains("sa-east-1"), "{l}");
    ok(&run(d.path(), &["regions", "--db", &db, "partition", "sa-east-1"]));
    let o = child.wait_with_output().expect("wait");
    let report = ok(&o);
    assert!(!body.is_empty(), "metrics with work never seen; demo stderr: {}", err(&o));
    for m in [
        "edgeswarm_write_batch_size_count",
        "edgeswarm_commit_latency_seconds_bucket",
        "edgeswarm_write_queue_depth",
        "edgeswarm_agent_restarts_total{agent=",
        "edgeswarm_agent_tasks_total{agent=",
        "edgeswarm_ack_latency_seconds_count",
        "edgeswarm_search_latency_seconds_count",
    ] {
        assert!(body.contains(m), "missing {m}");
    }
    assert!(
        report.contains("Throughput by operation") && report.contains("Database:"),
        "{report}"
    );
    let doc = ok(&run(d.path(), &["doctor", "--db", &db]));
    assert!(doc.contains("ok    integrity") && doc.contains("durable: yes"), "{doc}");
    let n = ok(&run(
        d.path(),
        &["sql", "--db", &db, "--json", "SELECT count(*) AS n FROM agent_metrics"],
    ));
    assert!(!n.contains("\"n\":0"), "{n}");
}

#[test]
fn backup_snapshots_a_live_database() {
    let d = tmp();
    let db = seeded(d.path());
    let dest = d.path().join("backup.db").display().to_string();
    let o = ok(&run(d.path(), &["backup", "--db", &db, &dest]));
    assert!(o.contains("integrity ok"), "{o}");
    fails(&run(d.path(), &["backup", "--db", &db, &dest]), 1, "already exists");
    ok(&run(d.path(), &["backup", "--db", &db, "--force", &dest]));
    let n = ok(&run(
        d.path(),
        &["sql", "--db", &dest, "--json", "SELECT count(*) AS n FROM knowledge"],
    ));
    assert!(n.contains("\"n\":1"), "{n}");
    let missing = d.path().join("nope/b.db").display().to_string();
    fails(&run(d.path(), &["backup", "--db", &db, &missing]), 1, "does not exist");
    fails(
        &run(
            d.path(),
            &["backup", "--db", &d.path().join("none.db").display().to_string(), &dest],
        ),
        1,
        "no database at",
    );
}

#[test]
fn regions_add_and_remove_take_effect_on_a_running_demo() {
    let d = tmp();
    let db = db(d.path());
    let mut child = cmd(d.path())
        .args([
            "demo",
            "--db",
            &db,
            "--agents",
            "4",
            "--seconds",
            "12",
            "--regions",
            "first:5",
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    // The demo's stderr, read as it comes: its "region … added/removed (live" lines are
    // printed after the change they report, so the test waits for them, not for exit.
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (mut pipe, buf) = (child.stderr.take().expect("piped stderr"), stderr.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                buf.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        })
    };
    let printed = |line: &str| {
        let t = Instant::now();
        while !stderr.lock().unwrap().contains(line) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "`{line}` never printed: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let list = |d: &Path| -> serde_json::Value {
        let o = run(d, &["regions", "--db", &db, "--json", "list"]);
        serde_json::from_str(out(&o).trim()).unwrap_or(serde_json::Value::Null)
    };
    let row = |v: &serde_json::Value, n: &str| v["regions"].as_array().and_then(|a| a.iter().find(|r| r["region"] == n).cloned());
    let wait = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let t = Instant::now();
        loop {
            let v = list(d.path());
            if f(&v) {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{what}: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The demo creates the file (a `regions list` before that would create it first).
    let t = Instant::now();
    while !d.path().join("home.db").is_file() || t.elapsed() < Duration::from_millis(1500) {
        assert!(t.elapsed() < Duration::from_secs(20), "the demo did not create its database");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The demo registers its region and it syncs.
    wait("demo region healthy", &|v| {
        row(v, "first").is_some_and(|r| r["status"] == "healthy")
    });
    // Added while it runs: the demo starts it live and it syncs (seeded from home).
    ok(&run(d.path(), &["regions", "--db", &db, "add", "second", "--latency-ms", "3"]));
    wait("added region healthy", &|v| {
        row(v, "second").is_some_and(|r| r["status"] == "healthy")
    });
    // Removed while it runs: the demo drains and drops it; its status row goes.
    ok(&run(d.path(), &["regions", "--db", &db, "remove", "first"]));
    wait("removed region gone", &|v| row(v, "first").is_none());
    printed("region second added (live");
    printed("region first removed (live");
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        d.path().join("regions/second.db").is_file(),
        "the added region's file is beside the database"
    );
}

/// Sends `head` (a request's head, its body withheld) on a fresh connection and returns the
/// reply's head, lower-cased, and whether the server then closed the connection.
fn reply_to_head(port: u16, head: &str) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(head.as_bytes()).expect("send head");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read reply");
        assert!(n > 0, "connection closed before a reply: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head end") + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    // Whatever follows is the (short) JSON body, then end of stream when the server closes.
    s.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    (head, closed)
}

/// A refusal given before the request body has arrived (wrong token, foreign Origin) says
/// `Connection: close`: the server drops such a connection, and a client that reused it
/// for its next request would see it close without a reply (CI saw this race once).
/// A refusal of a request without a body keeps the connection.
#[test]
fn mcp_http_refusals_before_the_body_close_the_connection() {
    let d = tmp();
    let db = db(d.path());
    let port = free_port();
    let token = "0123456789abcdef0123";
    let mut child = cmd(d.path())
        .args(["mcp", "--db", &db, "--http", &format!("127.0.0.1:{port}")])
        .env("EDGESWARM_MCP_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while http_get(port, "/health").is_none() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let post = |auth: &str, extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{extra}Content-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 4000\r\n\r\n"
        )
    };
    let wrong = reply_to_head(port, &post("Authorization: Bearer wrong-token-wrong-token\r\n", ""));
    let missing = reply_to_head(port, &post("", ""));
    let origin = reply_to_head(
        port,
        &post(&format!("Authorization: Bearer {token}\r\n"), "Origin: http://evil.example\r\n"),
    );
    let no_body = reply_to_head(
        port,
        &format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer wrong-token\r\n\r\n"),
    );
    let _ = child.kill();
    let _ = child.wait();
    for (what, (head, closed)) in [("wrong token", &wrong), ("missing token", &missing), ("foreign Origin", &origin)] {
        let status = if what == "foreign Origin" { "403" } else { "401" };
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{what}: {head}");
        assert!(
            head.contains("\r\nconnection: close\r\n"),
            "{what}: no `Connection: close` in\n{head}"
        );
        assert!(*closed, "{what}: the server kept the connection open");
    }
    let (head, closed) = no_body;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(
        !head.contains("connection: close"),
        "a request without a body keeps its connection:\n{head}"
    );
    assert!(!closed, "a request without a body keeps its connection");
}
