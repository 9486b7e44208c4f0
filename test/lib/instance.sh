# test/lib/instance.sh — throwaway PostgreSQL instances for tests, the demo
# and the benchmark. Source it; it defines:
#
#   instance_start NAME PORT [extra postgresql.conf lines...]
#       initdb + start under $BGW_TMP/NAME as the postgres OS user, on
#       127.0.0.1:PORT with its socket in $BGW_TMP/NAME. The server's
#       environment has PGHOST/PGPORT pointing at itself, so bgw_proxy
#       workers' libpq connections without host/port land on this instance.
#   instance_stop NAME        stop it (by data directory, never by name)
#   instance_psql NAME ...    psql as the postgres role on it
#   instance_stop_all         stop every instance this shell started
#   free_port BASE SPAN       a port in [BASE, BASE + SPAN) nothing listens on
#
# PostgreSQL refuses to run as root, hence runuser.

: "${BGW_TMP:=$(mktemp -d /tmp/bgw_proxy.XXXXXX)}"
chmod 755 "$BGW_TMP"
PG_BIN=$(pg_config --bindir)
BGW_INSTANCES=()

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

instance_start() {
  local name=$1 port=$2; shift 2
  local dir=$BGW_TMP/$name
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "fsync = off"
    echo "log_line_prefix = '%m [%p] %b '"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  as_pg env PGHOST="$dir" PGPORT="$port" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
    cat "$dir/server.log" >&2; return 1; }
  BGW_INSTANCES+=("$name")
}

instance_stop() {
  local dir=$BGW_TMP/$1
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1
  return 0
}

instance_stop_all() {
  local n
  for n in "${BGW_INSTANCES[@]}"; do instance_stop "$n"; done
}

free_port() {
  local base=$1 span=$2 port i
  for i in $(seq 50); do
    port=$((base + RANDOM % span))
    # bash's /dev/tcp connect fails when nothing listens there
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

instance_socket() { echo "$BGW_TMP/$1"; }

instance_psql() {
  local name=$1; shift
  local port; port=$(sed -n 's/^port = //p' "$BGW_TMP/$name/data/postgresql.conf" | tail -1)
  as_pg "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$BGW_TMP/$name" -p "$port" -U postgres "$@"
}
