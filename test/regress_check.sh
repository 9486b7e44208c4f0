#!/usr/bin/env bash
# make check-regress: the pg_regress suite on a temporary instance, as
# `make check` does for in-tree modules (--temp-instance, --temp-config):
# initdb, test/regress.conf appended, started with PGHOST/PGPORT pointing at
# itself (test/lib/instance.sh), `make installcheck` against it, stopped.
# Fails if a test fails or the server log shows a crashed process.
# Runs as root (servers as the postgres OS user) or as an ordinary user.
set -uo pipefail
cd "$(dirname "$0")/.."
source test/lib/instance.sh
trap 'instance_stop_all; rm -rf "$BGW_TMP"' EXIT

mapfile -t conf < <(grep -vE '^\s*(#|$)' test/regress.conf)
port=$(free_port 55000 4000) || { echo "check-regress: no free port"; exit 1; }
instance_start regress "$port" "${conf[@]}" || exit 1

rm -rf results regression.diffs regression.out
PGHOST=$(instance_socket regress) PGPORT=$port PGUSER=postgres make -s installcheck
rc=$?
[ -f regression.diffs ] && head -n 200 regression.diffs
if grep -E 'terminated by signal|was terminated by|server process .* exited with exit code [^01]' \
    "$(instance_socket regress)/server.log"; then
  echo "check-regress: the server log shows a crashed process"
  rc=1
fi
exit "$rc"
