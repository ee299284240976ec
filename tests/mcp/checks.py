"""What the MCP client suites share: one pass/fail counter, a free loopback port, waiting
for a server to listen, and reading JSON-RPC replies out of HTTP (JSON or SSE) bodies.
Each suite runs as a script from this directory, so `import checks` finds this file."""
import json
import socket
import subprocess
import time

PASSED = 0
FAILED = 0


def check(label: str, ok: bool, detail: object = "") -> bool:
    """Counts and prints one check; returns `ok` so a caller can stop early."""
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {label}")
    else:
        FAILED += 1
        print(f"FAIL {label}: {detail}")
    return ok


def summary() -> int:
    """Prints the totals; the process exit code (1 if anything failed)."""
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, secs: float = 30, log=lambda: "") -> None:
    """Waits until something accepts on the loopback `port`; fails early (with `log()`'s
    tail) if `proc` exits first."""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start listening")


def sse_messages(text: str) -> list:
    """The JSON-RPC messages in an SSE body (`data:` lines)."""
    out = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            try:
                out.append(json.loads(line[5:].strip()))
            except json.JSONDecodeError:
                pass
    return out


def reply_to(r, rid) -> dict | None:
    """The JSON-RPC message answering `rid` in an HTTP reply (JSON or SSE)."""
    msgs = [r.json()] if r.headers.get("content-type", "").startswith("application/json") else sse_messages(r.text)
    return next((m for m in msgs if m.get("id") == rid), None)
