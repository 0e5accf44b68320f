#!/usr/bin/env bash
# The soak on the sandbox Asterisk: `scripts/soak.sh [CALLS] [--seed N] [--rate CALLS_PER_S]
# [--round CALLS] [--kills ROUNDS]` (default 10000 calls in rounds of 1000 at 8 new calls/s, a
# kill -9 of Asterisk in 4 of the 10 rounds). It prints the seed first (--seed replays the plan),
# a line per round and the figures; exit 1 if a check failed (the instance is then kept under
# .sandbox/sid/var/tmp/cc-e2e/ for inspection). The README holds the latest figures; a smaller
# version runs in scripts/test.sh (tests/e2e_soak.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CALLCONSENT_SANDBOX=${CALLCONSENT_SANDBOX:-$PWD/.sandbox}
# Whatever happens, no Asterisk or sipp this soak started outlives it. The soak notes their
# process ids in this file: only those are ended (a test run beside it keeps its own).
export SOAK_PIDS=$(mktemp /tmp/callconsent-soak-pids.XXXXXX)
cleanup() {
  while read -r pid; do
    if grep -qaE '/usr/(sbin/asterisk|bin/sipp)' "/proc/$pid/cmdline" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done < "$SOAK_PIDS"
  rm -f "$SOAK_PIDS"
}
trap cleanup EXIT
scripts/sandbox.sh >/dev/null
cargo build --release --all-targets
calls=${1:-10000}
shift || true
cargo run --release --example soak -- "$calls" "$@"
