#!/usr/bin/env bash
# Runs every test suite against the already-built trees and sums them up:
#   1. unit tests (Check, via ctest) in build/
#   2. unit tests in build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer, leaks fatal)
#   3. integration tests (node --test) against build/agentgate
#   4. integration tests against build-asan/agentgate (a daemon that leaks or trips a sanitizer
#      does not exit 0 after SIGTERM, and the tests assert that it does)
#   5. the fuzz targets (libFuzzer, clang), each for $FUZZ_SECONDS (default 20) seconds
# Every suite runs even when an earlier one failed; the exit status is non-zero if any failed.
# Used by `make test` (which installs and builds first).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logs="$root/build/test-logs"
mkdir -p "$logs"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

passed=0
failed=0
status=0
summary=()

# count LOG KIND -> "PASS FAIL" from a ctest or node --test log
count() {
    local log=$1 kind=$2 p=0 f=0
    if [ "$kind" = fuzz ]; then
        read -r p f < <(sed -nE 's/^fuzz: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$log" | tail -1)
    elif [ "$kind" = ctest ]; then
        local line
        line=$(grep -E '[0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
        if [ -n "$line" ]; then
            f=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
            local t
            t=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")
            p=$((t - f))
        fi
    else
        # TAP ("# pass 3") or spec ("ℹ pass 3") closing lines; cancelled tests count as failed
        read -r p f < <(awk '/^(# |ℹ )pass [0-9]+$/ {p = $3} /^(# |ℹ )(fail|cancelled) [0-9]+$/ {f[$2] = $3}
                             END {print p + 0, f["fail"] + f["cancelled"]}' "$log")
    fi
    echo "${p:-0} ${f:-0}"
}

# run NAME KIND CMD... : runs one suite, tees its log, adds up its counts
run() {
    local name=$1 kind=$2
    shift 2
    local log="$logs/$name.log"
    echo
    echo "==== $name: $*"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f
    read -r p f < <(count "$log" "$kind")
    # A suite that failed without reporting a failed test (crash, timeout) still counts once.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$rc" -ne 0 ] && status=1
    summary+=("$(printf '%-18s %s (exit %d): %d passed, %d failed' "$name" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" "$rc" "$p" "$f")")
}

run unit ctest ctest --test-dir build --output-on-failure --timeout 300
run unit-asan ctest ctest --test-dir build-asan --output-on-failure --timeout 600
run integration node test/run-integration.sh build/agentgate
run integration-asan node test/run-integration.sh build-asan/agentgate
run fuzz fuzz test/run-fuzz.sh

echo
echo "==== summary (logs in build/test-logs/)"
for s in "${summary[@]}"; do echo "$s"; done
echo "total: $passed passed, $failed failed"
exit $status
