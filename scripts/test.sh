#!/usr/bin/env bash
# Every test: provisions the sandbox Asterisk if needed, builds the module, then runs the unit,
# property and end-to-end tests (real Asterisk 22, real calls). `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-true}
export CALLCONSENT_SANDBOX=${CALLCONSENT_SANDBOX:-$PWD/.sandbox}
start=$(date +%s)

# Whatever happens, no Asterisk or sipp started by a test outlives this script.
cleanup() {
  pkill -9 -f '^/usr/sbin/asterisk -f -C /var/tmp/cc-e2e/' 2>/dev/null || true
  pkill -9 -f '^/usr/bin/sipp 127.0.0.1:' 2>/dev/null || true
}
trap cleanup EXIT

if ! command -v cargo >/dev/null; then
  echo "test: cargo is required (Rust 1.80 or newer)" >&2
  exit 1
fi
scripts/sandbox.sh
cargo build --release --all-targets
cargo test --release --all-targets -- --test-threads=2
echo "test: all tests passed in $(( $(date +%s) - start )) s"
