#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz/fuzz_*.c) with clang and runs each for a bounded
# time. A crash, leak or sanitizer report fails the run; the input that did it is kept in
# build-fuzz/crashes/.
#   test/run-fuzz.sh [SECONDS_PER_TARGET]   (default $FUZZ_SECONDS, else 20)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs="${1:-${FUZZ_SECONDS:-20}}"
CC=clang cmake -S . -B build-fuzz -DAG_FUZZ=ON -DAG_TESTS=OFF -DAG_WERROR=ON >/dev/null
cmake --build build-fuzz -j"${JOBS:-2}" >/dev/null
mkdir -p build-fuzz/crashes
pass=0
fail=0
for bin in build-fuzz/fuzz_*; do
    # Only the targets: a run before this one left its fuzz_*.log files here too.
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus="build-fuzz/corpus/$name"
    mkdir -p "$corpus"
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build-fuzz/crashes/$name-" "$corpus" >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "build-fuzz/$name.log" | awk '{print $2}' || true) runs, ${secs}s)"
        pass=$((pass + 1))
    else
        echo "fuzz: $name FAILED; see build-fuzz/$name.log"
        tail -30 "build-fuzz/$name.log"
        fail=$((fail + 1))
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
