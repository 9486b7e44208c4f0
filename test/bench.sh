#!/usr/bin/env bash
# bgw_proxy benchmark (make bench). One throwaway instance holds both sides:
# the database bench_remote with a trivial lookup function over a small
# table, and bench_proxy with a bgw_proxy CONNECT function of the same
# signature. pgbench calls (a) the function directly on bench_remote and
# (b) the proxy function on bench_proxy, at 1 and 16 clients, with
# persistent connections and with -C (a new session per call). Figures are
# reported as ratios against (a) measured in the same run, with the number
# of remote connections the workers held.
#
# Each configuration runs BENCH_REPEAT times, direct and proxy interleaved,
# and the medians are reported: on a small machine single runs (especially
# with -C, which forks a backend per call) vary by 10-20%.
#
#   BENCH_SECONDS=5 (per run)  BENCH_REPEAT=3  BENCH_WORKERS=2  BENCH_CLIENTS="1 16"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-5}
repeat=${BENCH_REPEAT:-3}
clients_list=${BENCH_CLIENTS:-"1 16"}
workers=${BENCH_WORKERS:-2}

source test/lib/instance.sh
trap 'instance_stop_all; rm -rf "$BGW_TMP"' EXIT
port=$((59000 + RANDOM % 900))
instance_start bench "$port" "shared_preload_libraries = 'bgw_proxy'" \
  "bgw_proxy.workers = $workers" "max_connections = 200" "shared_buffers = 128MB"
sock=$(instance_socket bench)

instance_psql bench -q -c "CREATE DATABASE bench_remote" -c "CREATE DATABASE bench_proxy"
instance_psql bench -q -d bench_remote <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);
INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 1000) g;
VACUUM ANALYZE accounts;
CREATE FUNCTION lookup(i int) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT owner FROM accounts WHERE id = i $$;
SQL
instance_psql bench -q -d bench_proxy <<'SQL'
CREATE EXTENSION bgw_proxy;
CREATE FUNCTION lookup(i int) RETURNS text
    AS $$ CONNECT 'dbname=bench_remote'; $$ LANGUAGE bgw_proxy;
SELECT lookup(1);
SQL

script=$BGW_TMP/lookup.sql
printf '\\set k random(1, 1000)\nSELECT lookup(:k);\n' >"$script"
chmod 644 "$script"

tps() { # db clients extra-flags...
  local db=$1 c=$2; shift 2
  as_pg "$(pg_config --bindir)/pgbench" -n -h "$sock" -p "$port" -U postgres -f "$script" \
    -c "$c" -j "$(( c < 2 ? c : 2 ))" -T "$seconds" "$@" "$db" 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

remote_conns() {
  instance_psql bench -Atq -d bench_remote -c \
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bgw_proxy' AND datname = 'bench_remote'"
}

echo
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "bgw_proxy benchmark: median of $repeat interleaved runs of ${seconds}s, $workers workers, $(nproc) cores, PostgreSQL $(pg_config --version | awk '{print $2}')"
printf '%-8s %-11s %12s %12s %7s %13s\n' clients connection direct_tps proxy_tps ratio remote_conns
for c in $clients_list; do
  for mode in persistent new-per-call; do
    flags=()
    [ "$mode" = new-per-call ] && flags=(-C)
    ds=""; ps=""
    for _ in $(seq "$repeat"); do
      ds="$ds $(tps bench_remote "$c" "${flags[@]}")"
      ps="$ps $(tps bench_proxy "$c" "${flags[@]}")"
    done
    d=$(echo "$ds" | median)
    p=$(echo "$ps" | median)
    r=$(awk -v p="$p" -v d="$d" 'BEGIN { if (d > 0) printf "%.2f", p / d; else print "n/a" }')
    printf '%-8s %-11s %12.0f %12.0f %6sx %13s\n' "$c" "$mode" "$d" "$p" "$r" "$(remote_conns)"
  done
done
