"""What the MCP client suites share: one pass/fail counter and a free loopback port.
Each suite runs as a script from this directory, so `import checks` finds this file."""
import socket

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
