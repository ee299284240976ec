#!/usr/bin/env python3
"""Drives the real `edgeswarm mcp` binary with the official Python MCP SDK (PyPI `mcp`),
over stdio and over streamable HTTP, and checks every tool with the seed's own arguments
plus bad input of every kind the issue lists.

Failures have the shapes of the MCP spec (2025-11-25, SEP-1303): a tool call that ran and
failed (bad or out-of-range arguments, refused or failing SQL, a time limit, not found)
is a result with `isError: true`, the message as text and `{kind, retryable, message}` as
structured content; only an unknown tool and a malformed request are JSON-RPC errors.

    python3 -m venv /tmp/mcpvenv && /tmp/mcpvenv/bin/pip install -r tests/mcp/requirements.txt
    EDGESWARM_BIN=target/debug/edgeswarm /tmp/mcpvenv/bin/python tests/mcp/test_mcp.py

Prints one line per check and finally `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import anyio
import httpx2
import jsonschema
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from checks import check, free_port, reply_to, summary, wait_listening

BIN = os.path.abspath(os.environ.get("EDGESWARM_BIN", "target/debug/edgeswarm"))
TOKEN = "test-token-5f3a-9c2e-41d7"  # at least 16 characters, or the server refuses it
QUERY_TIMEOUT_MS = 1500
MAX_ROWS = 100

EXPECTED_TOOLS = [
    "execute_read_only_query", "execute_query", "list_databases", "get_database_info",
    "list_tables", "describe_table", "setup_memory_tables", "add_conversation",
    "get_conversations", "add_knowledge", "search_knowledge", "record_metric",
    "get_metrics", "sync_status", "kv_get", "kv_set", "kv_cas", "kv_delete",
]

SEED_CONVERSATION = {
    "session_id": "global-session-123",
    "role": "user",
    "content": "Query from edge location",
    "metadata": {"region": "us-west-2", "latency": 25},
}
SEED_KNOWLEDGE = {
    "category": "edge-computing",
    "topic": "latency-optimization",
    "content": "Best practices for edge deployment",
    "tags": ["performance", "edge", "distributed"],
    "metadata": {"regions": ["us-west-2", "eu-central-1"]},
}
SEED_METRIC_INSERT = {
    "query": "INSERT INTO agent_metrics \n          (agent_id, task_type, duration_ms, tokens_used) \n          VALUES (?, ?, ?, ?)",
    "params": ["agent-123", "code-analysis", 1250, 3500],
}
SEED_ANALYTICS = """WITH regional_stats AS (
  SELECT region,
         COUNT(*) as transactions,
         AVG(latency_ms) as avg_latency
  FROM edge_replicas
  JOIN distributed_transactions ON region = source_region
  GROUP BY region
)
SELECT * FROM regional_stats
WHERE avg_latency < 100
ORDER BY transactions DESC;"""
NEVER_ENDING = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"



def structured(result) -> dict:
    """The structured result, after checking the text content says the same."""
    sc = result.structured_content
    text = result.content[0].text if result.content else ""
    if json.loads(text) != sc:
        raise AssertionError(f"text content differs from structuredContent: {text[:200]}")
    return sc


class Suite:
    def __init__(self, session: ClientSession, transport: str):
        self.s = session
        self.t = transport

    def label(self, what: str) -> str:
        return f"[{self.t}] {what}"

    async def call(self, name: str, args: dict) -> dict:
        r = await self.s.call_tool(name, args)
        if r.is_error:
            raise AssertionError(f"{name} returned isError: {r.content}")
        return structured(r)

    async def ok(self, what: str, name: str, args: dict, pred=lambda r: True):
        try:
            r = await self.call(name, args)
        except Exception as e:  # noqa: BLE001
            check(self.label(what), False, f"{type(e).__name__}: {e}")
            return None
        try:
            good = bool(pred(r))
        except Exception as e:  # noqa: BLE001
            good, r = False, f"{type(e).__name__}: {e}; result {json.dumps(r)[:600]}"
        check(self.label(what), good, json.dumps(r)[:600] if not isinstance(r, str) else r)
        return r

    async def err(self, what: str, name: str, args: dict, *needles: str, kind: str, retryable: bool = False):
        """Expects a tool-execution error: a result with isError true whose text contains
        every needle (case-insensitive) and whose structured content is
        {kind, retryable, message} with the same message."""
        try:
            r = await self.s.call_tool(name, args)
        except MCPError as e:
            return check(self.label(what), False, f"expected an isError result, got JSON-RPC error {e.code} {e.message!r}")
        text = r.content[0].text if r.content and getattr(r.content[0], "text", None) is not None else ""
        sc = r.structured_content or {}
        missing = [n for n in needles if n.lower() not in text.lower()]
        good = (
            r.is_error is True and not missing and sc.get("kind") == kind and sc.get("retryable") is retryable
            and sc.get("message") == text and set(sc) == {"kind", "retryable", "message"}
        )
        return check(self.label(what), good, f"isError={r.is_error} text {text[:300]!r} structured {json.dumps(sc)[:300]}; wanted {needles} kind {kind} retryable {retryable}")

    async def rpc_err(self, what: str, name: str, args: dict, *needles: str, code: int):
        """Expects a JSON-RPC error (not a tool result) whose message contains every needle."""
        try:
            r = await self.s.call_tool(name, args)
        except MCPError as e:
            msg = e.message.lower()
            missing = [n for n in needles if n.lower() not in msg]
            return check(self.label(what), not missing and e.code == code, f"code {e.code} message {e.message!r}; wanted {needles} code {code}")
        return check(self.label(what), False, f"expected a JSON-RPC error, got a result isError={r.is_error} {r.content[:1]}")

    async def count(self, table: str) -> int:
        r = await self.call("execute_read_only_query", {"query": f"SELECT count(*) AS n FROM {table}"})
        return r["rows"][0]["n"]

    async def counts(self) -> dict:
        out = {}
        for t in ("conversations", "knowledge", "agent_metrics", "kv", "edge_replicas", "performance_tests"):
            out[t] = await self.count(t)
        out["user_version"] = (await self.call("execute_read_only_query", {"query": "PRAGMA user_version"}))["rows"][0]["user_version"]
        return out

    # ---- the happy path: every tool with the seed's arguments -------------------------

    async def tools(self):
        listed = (await self.s.list_tools()).tools
        by_name = {t.name: t for t in listed}
        missing = [n for n in EXPECTED_TOOLS if n not in by_name]
        check(self.label("tools/list has all 18 tools"), not missing, f"missing {missing}")
        bad = []
        for t in listed:
            try:
                cls = jsonschema.validators.validator_for(t.input_schema, default=jsonschema.Draft202012Validator)
                cls.check_schema(t.input_schema)
                assert t.input_schema.get("type") == "object", "schema type is not object"
                assert t.description and len(t.description) > 40, "description too short"
            except Exception as e:  # noqa: BLE001
                bad.append(f"{t.name}: {e}")
        check(self.label("every tool has a valid JSON Schema and a description"), not bad, bad)
        for name, args in (("add_conversation", SEED_CONVERSATION), ("add_knowledge", SEED_KNOWLEDGE), ("execute_query", SEED_METRIC_INSERT)):
            try:
                jsonschema.validate(args, by_name[name].input_schema)
                check(self.label(f"seed arguments of {name} validate against its schema"), True)
            except Exception as e:  # noqa: BLE001
                check(self.label(f"seed arguments of {name} validate against its schema"), False, e)
        return by_name

    async def happy(self):
        await self.ok("setup_memory_tables is idempotent (1st)", "setup_memory_tables", {}, lambda r: r["ok"] and r["created"] == [] and "conversations" in r["already_present"])
        await self.ok("setup_memory_tables is idempotent (2nd)", "setup_memory_tables", {}, lambda r: r["ok"] and r["created"] == [])

        conv = await self.ok("add_conversation (seed)", "add_conversation", SEED_CONVERSATION, lambda r: r["id"] and r["session_id"] == "global-session-123")
        await self.ok(
            "get_conversations returns the seed message with its metadata",
            "get_conversations", {"session_id": "global-session-123"},
            lambda r: r["count"] == 1 and r["messages"][0]["content"] == "Query from edge location"
            and r["messages"][0]["metadata"] == {"region": "us-west-2", "latency": 25}
            and r["messages"][0]["id"] == conv["id"] and r["next_cursor"] is None,
        )
        for i in range(5):
            await self.call("add_conversation", {"session_id": "paged", "role": "assistant" if i % 2 else "user", "content": f"message {i}"})
        seen, cursor, pages = [], None, 0
        while True:
            args = {"session_id": "paged", "limit": 2}
            if cursor:
                args["cursor"] = cursor
            r = await self.call("get_conversations", args)
            seen += [m["content"] for m in r["messages"]]
            pages += 1
            cursor = r["next_cursor"]
            if not cursor or pages > 5:
                break
        check(self.label("get_conversations pages in order with next_cursor"), seen == [f"message {i}" for i in range(5)] and pages == 3, (seen, pages))

        k = await self.ok("add_knowledge (seed)", "add_knowledge", SEED_KNOWLEDGE, lambda r: r["id"] and r["category"] == "edge-computing")
        await self.call("add_knowledge", {"category": "databases", "topic": "wal-mode", "content": "WAL lets readers run beside one writer", "tags": ["sqlite"], "region": "eu-central-1"})
        await self.ok(
            "search_knowledge finds the seed entry",
            "search_knowledge", {"query": "edge deployment"},
            lambda r: r["count"] >= 1 and r["hits"][0]["id"] == k["id"] and r["hits"][0]["topic"] == "latency-optimization"
            and r["hits"][0]["tags"] == ["performance", "edge", "distributed"] and "[" in r["hits"][0]["snippet"],
        )
        await self.ok("search_knowledge category filter", "search_knowledge", {"query": "edge", "category": "edge-computing", "limit": 5}, lambda r: r["count"] == 1)
        await self.ok("search_knowledge category filter excludes", "search_knowledge", {"query": "edge", "category": "nope"}, lambda r: r["count"] == 0)
        await self.ok("search_knowledge tags filter", "search_knowledge", {"query": "edge deployment", "tags": ["edge", "performance"]}, lambda r: r["count"] == 1)
        await self.ok("search_knowledge region filter", "search_knowledge", {"query": "readers writer", "region": "eu-central-1"}, lambda r: r["count"] == 1 and r["hits"][0]["topic"] == "wal-mode")
        await self.ok("search_knowledge mode hybrid says what ranked it", "search_knowledge", {"query": "edge", "mode": "hybrid"}, lambda r: r["mode"] == "hybrid" and r["mode_used"] in ("lexical", "hybrid"))
        await self.ok("search_knowledge with FTS operators in text", "search_knowledge", {"query": 'edge" OR NEAR( *'}, lambda r: r["count"] >= 1)

        await self.ok("execute_query: seed agent_metrics INSERT with params", "execute_query", SEED_METRIC_INSERT, lambda r: r["rows_affected"] == 1)
        await self.ok(
            "execute_read_only_query reads it back with typed values",
            "execute_read_only_query",
            {"query": "SELECT agent_id, task_type, duration_ms, tokens_used FROM agent_metrics WHERE agent_id = ?", "params": ["agent-123"]},
            lambda r: r["columns"] == ["agent_id", "task_type", "duration_ms", "tokens_used"]
            and r["rows"] == [{"agent_id": "agent-123", "task_type": "code-analysis", "duration_ms": 1250.0, "tokens_used": 3500}]
            and r["truncated"] is False,
        )
        await self.ok("record_metric", "record_metric", {"agent_id": "agent-7", "task_type": "code-analysis", "duration_ms": 80.5, "tokens_used": 12, "region": "us-west-2", "extra": {"file": "main.rs"}}, lambda r: r["id"])
        await self.ok(
            "get_metrics aggregates both metrics",
            "get_metrics", {},
            lambda r: r["overall"]["count"] == 2 and {a["key"] for a in r["by_agent"]} == {"agent-123", "agent-7"}
            and any(t["key"] == "code-analysis" and t["count"] == 2 for t in r["by_task_type"]),
        )

        await self.ok(
            "execute_query: seed edge_replicas row",
            "execute_query",
            {"query": "INSERT INTO edge_replicas (region, avg_latency_ms, performance_tier, status) VALUES (?, ?, ?, ?)", "params": ["us-west-2", 25, "Excellent", "healthy"]},
            lambda r: r["rows_affected"] == 1,
        )
        await self.call("execute_query", {"query": "INSERT INTO distributed_transactions (transaction_id, source_region, target_region, latency_ms) VALUES (?, ?, ?, ?)", "params": ["tx-1", "us-west-2", "eu-central-1", 31.5]})
        await self.ok("seed regional analytics query runs read-only", "execute_read_only_query", {"query": SEED_ANALYTICS},
                      lambda r: r["columns"] == ["region", "transactions", "avg_latency"] and r["rows"] == [{"region": "us-west-2", "transactions": 1, "avg_latency": 31.5}])
        await self.ok("seed performance_tests query runs", "execute_read_only_query", {"query": "SELECT operation_type, AVG(throughput) as avg_ops_per_sec FROM performance_tests GROUP BY operation_type"},
                      lambda r: r["columns"] == ["operation_type", "avg_ops_per_sec"])
        await self.ok(
            f"row cap: {MAX_ROWS} rows and truncated=true",
            "execute_read_only_query",
            {"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT x FROM c"},
            lambda r: r["row_count"] == MAX_ROWS and r["truncated"] is True and r["rows"][0] == {"x": 1},
        )
        await self.ok("execute_query runs a read too", "execute_query", {"query": "SELECT 1 + 1 AS two"}, lambda r: r["rows"] == [{"two": 2}])
        await self.ok(
            "execute_query insert returns last_insert_rowid",
            "execute_query",
            {"query": "INSERT INTO performance_tests (run_id, operation_type, throughput, ops) VALUES (?, ?, ?, ?)", "params": ["run-1", "SELECT", 319444.0, 1000]},
            lambda r: r["rows_affected"] == 1 and r["last_insert_rowid"] == 1,
        )
        await self.ok("execute_query UPDATE reports rows_affected", "execute_query", {"query": "UPDATE performance_tests SET ops = ops + 1 WHERE run_id = ?", "params": ["run-1"]}, lambda r: r["rows_affected"] == 1)

        await self.ok("list_databases: home and the us-west-2 region", "list_databases", {},
                      lambda r: [d["name"] for d in r["databases"]] == ["home", "us-west-2"] and r["databases"][0]["role"] == "home")
        await self.ok(
            "get_database_info: size, pages, journal mode, tables with rows, sync",
            "get_database_info", {},
            lambda r: r["size_bytes"] > 0 and r["page_count"] > 0 and r["page_size"] > 0 and r["journal_mode"] == "wal"
            and any(t["name"] == "conversations" and t["rows"] == 6 for t in r["tables"])
            and any(t["name"] == "performance_tests" and t["rows"] == 1 for t in r["tables"]) and r["sync"][0]["region"] == "us-west-2",
        )
        await self.ok("list_tables hides internal tables", "list_tables", {},
                      lambda r: {"conversations", "knowledge", "agent_metrics", "kv", "edge_replicas", "performance_tests"} <= {t["name"] for t in r["tables"]}
                      and not any(t["name"].startswith("_") for t in r["tables"]))
        await self.ok("list_tables include_internal shows _changes", "list_tables", {"include_internal": True}, lambda r: any(t["name"] == "_changes" for t in r["tables"]))
        await self.ok(
            "describe_table conversations: columns, types, keys, indexes",
            "describe_table", {"table": "conversations"},
            lambda r: [c["name"] for c in r["columns"]][:4] == ["id", "session_id", "role", "content"]
            and r["columns"][1]["type"] == "TEXT" and r["columns"][1]["not_null"] is True
            and r["primary_key"] == ["id"]
            and any(i["name"] == "conversations_by_session" and i["columns"] == ["session_id", "created_at", "id"] for i in r["indexes"])
            and "CREATE TABLE" in r["sql"],
        )
        await self.ok("describe_table accepts table_name", "describe_table", {"table_name": "kv"}, lambda r: r["primary_key"] == ["namespace", "key"])
        await self.ok("sync_status lists regions", "sync_status", {}, lambda r: r["regions"][0]["region"] == "us-west-2" and r["regions"][0]["avg_latency_ms"] == 25.0)
        await self.ok("sync_status one region", "sync_status", {"region": "us-west-2"}, lambda r: len(r["regions"]) == 1 and "pending_push_changes" in r["regions"][0])

        await self.ok("kv_set", "kv_set", {"key": "leader", "value": {"agent": "a1"}}, lambda r: r["version"] == 1)
        await self.ok("kv_get", "kv_get", {"key": "leader"}, lambda r: r["found"] and r["value"] == {"agent": "a1"} and r["version"] == 1)
        await self.ok("kv_cas from version 1 swaps", "kv_cas", {"key": "leader", "value": {"agent": "a2"}, "expected_version": 1}, lambda r: r["swapped"] and r["version"] == 2)
        await self.ok("kv_cas from stale version 1 does not", "kv_cas", {"key": "leader", "value": {"agent": "a3"}, "expected_version": 1}, lambda r: r["swapped"] is False and r["current_version"] == 2)
        await self.ok("kv_cas create-if-absent", "kv_cas", {"key": "fresh", "namespace": "swarm", "value": 1}, lambda r: r["swapped"] and r["version"] == 1)
        await self.ok("kv_set with ttl_ms", "kv_set", {"key": "lease", "value": "x", "ttl_ms": 60000}, lambda r: r["version"] == 1)
        await self.ok("kv_get sees expires_at", "kv_get", {"key": "lease"}, lambda r: r["found"] and r["expires_at"] is not None)
        await self.ok("kv_delete", "kv_delete", {"key": "leader"}, lambda r: r["deleted"] is True)
        await self.ok("kv_get after delete", "kv_get", {"key": "leader"}, lambda r: r["found"] is False)
        await self.ok("kv_delete of a missing key", "kv_delete", {"key": "leader"}, lambda r: r["deleted"] is False)

    # ---- bad input: each an MCP error, nothing written, server still serving ----------

    async def bad(self):
        before = await self.counts()
        invalid = -32602  # JSON-RPC invalid params: an unknown tool, the spec's own example
        await self.rpc_err("unknown tool", "drop_everything", {}, "unknown tool", "drop_everything", code=invalid)
        await self.err("missing argument", "add_conversation", {"role": "user", "content": "x"}, "missing field", "session_id", kind="invalid_argument")
        await self.err("mistyped argument: params not an array", "execute_query", {"query": "SELECT ?", "params": "agent-123"}, "invalid type", kind="invalid_argument")
        await self.err("mistyped argument: metadata not an object", "add_conversation", {**SEED_CONVERSATION, "metadata": "us-west-2"}, "invalid type", kind="invalid_argument")
        await self.err("mistyped argument: tags not an array", "add_knowledge", {**SEED_KNOWLEDGE, "tags": "edge"}, "invalid type", kind="invalid_argument")
        await self.err("mistyped argument: limit not a number", "get_conversations", {"session_id": "s", "limit": "ten"}, "invalid type", kind="invalid_argument")
        await self.err("misspelled argument name", "add_conversation", {**SEED_CONVERSATION, "sessionId": "x"}, "unknown field", "sessionid", kind="invalid_argument")
        await self.err("empty session_id", "add_conversation", {**SEED_CONVERSATION, "session_id": "  "}, "session_id", "empty", kind="invalid_argument")
        await self.err("NUL byte in content", "add_conversation", {**SEED_CONVERSATION, "content": "a\u0000b"}, "nul", kind="invalid_argument")
        await self.err("unknown search mode", "search_knowledge", {"query": "edge", "mode": "semantic"}, "unknown variant", kind="invalid_argument")
        await self.err("limit out of range", "get_conversations", {"session_id": "s", "limit": 5000}, "limit", "1000", kind="invalid_argument")
        await self.err("bad cursor", "get_conversations", {"session_id": "s", "cursor": "garbage"}, "cursor", kind="invalid_argument")
        await self.err("negative duration", "record_metric", {"agent_id": "a", "task_type": "t", "duration_ms": -1}, "duration_ms", kind="invalid_argument")
        await self.err("ttl_ms 0", "kv_set", {"key": "k", "value": 1, "ttl_ms": 0}, "ttl_ms", kind="invalid_argument")
        await self.err("unknown database", "execute_read_only_query", {"query": "SELECT 1", "database": "nope"}, "no database named", "list_databases", kind="unknown_database")
        await self.err("region database not served", "list_tables", {"database": "us-west-2"}, "region replica", kind="database_not_served")
        await self.err("describe_table of a missing table", "describe_table", {"table": "no_such_table"}, "no table", "list_tables", kind="not_found")
        await self.err("sync_status of a missing region", "sync_status", {"region": "nowhere"}, "no region", kind="not_found")
        await self.err("read-only: DELETE", "execute_read_only_query", {"query": "DELETE FROM conversations"}, "refused", "execute_query", kind="sql_refused")
        await self.err("read-only: WITH ... DELETE", "execute_read_only_query", {"query": "WITH x AS (SELECT 1) DELETE FROM conversations WHERE id IN (SELECT * FROM x) OR 1"}, "refused", kind="sql_refused")
        await self.err("read-only: UPDATE", "execute_read_only_query", {"query": "UPDATE kv SET value = '1'"}, "refused", kind="sql_refused")
        await self.err("read-only: INSERT ... SELECT", "execute_read_only_query", {"query": "INSERT INTO performance_tests (run_id, operation_type, throughput) SELECT 'r', 'x', 1"}, "refused", kind="sql_refused")
        await self.err("read-only: CREATE TABLE", "execute_read_only_query", {"query": "CREATE TABLE evil (x)"}, "refused", kind="sql_refused")
        await self.err("read-only: two statements", "execute_read_only_query", {"query": "SELECT 1; DELETE FROM conversations"}, "one sql statement", kind="sql_refused")
        await self.err("read-only: two statements hidden after a comment", "execute_read_only_query", {"query": "SELECT 1 /* x */ ; /* y */ DROP TABLE kv"}, "one sql statement", kind="sql_refused")
        await self.err("read-only: ATTACH", "execute_read_only_query", {"query": "ATTACH DATABASE '/tmp/edgeswarm-evil.db' AS evil"}, "refused", kind="sql_refused")
        await self.err("read-only: PRAGMA that writes (user_version)", "execute_read_only_query", {"query": "PRAGMA user_version = 42"}, "refused", kind="sql_refused")
        await self.err("read-only: PRAGMA that writes (journal_mode)", "execute_read_only_query", {"query": "PRAGMA journal_mode = DELETE"}, "refused", kind="sql_refused")
        await self.err("read-only: side-effect function load_extension", "execute_read_only_query", {"query": "SELECT load_extension('/tmp/libevil.so')"}, "load_extension", kind="sql_refused")
        await self.err("execute_query: ATTACH", "execute_query", {"query": "ATTACH DATABASE '/tmp/edgeswarm-evil.db' AS evil"}, "refused", kind="sql_refused")
        await self.err("execute_query: BEGIN", "execute_query", {"query": "BEGIN"}, "refused", kind="sql_refused")
        await self.err("execute_query: write to internal _changes", "execute_query", {"query": "DELETE FROM _changes"}, "refused", kind="sql_refused")
        await self.err("execute_query: two statements", "execute_query", {"query": "UPDATE performance_tests SET ops = 0; DELETE FROM performance_tests"}, "one sql statement", kind="sql_refused")
        await self.err("execute_query: load_extension", "execute_query", {"query": "SELECT load_extension('/tmp/libevil.so')"}, "load_extension", kind="sql_refused")
        await self.err("SQL syntax error (read)", "execute_read_only_query", {"query": "SELEC 1"}, "syntax error", kind="sql_error")
        await self.err("SQL syntax error (write)", "execute_query", {"query": "INSERT INTO performance_tests VALUS (1)"}, "syntax error", kind="sql_error")
        await self.err("no such table", "execute_read_only_query", {"query": "SELECT * FROM nowhere"}, "no such table", kind="sql_error")
        await self.err("empty query", "execute_read_only_query", {"query": "   "}, "empty", kind="invalid_argument")
        await self.err("statement over the length limit", "execute_read_only_query", {"query": "SELECT 1 -- " + "x" * 200_000}, "limit", kind="invalid_argument")
        t0 = time.monotonic()
        await self.err("never-ending recursive CTE is interrupted", "execute_read_only_query", {"query": NEVER_ENDING}, "interrupted", kind="query_timeout")
        took = time.monotonic() - t0
        check(self.label(f"...within the time limit ({took:.2f}s for a {QUERY_TIMEOUT_MS} ms limit)"), took < QUERY_TIMEOUT_MS / 1000 + 3, took)
        await self.err("never-ending query via execute_query is interrupted too", "execute_query", {"query": NEVER_ENDING}, "interrupted", kind="query_timeout")
        if self.t == "stdio":
            big = "x" * (10 * 1024 * 1024)
            await self.err("10 MB content in add_knowledge", "add_knowledge", {**SEED_KNOWLEDGE, "content": big}, "content", "limit", kind="invalid_argument")
            await self.err("10 MB content in add_conversation", "add_conversation", {**SEED_CONVERSATION, "content": big}, "content", "limit", kind="invalid_argument")
        else:
            big = "x" * (2 * 1024 * 1024)
            await self.err("2 MB content (under the body limit, over the content limit)", "add_knowledge", {**SEED_KNOWLEDGE, "content": big}, "content", "limit", kind="invalid_argument")
        after = await self.counts()
        check(self.label("nothing written by any bad call (row counts, user_version)"), before == after, (before, after))
        await self.ok("server still serving after bad input", "execute_read_only_query", {"query": "SELECT 42 AS answer"}, lambda r: r["rows"] == [{"answer": 42}])
        await self.ok("writes still work after bad input", "add_conversation", {**SEED_CONVERSATION, "session_id": "after-bad"}, lambda r: r["id"])


async def run_stdio(tmp: str):
    db = os.path.join(tmp, "stdio.db")
    params = StdioServerParameters(
        command=BIN,
        args=["mcp", "--db", db, "--query-timeout-ms", str(QUERY_TIMEOUT_MS), "--max-rows", str(MAX_ROWS)],
        env={"RUST_LOG": "error"},
    )
    with open(os.path.join(tmp, "stdio-server.log"), "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (r, w):
            async with ClientSession(r, w) as session:
                init = await session.initialize()
                check("[stdio] initialize: server is edgeswarm with tools", init.server_info.name == "edgeswarm" and init.capabilities.tools is not None, init)
                s = Suite(session, "stdio")
                await s.tools()
                await s.happy()
                await s.bad()
                before = await s.counts()
    # The client closed stdin: the server flushed and exited. A new server on the same file
    # sees everything that was acknowledged.
    with open(os.path.join(tmp, "stdio-server-2.log"), "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                s = Suite(session, "stdio restart")
                after = await s.counts()
                check("[stdio] restart: every acknowledged write is still there", before == after, (before, after))
                await s.ok("get_conversations after restart", "get_conversations", {"session_id": "global-session-123"}, lambda r: r["count"] == 1)




INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
RAW_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def raw_session_shapes(url: str):
    """The wire shapes inside a session: a failed call is a result with isError and
    structuredContent {kind, retryable, message}; an unknown tool and malformed requests
    are JSON-RPC errors."""
    hdrs = {**RAW_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(timeout=30) as c:
        r = await c.post(url, json=INIT, headers=hdrs)
        sid = r.headers.get("mcp-session-id")
        if not check("[http raw] initialize opens a session", r.status_code == 200 and sid, (r.status_code, r.text[:300])):
            return
        h = {**hdrs, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
        await c.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)

        async def call(rid, params):
            r = await c.post(url, json={"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}, headers=h)
            return r, reply_to(r, rid)

        r, m = await call(2, {"name": "execute_read_only_query", "arguments": {"query": "SELECT * FROM nowhere"}})
        res = (m or {}).get("result", {})
        sc = res.get("structuredContent", {})
        check("[http raw] SQL error: result with isError, structuredContent {kind: sql_error, retryable: false, message}",
              res.get("isError") is True and sc.get("kind") == "sql_error" and sc.get("retryable") is False
              and "no such table" in sc.get("message", "") and res["content"][0]["text"] == sc["message"] and "error" not in (m or {}), m)
        r, m = await call(3, {"name": "kv_get", "arguments": {"key": 5}})
        res = (m or {}).get("result", {})
        check("[http raw] argument failing the schema: result with isError, kind invalid_argument",
              res.get("isError") is True and res.get("structuredContent", {}).get("kind") == "invalid_argument", m)
        r, m = await call(4, {"name": "drop_everything", "arguments": {}})
        err = (m or {}).get("error", {})
        check("[http raw] unknown tool: JSON-RPC error -32602 with data.kind unknown_tool",
              err.get("code") == -32602 and (err.get("data") or {}).get("kind") == "unknown_tool" and "result" not in (m or {}), m)
        r, m = await call(5, {"arguments": {}})
        err = (m or {}).get("error", {})
        check("[http raw] malformed tools/call (no name): JSON-RPC error -32602 saying so",
              err.get("code") == -32602 and "name" in err.get("message", ""), (r.status_code, m, r.text[:300]))
        r, m = await call(6, {"name": "kv_get", "arguments": "not an object"})
        err = (m or {}).get("error", {})
        check("[http raw] malformed tools/call (arguments not an object): JSON-RPC error", err.get("code") in (-32602, -32600), (r.status_code, m, r.text[:300]))
        r = await c.post(url, content=b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": ', headers=h)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        check("[http raw] truncated JSON in a session: 4xx with a JSON-RPC parse error",
              400 <= r.status_code < 500 and (body.get("error") or {}).get("code") == -32700, (r.status_code, r.text[:300]))
        r = await c.delete(url, headers=h)
        check("[http raw] DELETE closes the session", r.status_code in (200, 204), r.status_code)


async def stdio_malformed(tmp: str):
    """Malformed requests over stdio are JSON-RPC errors too (and the server keeps serving)."""
    proc = await anyio.open_process([BIN, "mcp", "--db", os.path.join(tmp, "stdio-raw.db")], env={**os.environ, "RUST_LOG": "error"})
    got = {}
    try:
        lines = [
            INIT,
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"arguments": {}}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope", "arguments": {}}},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "kv_get", "arguments": {"key": "k"}}},
        ]
        await proc.stdin.send(("\n".join(json.dumps(x) for x in lines) + "\n").encode())
        buf = b""
        with anyio.fail_after(30):
            while not {2, 3, 4} <= set(got):
                buf += await proc.stdout.receive()
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    m = json.loads(line)
                    got[m.get("id")] = m
    finally:
        await proc.stdin.aclose()
        with anyio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
    check("[stdio raw] malformed tools/call (no name): JSON-RPC error -32602", got[2].get("error", {}).get("code") == -32602, got[2])
    check("[stdio raw] unknown tool: JSON-RPC error -32602", got[3].get("error", {}).get("code") == -32602, got[3])
    check("[stdio raw] ...and the server still answers", got[4].get("result", {}).get("structuredContent", {}).get("found") is False, got[4])


async def raw_http_checks(url: str):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    hdrs = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=30) as c:
        r = await c.post(url, json=init, headers={**hdrs, "Authorization": "Bearer wrong-token"})
        check("[http] wrong bearer token -> 401 with a clear body", r.status_code == 401 and "wrong bearer token" in r.text and r.headers.get("www-authenticate", "").startswith("Bearer"), (r.status_code, r.text))
        check("[http] a refusal before the body is read says Connection: close (the client reconnects)", r.headers.get("connection", "").lower() == "close", dict(r.headers))
        r = await c.post(url, json=init, headers=hdrs)
        check("[http] missing bearer token -> 401 with a clear body", r.status_code == 401 and "missing bearer token" in r.text, (r.status_code, r.text))
        body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"\xff\xfe"}}'
        r = await c.post(url, content=body, headers={**hdrs, "Authorization": f"Bearer {TOKEN}"})
        check("[http] invalid UTF-8 body -> 400 with a JSON-RPC parse error", r.status_code == 400 and "utf-8" in r.text.lower() and r.json()["error"]["code"] == -32700, (r.status_code, r.text))
        big = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add_knowledge", "arguments": {**SEED_KNOWLEDGE, "content": "x" * (10 * 1024 * 1024)}}})
        r = await c.post(url, content=big.encode(), headers={**hdrs, "Authorization": f"Bearer {TOKEN}"})
        check("[http] 10 MB body -> 413 with a clear body", r.status_code == 413 and "larger than" in r.text, (r.status_code, r.text[:300]))
        r = await c.post(url, content=b"{not json", headers={**hdrs, "Authorization": f"Bearer {TOKEN}"})
        check("[http] malformed JSON -> 4xx", 400 <= r.status_code < 500, (r.status_code, r.text[:300]))


async def run_http(tmp: str):
    db = os.path.join(tmp, "http.db")
    port = free_port()
    log = open(os.path.join(tmp, "http-server.log"), "w")
    proc = subprocess.Popen(
        [BIN, "mcp", "--db", db, "--http", f"127.0.0.1:{port}", "--query-timeout-ms", str(QUERY_TIMEOUT_MS), "--max-rows", str(MAX_ROWS)],
        env={**os.environ, "EDGESWARM_MCP_TOKEN": TOKEN, "RUST_LOG": "error"},
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        await raw_http_checks(url)
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
        async with client:
            async with streamable_http_client(url, http_client=client) as (r, w):
                async with ClientSession(r, w) as session:
                    init = await session.initialize()
                    check("[http] initialize: server is edgeswarm with tools", init.server_info.name == "edgeswarm", init)
                    s = Suite(session, "http")
                    await s.tools()
                    await s.happy()
                    await s.bad()
        await raw_session_shapes(url)
        await raw_http_checks(url)  # and the guard still answers after all that
        check("[http] server process still running", proc.poll() is None, proc.returncode)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def main() -> int:
    if not os.path.exists(BIN):
        print(f"FAIL server binary not found at {BIN}; build it with `cargo build -p edgeswarm-cli` or set EDGESWARM_BIN")
        print("0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="edgeswarm-mcp-test-")
    try:
        for name, fn in (("stdio", run_stdio), ("stdio raw", stdio_malformed), ("http", run_http)):
            try:
                with anyio.fail_after(240):
                    await fn(tmp)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                check(f"[{name}] suite ran to the end", False, f"{type(e).__name__}: {e}")
                for logname in ("stdio-server.log", "http-server.log"):
                    p = os.path.join(tmp, logname)
                    if os.path.exists(p):
                        print(f"--- {logname} (tail) ---\n" + open(p).read()[-3000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
