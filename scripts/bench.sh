#!/usr/bin/env bash
# Benchmarks on the sandbox Asterisk and FreeSWITCH: `scripts/bench.sh [leak|cost|capacity|archive|fs|store|all]`
# (default all; capacity takes about 10 minutes).
# Figures are ratios and side-by-side measurements from one run; the README holds the latest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CALLCONSENT_SANDBOX=${CALLCONSENT_SANDBOX:-$PWD/.sandbox}
trap "pkill -9 -f '^/usr/sbin/asterisk -f -C /var/tmp/cc-e2e/' 2>/dev/null || true" EXIT
scripts/sandbox.sh >/dev/null
scripts/sandbox-freeswitch.sh >/dev/null
cargo build --release --all-targets
scripts/prompts.sh >/dev/null
what=${1:-all}
case "$what" in archive|fs|store) ;; *) cargo run --release --example bench -- "$what" ;; esac
if [ "$what" = fs ] || [ "$what" = all ]; then cargo run --release --example bench_fs -- all; fi
if [ "$what" = archive ] || [ "$what" = all ]; then taskset -c 0 cargo run --release --example bench_archive; fi
if [ "$what" = store ] || [ "$what" = all ]; then cargo run --release --example bench_store; fi
