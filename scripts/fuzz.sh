#!/usr/bin/env bash
# Runs every fuzz target of crates/edgeswarm-fuzz for a while (stable toolchain, no
# nightly or AFL needed). Usage:
#   scripts/fuzz.sh [MINUTES]            each target for MINUTES (default 5)
#   scripts/fuzz.sh --seconds N          each target for N seconds (the CI smoke)
# Environment: FUZZ_SEED (default: 1 for --seconds, so the CI smoke is repeatable; a new
# seed per run for MINUTES; printed either way: set it to replay),
# FUZZ_TARGETS (default "guard search mcp hrana"), FUZZ_OUT (failing inputs; default
# target/fuzz-failures). Exits 1 if any target found something; every target still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=300
DEFAULT_SEED="$(date +%s)"
case "${1:-}" in
  --seconds) SECONDS_EACH="${2:?--seconds needs a number}"; DEFAULT_SEED=1 ;;
  "") ;;
  *) SECONDS_EACH=$(( $1 * 60 )) ;;
esac
SEED="${FUZZ_SEED:-$DEFAULT_SEED}"
TARGETS="${FUZZ_TARGETS:-guard search mcp hrana}"
OUT="${FUZZ_OUT:-target/fuzz-failures}"
cargo build --locked -q -p edgeswarm-fuzz 2>&1
BIN="${CARGO_TARGET_DIR:-target}/debug/edgeswarm-fuzz"
echo "== fuzzing ${TARGETS} for ${SECONDS_EACH} s each, seed ${SEED} (replay: FUZZ_SEED=${SEED} $0 $*)"
failed=""
for t in $TARGETS; do
  if ! "$BIN" "$t" --seconds "$SECONDS_EACH" --seed "$SEED" --out "$OUT"; then
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "== fuzzing found failures in:$failed (inputs in $OUT)" >&2
  exit 1
fi
echo "== fuzzing: no failures"
