#!/usr/bin/env bash
# Runs every bgw_proxy test suite and ends with one line "N passed, M failed":
#   1. unit tests of the pure C++ modules (no server)
#   2. the include rules of src/ (test/lint/check_includes.pl)
#   3. each fuzz target for 20 s over a copy of its seed corpus (make fuzz,
#      test/fuzz/); a target counts as one test
#   4. the pg_regress suite (sql/, expected/) on a temporary instance
#      (make check-regress, settings from test/regress.conf)
#   5. the TAP tests (test/t/*.pl) through PGXS's prove (make
#      prove-installcheck): several instances, faults, the soak test
# Needs the dependencies (scripts/install-deps.sh) and root for make install.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== build and install"
if ! make -s -j2 >/dev/null || ! make -s install >/dev/null; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== unit tests"
for src in test/unit/test_*.cpp; do
  bin=${src%.cpp}
  out=$(make -s "$bin" 2>&1 && "./$bin" 2>&1)
  echo "$out" | tail -n 20
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -n "$line" ]; then
    count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
  else
    count 0 1
  fi
done

echo "== include rules"
out=$(perl test/lint/check_includes.pl src 2>&1)
echo "$out"
line=$(echo "$out" | tail -1)
count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"

echo "== fuzzing (make fuzz)"
out=$(make -s fuzz FUZZ_SECONDS=20 2>&1)
echo "$out" | tail -n 40
line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
if [ -n "$line" ]; then
  count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
else
  count 0 1   # the targets did not build
fi

echo "== pg_regress (make check-regress)"
work=$(mktemp -d /tmp/bgw_proxy_all.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
make -s check-regress 2>&1 | tee "$work/regress.out"
rc=${PIPESTATUS[0]}
# every test file must be reported "ok"; anything else (a diff, a missing
# expected file, a file left out of REGRESS, a crash that stops the run)
# counts as failed
total=$(ls sql/*.sql | wc -l)
ok=$(grep -cE '^(ok|test) +[0-9]* *[-+]? *[0-9a-z_]+ +\.\.\. ok|^ok +[0-9]+ +[-+] +[0-9a-z_]+ ' "$work/regress.out" || true)
count "$ok" "$((total - ok))"
if [ "$rc" -ne 0 ] && [ "$ok" -eq "$total" ]; then
  count 0 1   # all files passed, but the run failed (a crash in the server log)
fi

echo "== TAP (make prove-installcheck)"
# PostgreSQL will not run as root: the TAP tests run as the postgres OS user
# in a copy of the tree that user owns.
tapdir=$work/tap
mkdir -p "$tapdir"
cp -r Makefile ./*.control ./*.sql src test "$tapdir/"
chown -R postgres: "$work"
tap_out=$(cd "$tapdir" && runuser -u postgres -- make -s prove-installcheck PROVE_FLAGS=-v 2>&1)
echo "$tap_out" | grep -vE '^ok ' | tail -n 80
count "$(echo "$tap_out" | grep -cE '^\s*ok [0-9]+')" "$(echo "$tap_out" | grep -cE '^\s*not ok [0-9]+')"
echo "$tap_out" | grep -qE '^Result: PASS' || count 0 1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
