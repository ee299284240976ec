#!/usr/bin/env python3
"""Hostile raw SQL through the official Python MCP SDK (PyPI `mcp`) against the real
`edgeswarm mcp` binary over stdio (issue #12). Every statement an agent could send to
break or open the memory; for each it checks that:

- the statement is refused, or harmless;
- nothing internal changed (change log, `_meta`, the clock's high-water mark, the
  runtime's schema, kv rows, append-only rows);
- typed writes still work within the time limit;
- the server still answers.

A refusal is accepted in either shape: a JSON-RPC error (the SDK raises `MCPError`) or a
tool result with `isError: true` (the shape the current MCP spec asks for).

    python3 -m venv /tmp/mcpvenv && /tmp/mcpvenv/bin/pip install -r tests/mcp/requirements.txt
    EDGESWARM_BIN=target/debug/edgeswarm /tmp/mcpvenv/bin/python tests/mcp/test_hostile.py

Prints one line per check and finally `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from checks import check, summary

BIN = os.path.abspath(os.environ.get("EDGESWARM_BIN", "target/debug/edgeswarm"))
QUERY_TIMEOUT_MS = 1500
# The server's resident memory while 16 huge reads at a time are refused, 4 rounds.
RSS_LIMIT_MIB = 256
FAR_FUTURE = 4611686018427387904



def is_user_object(name: str | None) -> bool:
    return bool(name) and (name == "notes" or name.startswith("u_"))


def far_future(v: object) -> bool:
    """A stamp more than a day ahead of the wall clock (hlc = ms << 16)."""
    return isinstance(v, int) and v > (int(time.time() * 1000) + 86_400_000) << 16


class Hostile:
    def __init__(self, session: ClientSession, tmp: str):
        self.s = session
        self.tmp = tmp

    async def call(self, name: str, args: dict) -> dict:
        r = await self.s.call_tool(name, args)
        if r.is_error:
            raise AssertionError(f"{name} returned isError: {r.content}")
        return r.structured_content if r.structured_content is not None else json.loads(r.content[0].text)

    async def attempt(self, name: str, args: dict) -> tuple[bool, str, dict | None]:
        """(refused, message, result): refused in either shape, or the result."""
        try:
            r = await self.s.call_tool(name, args)
        except MCPError as e:
            return True, e.message, None
        if r.is_error:
            text = " ".join(getattr(c, "text", "") for c in r.content)
            sc = r.structured_content or {}
            return True, f"{text} {json.dumps(sc)}", None
        return False, "", r.structured_content if r.structured_content is not None else json.loads(r.content[0].text)

    async def rows(self, sql: str) -> list[dict]:
        return (await self.call("execute_read_only_query", {"query": sql}))["rows"]

    async def internal(self) -> dict:
        schema = [
            r for r in await self.rows("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")
            if not is_user_object(r["name"]) and not is_user_object(r["tbl_name"])
        ]
        return {
            "changes": await self.rows("SELECT * FROM _changes ORDER BY seq"),
            "meta": await self.rows("SELECT key, value FROM _meta WHERE key <> 'hlc_hwm' ORDER BY key"),
            "schema": schema,
            "kv": await self.rows("SELECT * FROM kv ORDER BY namespace, key"),
            "appended": await self.rows(
                "SELECT 'm' AS t, id, hlc, origin FROM agent_metrics UNION ALL "
                "SELECT 'c', id, hlc, origin FROM conversations ORDER BY 1, 2"
            ),
        }

    async def intact(self, case: str, before: dict, may_append: bool = False) -> None:
        """Nothing internal changed, the clock is sane, typed writes and reads work."""
        after = await self.internal()
        problems = []
        for k in ("meta", "schema", "kv"):
            if after[k] != before[k]:
                problems.append(f"{k} changed")
        if after["changes"][: len(before["changes"])] != before["changes"]:
            problems.append("change-log entries removed or edited")
        if not may_append and len(after["changes"]) != len(before["changes"]):
            problems.append("change log grew")
        if not may_append and after["appended"] != before["appended"]:
            problems.append("append-only rows changed")
        if may_append and any(r not in after["appended"] for r in before["appended"]):
            problems.append("an append-only row changed or vanished")
        stamps = [v for r in after["changes"] + after["appended"] for v in r.values()]
        if any(far_future(v) for v in stamps):
            problems.append("a far-future stamp was stored")
        hwm = await self.rows("SELECT value FROM _meta WHERE key = 'hlc_hwm'")
        if hwm and far_future(int(hwm[0]["value"])):
            problems.append("the clock's high-water mark moved to the future")
        try:
            with anyio.fail_after(QUERY_TIMEOUT_MS / 1000 + 5):
                await self.call("add_conversation", {"session_id": "hostile", "role": "user", "content": f"after {case}"})
                await self.call("add_knowledge", {"category": "hostile", "topic": "probe", "content": f"still writable after {case}"})
                await self.call("record_metric", {"agent_id": "hostile", "task_type": "probe", "duration_ms": 1, "tokens_used": 1})
                await self.call("kv_set", {"namespace": "hostile", "key": "probe", "value": case})
                alive = await self.rows("SELECT 42 AS answer")
                if alive != [{"answer": 42}]:
                    problems.append(f"reads answer wrongly: {alive}")
        except TimeoutError:
            problems.append("typed writes did not finish within the time limit")
        except Exception as e:  # noqa: BLE001
            problems.append(f"typed writes broke: {type(e).__name__}: {e}")
        check(f"  ...{case[:90]}: nothing internal changed, typed writes work", not problems, problems)

    async def refuse(self, sql: str, *needles: str) -> None:
        before = await self.internal()
        refused, msg, res = await self.attempt("execute_query", {"query": sql})
        missing = [n for n in needles if n.lower() not in msg.lower()]
        check(f"refused: {sql[:100]}", refused and not missing, res if not refused else f"{msg!r} lacks {missing}")
        await self.intact(sql, before)

    # ---- the cases ----------------------------------------------------------------------

    async def setup(self) -> None:
        await self.call("kv_set", {"namespace": "ns", "key": "k", "value": "v"})
        await self.call("kv_set", {"namespace": "ns", "key": "k2", "value": 2})
        await self.call("add_conversation", {"session_id": "s", "role": "user", "content": "hello"})
        await self.call("add_knowledge", {"category": "c", "topic": "t", "content": "protected knowledge"})
        await self.call("record_metric", {"agent_id": "a", "task_type": "t", "duration_ms": 1, "tokens_used": 1})
        await self.call("execute_query", {"query": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"})
        await self.call("execute_query", {"query": "CREATE TABLE u_items (id INTEGER PRIMARY KEY, body TEXT)"})

    async def issue_cases(self) -> None:
        # A user trigger that empties the change log and moves the clock's high-water mark.
        before = await self.internal()
        created, cmsg, _ = await self.attempt("execute_query", {"query": (
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _changes; "
            f"UPDATE _meta SET value = '{FAR_FUTURE}' WHERE key = 'hlc_hwm'; END")})
        fired, fmsg, _ = await self.attempt("execute_query", {"query": "INSERT INTO notes (body) VALUES ('x')"})
        check("trigger emptying _changes: refused at CREATE or when it fires", created or fired, (cmsg, fmsg))
        await self.intact("trigger emptying _changes", before)
        await self.attempt("execute_query", {"query": "DROP TRIGGER IF EXISTS t"})
        refused, msg, _ = await self.attempt("execute_query", {"query": "INSERT INTO notes (body) VALUES ('y')"})
        check("the user's own table still takes writes", not refused, msg)

        for sql in [
            "CREATE TEMP TRIGGER u_t1 BEFORE INSERT ON main.knowledge BEGIN SELECT RAISE(ABORT, 'no'); END",
            "CREATE TRIGGER u_t2 BEFORE INSERT ON conversations BEGIN SELECT RAISE(ABORT, 'no'); END",
            "CREATE TEMP TRIGGER u_t3 BEFORE INSERT ON main._changes BEGIN SELECT RAISE(ABORT, 'no'); END",
            "CREATE INDEX u_i1 ON _changes(hlc) WHERE 1/0",
            "CREATE UNIQUE INDEX u_i2 ON kv(namespace)",
            "CREATE TRIGGER u_t4 AFTER INSERT ON agent_metrics BEGIN "
            "SELECT count(*) FROM agent_metrics a, agent_metrics b, agent_metrics c; END",
            "DROP TABLE knowledge_fts",
        ]:
            await self.refuse(sql)
        await self.refuse("UPDATE kv SET value = '\"x\"', hlc = hlc + 1", "kv_set")
        await self.refuse("DELETE FROM kv", "kv_delete")

    async def found_cases(self) -> None:
        copy = os.path.join(self.tmp, "copy.db")
        other = os.path.join(self.tmp, "other.db")
        for sql in [
            "INSERT INTO knowledge_fts(knowledge_fts) VALUES ('delete-all')",
            "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES ('rank', 'bm25(10.0, 1.0)')",
            "DELETE FROM knowledge_fts_data",
            "PRAGMA writable_schema = ON",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA journal_mode = OFF",
            "PRAGMA synchronous = OFF",
            "PRAGMA optimize",
            "UPDATE sqlite_master SET sql = 'CREATE TABLE kv(x)' WHERE name = 'kv'",
            f"VACUUM INTO '{copy}'",
            f"ATTACH DATABASE '{other}' AS o",
            f"REPLACE INTO _meta (key, value) VALUES ('hlc_hwm', '{FAR_FUTURE}')",
            "INSERT OR REPLACE INTO _meta (key, value) VALUES ('node_id', 'stolen')",
            "WITH x AS (SELECT 1) DELETE FROM _changes WHERE 1",
            "UPDATE _changes SET hlc = 4611686018427387904",
            "UPDATE agent_metrics SET tokens_used = 0",
            "DELETE FROM conversations",
            "UPDATE knowledge SET content = 'x'",
            "DELETE FROM knowledge",
            "INSERT INTO kv (namespace, key, value, version, updated_at) VALUES ('ns', 'raw', '1', 1, 0)",
            "ALTER TABLE kv ADD COLUMN x",
            "ALTER TABLE kv RENAME TO kv2",
            "DROP INDEX kv_by_expiry",
            "DROP TRIGGER knowledge_fts_ai",
            "DROP VIEW _change_rows",
            "DROP TABLE _changes",
            "CREATE TABLE _evil (x)",
            "CREATE TEMP TABLE kv (x)",
            "CREATE TEMP VIEW u_tv AS SELECT 1",
            "CREATE TRIGGER _sync_u_items_ai AFTER INSERT ON u_items BEGIN DELETE FROM _changes; END",
            "CREATE INDEX u_i3 ON knowledge(content) WHERE 1/0",
            "ANALYZE kv",
            "SELECT load_extension('libc.so.6')",
            "SELECT fts3_tokenizer('simple')",
            "BEGIN",
            "SAVEPOINT s",
            "SELECT 1; DELETE FROM _changes",
            "CREATE TABLE u_fk (ns TEXT, k TEXT, FOREIGN KEY (ns, k) REFERENCES kv (namespace, key))",
            "ALTER TABLE u_items ADD COLUMN k TEXT REFERENCES kv (key)",
            "ALTER TABLE u_items RENAME TO search_vec_1",
            "SELECT * FROM pragma_journal_mode('OFF')",
            "SELECT * FROM pragma_writable_schema(1)",
            "INSERT INTO sqlite_stat1 VALUES ('kv', 'kv_by_expiry', '1 1')",
        ]:
            await self.refuse(sql)
        check("VACUUM INTO wrote no copy of the memory", not os.path.exists(copy))
        check("ATTACH created no file", not os.path.exists(other))

        # Through the read-only tool too.
        for sql in ["DELETE FROM _changes", "PRAGMA writable_schema = ON", "CREATE TEMP TABLE u_x (x)"]:
            before = await self.internal()
            refused, msg, res = await self.attempt("execute_read_only_query", {"query": sql})
            check(f"read-only tool refuses: {sql}", refused, res)
            await self.intact(f"read-only {sql}", before)

    async def trigger_cases(self) -> None:
        refused, msg, _ = await self.attempt("execute_query", {"query": "CREATE VIEW u_v AS SELECT seq, hlc FROM _changes"})
        check("a view over an internal table is allowed (it only reads)", not refused, msg)
        for create, fire in [
            ("CREATE TRIGGER u_vt INSTEAD OF DELETE ON u_v BEGIN DELETE FROM _changes WHERE seq = old.seq; END", "DELETE FROM u_v"),
            ("CREATE TRIGGER u_kv AFTER INSERT ON u_items BEGIN INSERT INTO kv (namespace, key, value, version, updated_at) "
             "VALUES ('ns', 'k', '\"evil\"', 99, 0) ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value; END",
             "INSERT INTO u_items (body) VALUES ('kv through a trigger')"),
            ("CREATE TRIGGER u_m AFTER UPDATE ON u_items BEGIN UPDATE agent_metrics SET hlc = 4611686018427387904; END",
             "UPDATE u_items SET body = 'z'"),
        ]:
            before = await self.internal()
            refused, msg, _ = await self.attempt("execute_query", {"query": create})
            check(f"trigger on a user object is allowed: {create[:70]}", not refused, msg)
            refused, msg, res = await self.attempt("execute_query", {"query": fire})
            check(f"its body is checked like a top-level write: {fire[:70]}", refused, res)
            await self.intact(fire, before)

    async def stamped_insert(self) -> None:
        before = await self.internal()
        refused, msg, _ = await self.attempt("execute_query", {"query": (
            "INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used, hlc, origin) "
            f"VALUES ('a', 'forged', 1, 1, {FAR_FUTURE}, 'someone-else')")})
        check("a metric insert with a forged stamp is accepted", not refused, msg)
        row = await self.rows("SELECT hlc, origin FROM agent_metrics WHERE task_type = 'forged'")
        check("...and stored with this node's stamp and origin", row and not far_future(row[0]["hlc"]) and row[0]["origin"] != "someone-else", row)
        await self.intact("forged agent_metrics insert", before, may_append=True)

    async def huge_results(self) -> None:
        for sql in [
            "SELECT zeroblob(400000000) FROM knowledge",
            "SELECT printf('%.*c', 400000000, 'x')",
            "SELECT randomblob(400000000)",
            "SELECT randomblob(15000000), randomblob(15000000), randomblob(15000000)",
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 100) SELECT randomblob(1000000) FROM c",
        ]:
            for tool in ("execute_read_only_query", "execute_query"):
                before = await self.internal()
                t0 = time.monotonic()
                refused, msg, res = await self.attempt(tool, {"query": sql})
                took = time.monotonic() - t0
                # SQLite's printf gives NULL past the length limit instead of an error.
                harmless_null = res is not None and res.get("rows") and all(v is None for v in res["rows"][0].values())
                check(
                    f"{tool}: {sql[:70]} stops with the byte-cap error or a NULL, in {took:.2f}s",
                    took < 5 and ((refused and ("larger than" in msg.lower() or "too large" in msg.lower())) or harmless_null),
                    (msg, str(res)[:200]),
                )
                await self.intact(f"{tool} {sql}", before)

    async def flood(self) -> None:
        pid = server_pid(self.tmp)
        queries = [
            "SELECT zeroblob(400000000)",
            "SELECT randomblob(400000000)",
            "SELECT printf('%.*c', 400000000, 'x')",
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 1000) SELECT randomblob(1000000) FROM c",
        ]
        peak = 0
        errors = []

        async def one(sql: str) -> None:
            refused, msg, res = await self.attempt("execute_read_only_query", {"query": sql})
            if not refused and not (res and all(v is None for v in res["rows"][0].values())):
                errors.append((sql, str(res)[:100]))

        t0 = time.monotonic()
        for rnd in range(4):
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(one, queries[(i + rnd) % len(queries)])
            peak = max(peak, rss_mib(pid))
        check(f"flood of 64 huge reads refused in {time.monotonic() - t0:.1f}s", not errors, errors[:3])
        check(f"server RSS stayed under {RSS_LIMIT_MIB} MiB during the flood (peak {peak} MiB)", 0 < peak < RSS_LIMIT_MIB, peak)
        before = await self.internal()
        await self.intact("flood", before)


def server_pid(tmp: str) -> int:
    """The `edgeswarm mcp` process serving our database (found by its command line)."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if any(tmp.encode() in a for a in cmd) and any(a.endswith(b"edgeswarm") for a in cmd[:1]):
            return int(p)
    return 0


def rss_mib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


async def main() -> int:
    if not os.path.exists(BIN):
        print(f"FAIL no server binary at {BIN} (build it: cargo build -p edgeswarm-cli)")
        return 1
    with tempfile.TemporaryDirectory(prefix="edgeswarm-hostile-") as tmp:
        params = StdioServerParameters(
            command=BIN,
            args=["mcp", "--db", os.path.join(tmp, "hostile.db"), "--query-timeout-ms", str(QUERY_TIMEOUT_MS)],
            env={"RUST_LOG": "error"},
        )
        try:
            with open(os.path.join(tmp, "server.log"), "w") as errlog:
                async with stdio_client(params, errlog=errlog) as (r, w):
                    async with ClientSession(r, w) as session:
                        await session.initialize()
                        h = Hostile(session, tmp)
                        await h.setup()
                        await h.issue_cases()
                        await h.found_cases()
                        await h.trigger_cases()
                        await h.stamped_insert()
                        await h.huge_results()
                        await h.flood()
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            check("the suite ran to the end", False, f"{type(e).__name__}: {e}")
            try:
                with open(os.path.join(tmp, "server.log")) as f:
                    print(f.read()[-3000:])
            except OSError:
                pass
    return summary()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
