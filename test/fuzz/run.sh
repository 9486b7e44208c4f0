#!/usr/bin/env bash
# Runs each fuzz target for a bounded time over a copy of its seed corpus
# (test/fuzz/corpus/<name>/; the copy, so that a run never changes the
# repository), one target at a time. Prints a line per target and ends with
# "N passed, M failed" (a target is one test); exits non-zero if any failed.
# A failed target's input is printed in base64, to keep it for the corpus.
#
#   run.sh SECONDS test/fuzz/fuzz_<name> ...      (make fuzz calls it)
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=$1
shift
work=$(mktemp -d /tmp/bgw_proxy_fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
for bin in "$@"; do
    name=${bin#test/fuzz/fuzz_}
    mkdir -p "$work/$name/corpus"
    cp -r "test/fuzz/corpus/$name/." "$work/$name/corpus/"
    dict=()
    [ -f "test/fuzz/$name.dict" ] && dict=(-dict="test/fuzz/$name.dict")
    # -timeout: one input taking seconds is a finding too (a loop without
    # progress); -rss_limit_mb: so is unbounded memory
    "$bin" "$work/$name/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$name/" \
        > "$work/$name/log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name/log")
    if [ "$rc" -eq 0 ]; then
        echo "ok fuzz_$name: ${runs:-?} inputs in ${seconds}s"
        passed=$((passed + 1))
    else
        echo "not ok fuzz_$name (exit $rc)"
        grep -E 'ERROR|SUMMARY|runtime error' "$work/$name/log" | head -n 10
        for a in "$work/$name"/crash-* "$work/$name"/timeout-* "$work/$name"/oom-* "$work/$name"/leak-*; do
            [ -f "$a" ] && echo "input $(basename "$a") (base64): $(base64 -w0 "$a")"
        done
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
