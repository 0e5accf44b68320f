#!/usr/bin/env bash
# Every test: provisions the sandbox Asterisk and FreeSWITCH if needed, builds both modules, then
# runs the unit, property and end-to-end tests (real Asterisk 22 and FreeSWITCH 1.10, real calls).
# `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-true}
export CALLCONSENT_SANDBOX=${CALLCONSENT_SANDBOX:-$PWD/.sandbox}
start=$(date +%s)

# Whatever happens, no Asterisk, FreeSWITCH or sipp started by a test outlives this script.
cleanup() {
  pkill -9 -f '^/usr/sbin/asterisk -f -C /var/tmp/cc-e2e/' 2>/dev/null || true
  pkill -9 -f "^$CALLCONSENT_SANDBOX/freeswitch/bin/freeswitch -nf" 2>/dev/null || true
  pkill -9 -f '^/usr/bin/sipp 127.0.0.1:' 2>/dev/null || true
  pkill -9 -f '^/usr/lib/postgresql/[0-9]+/bin/postgres -D /var/tmp/cc-pg-' 2>/dev/null || true
}
trap cleanup EXIT

if ! command -v cargo >/dev/null; then
  echo "test: cargo is required (Rust 1.80 or newer)" >&2
  exit 1
fi
# The core, the runtime, the guard and the DPO tool build with no PBX headers and no libclang:
# nothing of either PBX adapter or bindgen may be in their dependency tree.
if cargo tree -q -e normal,build -p callconsent-core -p callconsent-runtime -p callconsent-guard -p callconsent-tool \
    | grep -E '(^|[^-])(bindgen|callconsent|callconsent-freeswitch) v'; then
  echo "test: a host-free crate depends on a PBX adapter or on bindgen" >&2
  exit 1
fi
# Gates (issue 22): one format (rustfmt.toml), and clippy without a warning on every target.
command -v rustfmt >/dev/null && cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt clippy
cargo fmt --all --check || { echo "test: the code is not formatted: run cargo fmt --all" >&2; exit 1; }
scripts/sandbox.sh
scripts/sandbox-freeswitch.sh
cargo build --release --all-targets
cargo clippy --release --all-targets -- -D warnings \
  || { echo "test: clippy found warnings (cargo clippy --release --all-targets)" >&2; exit 1; }
cargo test --release --all-targets --no-fail-fast -- --test-threads=2
echo "test: all tests passed in $(( $(date +%s) - start )) s"
