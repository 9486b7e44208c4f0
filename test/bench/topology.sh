# test/bench/topology.sh — the benchmark's servers (sourced by test/bench.sh).
#
#   part   instance: databases part_0 .. part_{N-1}, each with the keys that
#          hash to it and the remote functions get_value, all_parts, gen
#   proxy  instance: shared_preload_libraries = 'bgw_proxy' and three proxy
#          databases with the same three functions:
#            bench_bgw        LANGUAGE bgw_proxy, SQL/MED server of the
#                             bgw_proxy wrapper
#            bench_plproxy    the real PL/Proxy, its own SQL/MED server,
#                             straight to the partitions
#            bench_pgbouncer  the real PL/Proxy, partitions through pgbouncer
#   pgbouncer  statement pooling, 4 server connections per partition
#
# Every connection string names host=127.0.0.1 and a port: a bgw_proxy
# worker's libpq would otherwise take the proxy postmaster's PGHOST/PGPORT.
# PL/Proxy's strings carry an application_name so that the connection
# sampler can tell its connections from bgw_proxy's ('bgw_proxy').

BENCH_KEYS=100000 # keys over all partitions; get_value looks up random(1, BENCH_KEYS)

# free_port VAR: sets VAR to a port from 29000-29899 that nothing listens on
# yet (bash's /dev/tcp probes it) and that no earlier call handed out.
# Below Linux's ephemeral range (32768 and up), so no client connection of
# this machine can hold it between the probe and the server's bind.
BENCH_PORTS_TAKEN=""
free_port() {
  local p
  while :; do
    p=$((29000 + RANDOM % 900))
    case " $BENCH_PORTS_TAKEN " in *" $p "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    BENCH_PORTS_TAKEN+=" $p"
    printf -v "$1" %s "$p"
    return
  done
}

postmaster_pid() { head -1 "$BGW_TMP/$1/data/postmaster.pid"; }

# Connection limits sized for the largest client count: PL/Proxy holds one
# connection per proxy session and partition; bgw_proxy's pool up to
# bgw_proxy.max_pool_connections (32) per partition; -C leaves exiting
# backends behind for a moment, hence the slack.
start_instances() {
  local maxc=$1 parts=$2 workers=$3
  local pool=$((maxc < 32 ? maxc : 32))
  free_port PART_PORT
  free_port PROXY_PORT
  free_port PGB_PORT
  instance_start part "$PART_PORT" "max_connections = $((maxc * parts + pool * parts + 2 * maxc + 4 * parts + 50))" \
    "shared_buffers = 128MB" "autovacuum = off"
  instance_start proxy "$PROXY_PORT" "shared_preload_libraries = 'bgw_proxy'" \
    "bgw_proxy.workers = $workers" "max_connections = $((2 * maxc + 40))" \
    "shared_buffers = 128MB" "autovacuum = off"
  PART_PM=$(postmaster_pid part)
  PROXY_PM=$(postmaster_pid proxy)
}

# The remote side of partition p of n: its share of the keys and the three
# functions the proxies call.
create_partition() {
  local p=$1 n=$2
  instance_psql part -q -c "CREATE DATABASE part_$p"
  instance_psql part -q -d "part_$p" <<SQL
CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, $BENCH_KEYS) g
    WHERE hashtext(g::text) & ($n - 1) = $p;
VACUUM ANALYZE kv;
CREATE FUNCTION get_value(k int) RETURNS text LANGUAGE sql STABLE
    AS \$\$ SELECT v FROM kv WHERE kv.k = get_value.k \$\$;
CREATE FUNCTION all_parts() RETURNS SETOF text LANGUAGE sql STABLE
    AS \$\$ SELECT current_database()::text \$\$;
CREATE FUNCTION gen(n int, OUT i int, OUT t text) RETURNS SETOF record LANGUAGE sql STABLE
    AS \$\$ SELECT g, repeat('x', 100) FROM generate_series(1, n) g \$\$;
SQL
}

# OPTIONS list for CREATE SERVER: PREFIXk 'dbname=part_k host port [extra]'
server_options() {
  local prefix=$1 port=$2 extra=$3 n=$4 p opts=""
  for ((p = 0; p < n; p++)); do
    opts+="${opts:+, }$prefix$p 'dbname=part_$p host=127.0.0.1 port=$port$extra'"
  done
  echo "$opts"
}

# One proxy database: extension, cluster 'bench' as a SQL/MED server, and the
# three proxy functions (VOLATILE, as PL/Proxy requires).
create_proxy_db() {
  local db=$1 ext=$2 lang=$3 fdw=$4 prefix=$5 port=$6 extra=$7 n=$8
  instance_psql proxy -q -c "CREATE DATABASE $db"
  instance_psql proxy -q -d "$db" <<SQL
CREATE EXTENSION $ext;
CREATE SERVER bench FOREIGN DATA WRAPPER $fdw OPTIONS ($(server_options "$prefix" "$port" "$extra" "$n"));
CREATE USER MAPPING FOR PUBLIC SERVER bench;
CREATE FUNCTION get_value(k int) RETURNS text VOLATILE AS \$\$
    CLUSTER 'bench'; RUN ON hashtext(k::text);
\$\$ LANGUAGE $lang;
CREATE FUNCTION all_parts() RETURNS SETOF text VOLATILE AS \$\$
    CLUSTER 'bench'; RUN ON ALL;
\$\$ LANGUAGE $lang;
CREATE FUNCTION gen(n int, OUT i int, OUT t text) RETURNS SETOF record VOLATILE AS \$\$
    CONNECT 'dbname=part_0 host=127.0.0.1 port=$port$extra';
\$\$ LANGUAGE $lang;
SQL
}

create_databases() {
  local n=$1 p
  for ((p = 0; p < n; p++)); do create_partition "$p" "$n"; done
  create_proxy_db bench_bgw bgw_proxy bgw_proxy bgw_proxy partition_ "$PART_PORT" "" "$n"
  create_proxy_db bench_plproxy plproxy plproxy plproxy p "$PART_PORT" " application_name=plproxy" "$n"
  create_proxy_db bench_pgbouncer plproxy plproxy plproxy p "$PGB_PORT" " application_name=plproxy_pgbouncer" "$n"
}

# pgbouncer as the postgres OS user, daemonized with a pid file, so that it
# is stopped by its own pid. Trust authentication still wants the user in
# auth_file.
start_pgbouncer() {
  local maxc=$1 parts=$2 dir=$BGW_TMP/pgbouncer
  mkdir -p "$dir"
  echo '"postgres" ""' >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PART_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = statement
default_pool_size = 4
max_client_conn = $((maxc * parts + maxc + 100))
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  chown -R postgres: "$dir" 2>/dev/null || true
  as_pg pgbouncer -q -d "$dir/pgbouncer.ini"
  local i
  for ((i = 0; i < 50; i++)); do
    [ -s "$dir/pgbouncer.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PGB_PORT") 2>/dev/null && break
    sleep 0.1
  done
  PGB_PID=$(cat "$dir/pgbouncer.pid")
}

stop_pgbouncer() {
  [ -n "${PGB_PID:-}" ] || return 0
  kill "$PGB_PID" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$PGB_PID" 2>/dev/null || break
    sleep 0.1
  done
  PGB_PID=""
}
