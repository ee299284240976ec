#!/usr/bin/env bash
# The long reliability runs (docs/reliability.md), beyond what CI runs:
#   1. the crash harness: N SIGKILL cycles (default 500; CI runs 50) of a swarm under
#      mixed load with a local region, checking acks, integrity and convergence after
#      every restart (tests/crash_cycles.rs, child: tests/child.rs `crash`);
#   2. the disk-fault sweeps over every N instead of CI's sample
#      (crates/edgeswarm-store/tests/fault_vfs.rs, EDGESWARM_FAULT_SWEEP=full).
# Usage: scripts/crash.sh [cycles]   (EDGESWARM_CRASH_SEED=<seed> replays a kill schedule)
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES="${1:-${EDGESWARM_CRASH_CYCLES:-500}}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== crash harness: $CYCLES SIGKILL cycles"
EDGESWARM_CRASH_CYCLES="$CYCLES" cargo test --locked -p tests --test crash_cycles -- --nocapture 2>&1 | grep -E "crash harness|test result|panicked|FAIL"

echo "== disk-fault sweeps, every N"
EDGESWARM_FAULT_SWEEP=full cargo test --locked -p edgeswarm-store --test fault_vfs -- --nocapture --test-threads=1 2>&1 \
  | grep -E "calls per|points|full disk|test result|panicked"
