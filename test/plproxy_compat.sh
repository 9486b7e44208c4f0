#!/usr/bin/env bash
# PL/Proxy compatibility check (manual; needs a git checkout of PL/Proxy).
#
#   bash test/plproxy_compat.sh /path/to/plproxy [git-ref, default v2.10.0]
#
# Runs PL/Proxy's own regression suite (test/sql, test/expected and the
# REGRESS order of that ref's Makefile) twice on fresh throwaway instances
# preloading bgw_proxy: once as it is, with the real PL/Proxy
# (postgresql-15-plproxy), and once with only its "create extension
# plproxy" lines changed to "create extension bgw_proxy_plproxy cascade".
# Then compares the two result sets file by file and prints the lines that
# differ. Expected: error wording only (README, "Migrating from PL/Proxy").
# The bgw run sets bgw_proxy.mapping_password_required = off, PL/Proxy's
# behaviour for user mappings (the suite relies on it).
set -uo pipefail
src=${1:?path to a plproxy git checkout}
ref=${2:-v2.10.0}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/plproxy_compat.XXXXXX)
chmod 755 "$work"
export BGW_TMP=$work/instances
mkdir -p "$BGW_TMP"
source "$top/test/lib/instance.sh"
trap 'instance_stop_all' EXIT

tests=$(git -C "$src" show "$ref:Makefile" | awk '/^REGRESS *=/{f=1} f{print} f&&!/\\$/{exit}' |
        sed -e 's/^REGRESS *=//' -e 's/\\//g' | tr -s ' \n' ' ')

run_suite() { # name extension-line extra-conf...
  local name=$1 line=$2; shift 2
  local dir=$work/$name
  mkdir -p "$dir/in" "$dir/out"
  git -C "$src" archive "$ref" test/sql test/expected | tar -x -C "$dir/in" --strip-components=1
  sed -i -E "s/^create extension plproxy;/$line/I" "$dir"/in/sql/*.sql
  chown -R postgres: "$dir"
  local port=$((40000 + RANDOM % 20000))
  instance_start "$name" "$port" "shared_preload_libraries = 'bgw_proxy'" "bgw_proxy.workers = 2" "$@" || return 1
  (cd "$dir/out" && runuser -u postgres -- env PGHOST="$(instance_socket "$name")" PGPORT="$port" \
     "$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress" --bindir="$(pg_config --bindir)" \
     --inputdir="$dir/in" --outputdir="$dir/out" --host="$(instance_socket "$name")" --port="$port" \
     --user=postgres --dbname=regression $tests >"$dir/pg_regress.log" 2>&1)
  instance_stop "$name"
}

run_suite plproxy "create extension plproxy;"
run_suite bgw "create extension bgw_proxy_plproxy cascade;" "bgw_proxy.mapping_password_required = off"

same=0; differ=0
for f in "$work"/plproxy/out/results/*.out; do
  n=$(basename "$f")
  if cmp -s "$f" "$work/bgw/out/results/$n"; then
    same=$((same + 1))
  else
    differ=$((differ + 1))
    echo "== $n"
    diff "$f" "$work/bgw/out/results/$n" | grep -E '^[<>]'
  fi
done
echo "PL/Proxy $ref suite: $same files identical, $differ with differences (results in $work)"
