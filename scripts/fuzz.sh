#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ through afl.rs (`cargo afl`), on the stable toolchain.
#
#   scripts/fuzz.sh TARGET [SECONDS]      TARGET: config | call | policy | audit (default 300 s)
#
# Installs what it needs (cargo-afl from crates.io, which builds its own AFL++), builds the
# instrumented target from fuzz/ (its own Cargo project, outside the root workspace), runs one
# afl-fuzz niced for SECONDS, then prints executions, speed, corpus, crashes and hangs. Crashing
# and hanging inputs are copied to fuzz/crashes/TARGET/ and fuzz/hangs/TARGET/; with CMIN=1
# (default) the grown queue is minimized with afl-cmin into fuzz/corpus/TARGET/ (the seed-*
# files are always kept). One afl-fuzz at a time: this machine has 2 cores.
#
# Reproduce a saved input without AFL:
#   (cd fuzz && cargo run --release --target-dir target/plain --bin repro -- TARGET FILE...)
set -euo pipefail

target=${1:?usage: scripts/fuzz.sh config|call|policy|audit [SECONDS]}
seconds=${2:-300}
case $target in config | call | policy | audit) ;; *) echo "unknown target: $target" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz=$root/fuzz
cd "$fuzz"

# 1. cargo-afl (its version follows the afl crate in fuzz/Cargo.lock), then AFL++ itself.
afl_version=$(awk '/^name = "afl"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if ! cargo afl --version 2>/dev/null | grep -q "${afl_version:-.}"; then
    nice -n 10 cargo install cargo-afl --locked ${afl_version:+--version "$afl_version"}
fi
if ! out=$(nice -n 10 cargo afl config --build 2>&1); then
    grep -q "already built" <<<"$out" || { echo "$out" >&2; exit 1; }
fi

# 2. The instrumented binary.
nice -n 10 cargo afl build --release --bin "$target"
bin=$fuzz/target/release/$target

# 3. One run. The output dir is scratch (git-ignored); each run starts from fuzz/corpus/TARGET.
export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
out_dir=$fuzz/out/$target
rm -rf "$out_dir"
mkdir -p "$out_dir"
echo "fuzzing $target for $seconds s (log: $out_dir/afl.log)"
nice -n 10 cargo afl fuzz -V "$seconds" -i "corpus/$target" -o "$out_dir" -- "$bin" >"$out_dir/afl.log" 2>&1 || {
    tail -30 "$out_dir/afl.log" >&2
    exit 1
}

# The audit target's scratch files (left by runs that AFL ended mid-way).
rm -rf /dev/shm/cc-fuzz-audit-* "${TMPDIR:-/tmp}"/cc-fuzz-audit-*

stats=$out_dir/default/fuzzer_stats
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }

# 4. Crashes and hangs, kept under names git and every filesystem take.
save() {
    local from=$1 to=$2 n=0 f
    for f in "$from"/id:*; do
        [ -e "$f" ] || continue
        mkdir -p "$to"
        cp "$f" "$to/$(basename "$f" | tr ':,' '_-')"
        n=$((n + 1))
    done
    echo "$n"
}
crashes=$(save "$out_dir/default/crashes" "$fuzz/crashes/$target")
hangs=$(save "$out_dir/default/hangs" "$fuzz/hangs/$target")

# 5. The grown corpus, minimized (coverage-preserving) and named by content.
corpus_note="not minimized (CMIN=0)"
if [ "${CMIN:-1}" = 1 ]; then
    all=$out_dir/cmin-in min=$out_dir/cmin-out
    mkdir -p "$all"
    cp "$out_dir"/default/queue/id:* "$all"/ 2>/dev/null || true
    cp corpus/"$target"/* "$all"/
    # The bash afl-cmin (the Python one that `cargo afl cmin` picks finds no tuples in these
    # persistent-mode binaries); -e: edge coverage only, ignoring hit counts (a smaller corpus).
    afl_bin=$(dirname "$(cargo afl fuzz -h 2>&1 | grep -o '/[^ ]*/afl-fuzz' | head -1)")
    if nice -n 10 "$afl_bin/afl-cmin.bash" -e -i "$all" -o "$min" -- "$bin" >"$out_dir/cmin.log" 2>&1; then
        find "corpus/$target" -type f ! -name 'seed-*' -delete
        seeds=$(sha1sum corpus/"$target"/seed-* | cut -c1-40)
        for f in "$min"/*; do
            sum=$(sha1sum "$f" | cut -c1-40)
            grep -q "$sum" <<<"$seeds" || cp "$f" "corpus/$target/${sum:0:16}"
        done
        corpus_note="minimized: $(ls "$min" | wc -l) of $(ls "$all" | wc -l) inputs kept"
    else
        corpus_note="afl-cmin failed (see $out_dir/cmin.log): corpus left as it was"
    fi
fi

echo "== $target: $(stat run_time) s"
echo "executions:  $(stat execs_done)"
echo "execs/s:     $(stat execs_per_sec)"
echo "queue:       $(stat corpus_count) inputs, edges found $(stat edges_found) of $(stat total_edges) ($(stat bitmap_cvg))"
echo "corpus:      $(ls "corpus/$target" | wc -l) files in fuzz/corpus/$target ($corpus_note)"
echo "crashes:     $(stat saved_crashes) (saved: $crashes in fuzz/crashes/$target)"
echo "hangs:       $(stat saved_hangs) (saved: $hangs in fuzz/hangs/$target)"
