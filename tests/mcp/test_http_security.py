#!/usr/bin/env python3
"""`edgeswarm mcp --http` is not open to the network by accident: the real binary, driven by
the official Python MCP SDK (streamable HTTP client) and by raw HTTP requests.

Checks: a non-loopback address without a token is refused before anything starts;
`--insecure-no-auth` starts and warns; a bad Origin gets 403 while loopback, configured
(flag and edgeswarm.toml) and absent Origins are served; the token is required when set;
without a token the Host must be a loopback name (DNS rebinding); the session cap, the
concurrency cap (503, kind `overloaded`) and the per-call time limit (`request_timeout`)
hold, and the server keeps serving after each.

    python3 -m venv /tmp/mcpvenv && /tmp/mcpvenv/bin/pip install -r tests/mcp/requirements.txt
    EDGESWARM_BIN=target/debug/edgeswarm /tmp/mcpvenv/bin/python tests/mcp/test_http_security.py

Prints one line per check and finally `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from checks import check, free_port, reply_to, summary, wait_listening

BIN = os.path.abspath(os.environ.get("EDGESWARM_BIN", "target/debug/edgeswarm"))
TOKEN = "sec-token-0123456789abcdef"
NEVER_ENDING = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
HDRS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}





def base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGESWARM_MCP_TOKEN", "EDGESWARM_CONFIG")}
    env["RUST_LOG"] = "warn"
    env.update(extra)
    return env


class Server:
    """One `edgeswarm mcp --http` process; stderr kept for the checks."""

    def __init__(self, tmp: str, name: str, args: list[str], env: dict | None = None, host: str = "127.0.0.1"):
        self.port = free_port()
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.db = os.path.join(tmp, f"{name}.db")
        self.proc = subprocess.Popen(
            [BIN, "mcp", "--db", self.db, "--http", f"{host}:{self.port}", *args],
            env=env or base_env(), cwd=tmp, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def wait_listening(self, secs: float = 30) -> None:
        wait_listening(self.port, self.proc, secs, self.stderr)

    def stderr(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def __enter__(self):
        self.wait_listening()
        return self

    def __exit__(self, *exc):
        self.stop()


async def init(c: httpx2.AsyncClient, url: str, **headers) -> httpx2.Response:
    return await c.post(url, json=INIT, headers={**HDRS, **headers})


async def open_session(c: httpx2.AsyncClient, url: str, **headers) -> dict:
    """Headers of a raw session that completed the handshake."""
    r = await init(c, url, **headers)
    sid = r.headers.get("mcp-session-id")
    if r.status_code != 200 or not sid:
        raise AssertionError(f"initialize failed: {r.status_code} {r.text[:300]}")
    h = {**HDRS, **headers, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
    await c.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
    return h


def call_body(rid, name: str, args: dict) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": args}}


def overloaded_error(r, rid=None) -> bool:
    """A 503 whose body is a JSON-RPC error with data {kind: overloaded, retryable: true}."""
    if r.status_code != 503 or not r.headers.get("content-type", "").startswith("application/json"):
        return False
    body = r.json()
    err = body.get("error", {})
    data = err.get("data") or {}
    return data.get("kind") == "overloaded" and data.get("retryable") is True and (rid is None or body.get("id") == rid)


async def sdk_call(url: str, token: str | None, name: str, args: dict):
    """One SDK session: initialize, then call `name`; returns the result."""
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"} if token else {})
    async with client:
        async with streamable_http_client(url, http_client=client) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                return await session.call_tool(name, args)


async def sdk_refusal(url: str) -> MCPError | str:
    """The MCPError an SDK session meets (the SDK may wrap it in an exception group), or
    what happened instead."""
    try:
        await sdk_call(url, None, "kv_get", {"key": "k"})
        return "it was served"
    except BaseException as e:  # noqa: BLE001
        todo = [e]
        while todo:
            x = todo.pop()
            if isinstance(x, MCPError):
                return x
            todo.extend(getattr(x, "exceptions", ()))
            if x.__cause__ is not None:
                todo.append(x.__cause__)
        return f"{type(e).__name__}: {e}"


# ---- the cases ----------------------------------------------------------------------


async def refused_to_start(tmp: str):
    """A non-loopback address without a token, or with a short one, is refused at once."""
    for label, env, needles in (
        ("no token", base_env(), ["without a token", "--token", "EDGESWARM_MCP_TOKEN", "--insecure-no-auth"]),
        ("a 5-character token", base_env(EDGESWARM_MCP_TOKEN="short"), ["at least 16"]),
    ):
        port = free_port()
        db = os.path.join(tmp, "refused.db")
        p = subprocess.run([BIN, "mcp", "--db", db, "--http", f"0.0.0.0:{port}"], env=env, cwd=tmp,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        missing = [n for n in needles if n not in p.stderr]
        check(f"0.0.0.0 with {label}: refused to start with a clear error", p.returncode != 0 and not missing, (p.returncode, missing, p.stderr[-600:]))
        check(f"0.0.0.0 with {label}: nothing opened (no database file)", not os.path.exists(db), db)
    p = subprocess.run([BIN, "mcp", "--db", os.path.join(tmp, "both.db"), "--http", f"0.0.0.0:{free_port()}", "--insecure-no-auth"],
                       env=base_env(EDGESWARM_MCP_TOKEN=TOKEN), cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    check("a token and --insecure-no-auth together are refused", p.returncode != 0 and "--insecure-no-auth" in p.stderr, p.stderr[-400:])


async def insecure_no_auth(tmp: str):
    with Server(tmp, "insecure", ["--insecure-no-auth"], host="0.0.0.0") as s:
        err = s.stderr()
        check("--insecure-no-auth on 0.0.0.0 starts and warns at start",
              "WARNING" in err and "--insecure-no-auth" in err and "NO AUTHENTICATION" in err, err[-800:])
        r = await sdk_call(s.url, None, "execute_read_only_query", {"query": "SELECT 7 AS n"})
        check("--insecure-no-auth: the SDK client is served without a token", not r.is_error and r.structured_content["rows"] == [{"n": 7}], r)
        async with httpx2.AsyncClient(timeout=30) as c:
            r = await init(c, s.url, Host=f"edgeswarm.lan:{s.port}")
            check("--insecure-no-auth: any Host name a LAN client uses is served", r.status_code == 200, (r.status_code, r.text[:200]))
            r = await init(c, s.url, Origin="http://evil.example")
            check("--insecure-no-auth: a foreign Origin is still refused (403)", r.status_code == 403, (r.status_code, r.text[:200]))


async def origins_and_token(tmp: str):
    cfg = os.path.join(tmp, "edgeswarm.toml")
    with open(cfg, "w") as f:
        f.write('[mcp]\nallow_origins = ["https://toml.example.com"]\n')
    args = ["--allow-origin", "https://app.example.com", "--config", cfg]
    with Server(tmp, "origins", args, env=base_env(EDGESWARM_MCP_TOKEN=TOKEN)) as s:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(timeout=30) as c:
            for origin in ("http://evil.example", "https://app.example.com.evil.example", "null", "http://app.example.com"):
                r = await init(c, s.url, Origin=origin, **auth)
                check(f"Origin {origin}: 403 naming --allow-origin", r.status_code == 403 and "--allow-origin" in r.text, (r.status_code, r.text[:300]))
            for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080", "https://app.example.com", "https://toml.example.com"):
                r = await init(c, s.url, Origin=origin, **auth)
                check(f"Origin {origin}: served", r.status_code == 200 and r.headers.get("mcp-session-id"), (r.status_code, r.text[:300]))
            r = await init(c, s.url, **auth)
            check("no Origin (a non-browser client): served", r.status_code == 200, (r.status_code, r.text[:300]))
            r = await init(c, s.url, Origin="http://evil.example")
            check("a bad Origin is refused before the token is even looked at (403, not 401)", r.status_code == 403, r.status_code)
            r = await init(c, s.url)
            check("token set: a request without it gets 401", r.status_code == 401 and "missing bearer token" in r.text, (r.status_code, r.text[:300]))
            r = await init(c, s.url, Authorization="Bearer wrong-token-wrong-token")
            check("token set: a wrong token gets 401", r.status_code == 401 and "wrong bearer token" in r.text, (r.status_code, r.text[:300]))
            r = await init(c, s.url, Host=f"mcp.internal:{s.port}", **auth)
            check("token set: any Host is served (the token protects it)", r.status_code == 200, (r.status_code, r.text[:300]))
        try:
            r = await sdk_call(s.url, TOKEN, "kv_set", {"key": "k", "value": 1})
            check("token set: the SDK client with the token is served", not r.is_error and r.structured_content["version"] == 1, r)
        except Exception as e:  # noqa: BLE001
            check("token set: the SDK client with the token is served", False, f"{type(e).__name__}: {e}")
        try:
            await sdk_call(s.url, None, "kv_get", {"key": "k"})
            check("token set: the SDK client without a token is refused", False, "it was served")
        except Exception as e:  # noqa: BLE001
            check("token set: the SDK client without a token is refused", True, e)


async def dns_rebinding(tmp: str):
    with Server(tmp, "loopback", []) as s:
        async with httpx2.AsyncClient(timeout=30) as c:
            r = await init(c, s.url, Host=f"evil.example:{s.port}")
            check("loopback without a token: a foreign Host gets 403 (DNS rebinding)", r.status_code == 403 and "Host" in r.text, (r.status_code, r.text[:300]))
            r = await init(c, s.url, Host=f"localhost:{s.port}")
            check("loopback without a token: Host localhost is served", r.status_code == 200, (r.status_code, r.text[:300]))
            r = await init(c, s.url, Host=f"evil.example:{s.port}", Origin=f"http://evil.example:{s.port}")
            check("a rebound page with its own origin gets 403", r.status_code == 403, (r.status_code, r.text[:300]))


async def session_cap(tmp: str):
    with Server(tmp, "sessions", ["--max-sessions", "2", "--session-idle-timeout-ms", "2000"]) as s:
        async with httpx2.AsyncClient(timeout=30) as c:
            h1 = await open_session(c, s.url)
            await open_session(c, s.url)
            r = await init(c, s.url)
            check("--max-sessions 2: a third session gets 503 overloaded (retryable) with the request id",
                  overloaded_error(r, 1) and "--max-sessions" in r.text and r.headers.get("retry-after") == "1", (r.status_code, r.text[:300]))
            e = await sdk_refusal(s.url)
            check("--max-sessions: the SDK client sees the refusal as an MCP error (kind overloaded)",
                  isinstance(e, MCPError) and "too many sessions" in e.message and (e.data or {}).get("kind") == "overloaded", e)
            r = await c.post(s.url, json=call_body(2, "kv_get", {"key": "k"}), headers=h1)
            m = reply_to(r, 2)
            check("--max-sessions: an open session is still served at the cap", r.status_code == 200 and m and m["result"]["structuredContent"]["found"] is False, (r.status_code, r.text[:300]))
            r = await c.delete(s.url, headers=h1)
            check("DELETE closes a session", r.status_code in (200, 204), r.status_code)
            r = await init(c, s.url)
            check("--max-sessions: after a close, a new session is accepted", r.status_code == 200, (r.status_code, r.text[:300]))
            # Every session is now idle; past --session-idle-timeout-ms their slots are free.
            await anyio.sleep(3.0)
            r1, r2 = await init(c, s.url), await init(c, s.url)
            check("--session-idle-timeout-ms: idle sessions expire and free their slots", r1.status_code == 200 and r2.status_code == 200, (r1.status_code, r2.status_code))


async def concurrency_cap(tmp: str):
    with Server(tmp, "concurrency", ["--max-concurrent-requests", "2", "--query-timeout-ms", "3000"]) as s:
        async with httpx2.AsyncClient(timeout=60) as c:
            h = await open_session(c, s.url)
            async with c.stream("POST", s.url, json=call_body(10, "execute_read_only_query", {"query": NEVER_ENDING}), headers=h) as a, \
                    c.stream("POST", s.url, json=call_body(11, "execute_query", {"query": NEVER_ENDING}), headers=h) as b:
                # Both calls are in flight (their response streams are open).
                r = await c.post(s.url, json=call_body(12, "kv_get", {"key": "k"}), headers=h)
                check("--max-concurrent-requests 2: a third request gets 503 overloaded (retryable) with its id",
                      overloaded_error(r, 12) and "--max-concurrent-requests" in r.text and r.headers.get("retry-after") == "1", (r.status_code, r.text[:300]))
                e = await sdk_refusal(s.url)
                check("--max-concurrent-requests: the SDK client sees the refusal as an MCP error (kind overloaded)",
                      isinstance(e, MCPError) and "overloaded" in e.message and (e.data or {}).get("kind") == "overloaded", e)
                ra = reply_to(type("R", (), {"headers": a.headers, "text": (await a.aread()).decode()})(), 10)
                rb = reply_to(type("R", (), {"headers": b.headers, "text": (await b.aread()).decode()})(), 11)
            kinds = [((m or {}).get("result") or {}).get("structuredContent", {}).get("kind") for m in (ra, rb)]
            check("...the two running calls end with query_timeout isError results", kinds == ["query_timeout", "query_timeout"], (ra, rb))
            r = await c.post(s.url, json=call_body(13, "kv_get", {"key": "k"}), headers=h)
            m = reply_to(r, 13)
            check("--max-concurrent-requests: once they finish, requests are served again", r.status_code == 200 and m and "result" in m, (r.status_code, r.text[:300]))


async def request_time_cap(tmp: str):
    with Server(tmp, "timecap", ["--request-timeout-ms", "800", "--query-timeout-ms", "20000"]) as s:
        t0 = time.monotonic()
        r = await sdk_call(s.url, None, "execute_read_only_query", {"query": NEVER_ENDING})
        took = time.monotonic() - t0
        sc = r.structured_content or {}
        check("--request-timeout-ms 800: a never-ending call is an isError result with kind request_timeout",
              r.is_error is True and sc.get("kind") == "request_timeout" and sc.get("retryable") is False and "--request-timeout-ms" in sc.get("message", ""), (r.is_error, sc))
        check(f"...answered within the limit, not the query's ({took:.2f}s)", took < 6, took)
        r = await sdk_call(s.url, None, "kv_set", {"key": "after", "value": True})
        check("...and the server keeps serving", not r.is_error and r.structured_content["version"] == 1, r)
    with Server(tmp, "timecap-default", []) as s:
        err = s.stderr()
        check("the defaults are announced at start (64 sessions, 32 requests, 30000 ms per call)",
              "at most 64 sessions, 32 requests in flight, 30000 ms per call" in err, err[-400:])


async def main() -> int:
    if not os.path.exists(BIN):
        print(f"FAIL server binary not found at {BIN}; build it with `cargo build -p edgeswarm-cli` or set EDGESWARM_BIN")
        print("0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="edgeswarm-mcp-sec-")
    try:
        for fn in (refused_to_start, insecure_no_auth, origins_and_token, dns_rebinding, session_cap, concurrency_cap, request_time_cap):
            try:
                with anyio.fail_after(120):
                    await fn(tmp)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                check(f"{fn.__name__} ran to the end", False, f"{type(e).__name__}: {e}")
                for name in sorted(os.listdir(tmp)):
                    if name.endswith(".log"):
                        print(f"--- {name} (tail) ---\n" + open(os.path.join(tmp, name)).read()[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
