# test/bench/measure.sh — one pgbench run and what is measured around it
# (sourced by test/bench.sh). Each run appends one line to $BENCH_RESULTS:
#
#   workload clients variant round tps transactions latency_ms \
#     ticks_proxy ticks_workers ticks_partition ticks_pgbouncer conns_lo conns_hi
#
# ticks_* are CPU clock ticks (utime+stime) spent by each process class
# during the run; conns_lo/hi the smallest and largest, over the partitions,
# of the peak number of connections the variant held to a partition.

CLK_TCK=$(getconf CLK_TCK)

# The pgbench scripts, one per workload, readable by the postgres OS user.
write_scripts() {
  local d=$BGW_TMP/scripts
  mkdir -p "$d"
  printf '\\set k random(1, %d)\nSELECT get_value(:k);\n' "$BENCH_KEYS" >"$d/hashed.sql"
  cp "$d/hashed.sql" "$d/connect.sql"
  printf 'SELECT count(*) FROM all_parts();\n' >"$d/all.sql"
  printf 'SELECT count(*), sum(i) FROM gen(250000);\n' >"$d/large.sql"
  chmod -R a+rX "$d"
}

# CPU ticks of each process class now: "proxy workers partition pgbouncer".
# An instance's total is its postmaster's own and reaped children's time
# (cutime/cstime: backends that exited, which is most of them with -C) plus
# the time of its live children. The bgw_proxy workers are children of the
# proxy postmaster and are counted apart. Fields after the ")" of the
# command name: 1 state, 2 ppid, 12 utime, 13 stime, 14 cutime, 15 cstime.
cpu_snapshot() {
  # processes come and go while /proc is read (-C): a vanished one is no error
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pp="$PROXY_PM" -v qp="$PART_PM" \
    -v pgb="${PGB_PID:-0}" -v workers=" $WORKER_PIDS " '
    {
      pid = $1
      sub(/^.*\) /, "")
      own = $12 + $13; all = own + $14 + $15
      if (index(workers, " " pid " ")) w += own
      else if (pid == pp || $2 == pp) proxy += all
      if (pid == qp || $2 == qp) part += all
      if (pid == pgb) bouncer += own
    }
    END { printf "%d %d %d %d\n", proxy, w, part, bouncer }'
}

refresh_worker_pids() {
  WORKER_PIDS=$(instance_psql proxy -Atq -d postgres -c \
    "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'bgw_proxy worker'")
}

# "worker requests_served" lines, one per worker
worker_served() {
  instance_psql proxy -Atq -F ' ' -d bench_bgw -c \
    "SELECT worker, requests_served FROM pg_stat_bgw_proxy_workers ORDER BY worker"
}

# The connection sampler: one psql session on the partition instance that
# counts, every 0.2 s, the connections per partition database and
# application_name of the three proxies. It runs during every run, so its
# small cost on the partition instance is the same for every variant. It
# stops by itself when its flag file goes away.
sampler_start() {
  SAMPLER_OUT=$BGW_TMP/sampler.out
  SAMPLER_FLAG=$BGW_TMP/sampler.on
  : >"$SAMPLER_OUT"
  chmod 666 "$SAMPLER_OUT"
  touch "$SAMPLER_FLAG"
  # the first row marks the sample, so that even an empty one is seen
  local q="SELECT 'sample', '-', 0 UNION ALL
           SELECT datname, application_name, count(*) FROM pg_stat_activity
           WHERE application_name IN ('bgw_proxy', 'plproxy', 'plproxy_pgbouncer')
           GROUP BY 1, 2;"
  { while [ -e "$SAMPLER_FLAG" ]; do echo "$q"; sleep 0.2; done; } |
    instance_psql part -Atq -F ' ' -d postgres >"$SAMPLER_OUT" 2>/dev/null &
  SAMPLER_PID=$!
  # the session is up once the first sample is in (or after 2 s)
  local i
  for ((i = 0; i < 20; i++)); do
    [ -s "$SAMPLER_OUT" ] && break
    sleep 0.1
  done
}

sampler_stop() {
  [ -n "${SAMPLER_PID:-}" ] || return 0
  rm -f "$SAMPLER_FLAG"
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
}

# "lo hi": over all n partitions (a partition never seen counts 0), the
# smallest and largest peak of connections with this application_name.
sampled_peak() {
  local app=$1 n=$2
  awk -v app="$app" -v n="$n" '
    $2 == app && $3 > peak[$1] { peak[$1] = $3 }
    END {
      lo = -1; hi = 0
      for (p = 0; p < n; p++) {
        v = ("part_" p) in peak ? peak["part_" p] : 0
        if (lo < 0 || v < lo) lo = v
        if (v > hi) hi = v
      }
      print lo, hi
    }' "$SAMPLER_OUT"
}

variant_app() {
  case $1 in
    bgw) echo bgw_proxy ;;
    plproxy) echo plproxy ;;
    pgbouncer) echo plproxy_pgbouncer ;;
    *) echo - ;;
  esac
}

# bgw_proxy keeps idle pooled connections for bgw_proxy.idle_timeout (300 s),
# so a run would also count the pool a previous, busier run left. Before each
# configuration the pool is emptied: idle_timeout 1 s until no connection is
# open, then the default again.
bgw_pool_drain() {
  instance_psql proxy -q -d postgres -c "ALTER SYSTEM SET bgw_proxy.idle_timeout = 1" -c "SELECT pg_reload_conf()" >/dev/null
  local i open
  for ((i = 0; i < 100; i++)); do
    open=$(instance_psql proxy -Atq -d bench_bgw -c "SELECT coalesce(sum(conns_open), 0) FROM pg_stat_bgw_proxy_workers")
    [ "$open" = 0 ] && break
    sleep 0.1
  done
  [ "$open" = 0 ] || echo "bench: bgw_proxy pool still holds $open connections after 10 s" >&2
  instance_psql proxy -q -d postgres -c "ALTER SYSTEM RESET bgw_proxy.idle_timeout" -c "SELECT pg_reload_conf()" >/dev/null
}

# pgbench for one run: sets RUN_OUT to its output. Persistent workloads run
# for BENCH_SECONDS; the large result a fixed number of transactions, 1
# client. Bounded by timeout in any case.
run_pgbench() {
  local workload=$1 c=$2 variant=$3
  local port=$PROXY_PORT db script=$BGW_TMP/scripts/$workload.sql
  case $variant in
    bgw) db=bench_bgw ;;
    plproxy) db=bench_plproxy ;;
    pgbouncer) db=bench_pgbouncer ;;
    direct) db=part_0; port=$PART_PORT ;;
  esac
  local flags=(-c "$c" -j "$((c < 2 ? c : 2))")
  local limit=$((BENCH_SECONDS * 3 + 30))
  case $workload in
    connect) flags+=(-C -T "$BENCH_SECONDS") ;;
    large) flags=(-c 1 -j 1 -t "$BENCH_LARGE_TX"); limit=600 ;;
    *) flags+=(-T "$BENCH_SECONDS") ;;
  esac
  RUN_OUT=$(as_pg timeout -k 5 "$limit" "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres \
    -f "$script" "${flags[@]}" "$db" 2>&1) || true
  if ! grep -q '^tps = ' <<<"$RUN_OUT" || grep -q 'aborted\|error' <<<"$RUN_OUT"; then
    echo "bench: $workload/$variant/$c clients: pgbench reported a problem:" >&2
    { grep -i 'error\|abort\|fatal' <<<"$RUN_OUT" || tail -3 <<<"$RUN_OUT"; } | head -3 >&2 || true
  fi
}

# One measured run of a variant; appends its line to $BENCH_RESULTS. For
# bgw_proxy, also each worker's requests_served delta to $BENCH_SERVED.
measure_run() {
  local workload=$1 c=$2 variant=$3 round=$4
  local served_before cpu_before cpu_after
  refresh_worker_pids
  [ "$variant" = bgw ] && served_before=$(worker_served)
  sampler_start
  cpu_before=$(cpu_snapshot)
  run_pgbench "$workload" "$c" "$variant"
  sleep 0.3 # let the run's backends finish exiting, so their time is counted
  cpu_after=$(cpu_snapshot)
  sampler_stop
  if [ "$variant" = bgw ]; then
    join <(echo "$served_before") <(worker_served) |
      awk -v w="$workload" -v c="$c" -v r="$round" '{ print w, c, r, $1, $3 - $2 }' >>"$BENCH_SERVED"
  fi
  local tps tx lat peak
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$RUN_OUT" | head -1)
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$RUN_OUT")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$RUN_OUT")
  peak=$(sampled_peak "$(variant_app "$variant")" "$BENCH_PARTS")
  [ "$variant" = direct ] && peak="- -"
  echo "$workload $c $variant $round ${tps:-NA} ${tx:-0} ${lat:-NA} $cpu_before $cpu_after $peak" |
    awk '{ print $1, $2, $3, $4, $5, $6, $7, $12 - $8, $13 - $9, $14 - $10, $15 - $11, $16, $17 }' >>"$BENCH_RESULTS"
}
