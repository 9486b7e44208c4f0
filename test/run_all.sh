#!/usr/bin/env bash
# Runs every bgw_proxy test suite and ends with one line "N passed, M failed":
#   1. unit tests of the pure C++ modules (no server)
#   2. the pg_regress suite (sql/, expected/) on a throwaway instance with
#      shared_preload_libraries = 'bgw_proxy'
#   3. the TAP tests (test/t/*.pl): several instances, faults, the soak test
# Needs the dependencies (scripts/install-deps.sh) and root for make install.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

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

echo "== pg_regress"
source test/lib/instance.sh
trap 'instance_stop_all; rm -rf "$BGW_TMP"' EXIT
port=$((55000 + RANDOM % 4000))
if instance_start regress "$port" "shared_preload_libraries = 'bgw_proxy'" "bgw_proxy.workers = 2"; then
  rm -rf results regression.diffs regression.out
  PGHOST=$(instance_socket regress) PGPORT=$port PGUSER=postgres \
    make -s installcheck 2>&1 | tee "$BGW_TMP/regress.out"
  # every test file must be reported "ok"; anything else (a diff, a missing
  # expected file, a crash that stops the run) counts as failed
  total=$(ls sql/*.sql | wc -l)
  ok=$(grep -cE '^(ok|test) +[0-9]* *[-+]? *[0-9a-z_]+ +\.\.\. ok|^ok +[0-9]+ +[-+] +[0-9a-z_]+ ' "$BGW_TMP/regress.out" || true)
  bad=$((total - ok))
  count "$ok" "$bad"
  [ -f regression.diffs ] && head -n 200 regression.diffs
  if grep -E 'terminated by signal|was terminated by|server process .* exited with exit code [^01]' \
      "$(instance_socket regress)/server.log"; then
    echo "server log shows a crash"
    count 0 1
  fi
  instance_stop regress
else
  count 0 1
fi

echo "== TAP"
if ls test/t/*.pl >/dev/null 2>&1; then
  perl_lib=$(dirname "$(dirname "$(pg_config --pgxs)")")/test/perl
  chown -R postgres: "$BGW_TMP"
  tapdir=$BGW_TMP/tap
  mkdir -p "$tapdir" && cp -r test/t test/lib "$tapdir/" && chown -R postgres: "$tapdir"
  tap_out=$(cd "$tapdir" && runuser -u postgres -- env PATH="$(pg_config --bindir):$PATH" \
      PG_REGRESS=/bin/true with_ssl=no \
      PERL5LIB="$perl_lib" TESTDIR="$tapdir" BGW_SRC="$top" \
      prove -v t/*.pl 2>&1)
  echo "$tap_out" | grep -vE '^ok ' | tail -n 80
  count "$(echo "$tap_out" | grep -cE '^\s*ok [0-9]+')" "$(echo "$tap_out" | grep -cE '^\s*not ok [0-9]+')"
  echo "$tap_out" | grep -qE '^Result: PASS' || { echo "$tap_out" | grep -q '^Result' && count 0 1; }
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
