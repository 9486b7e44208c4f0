#!/usr/bin/env bash
# bgw_proxy benchmark (make bench): bgw_proxy against the real PL/Proxy,
# PL/Proxy behind pgbouncer, and a client calling the partition directly.
#
# Topology (test/bench/topology.sh): a partition instance with BENCH_PARTS
# databases, a proxy instance preloading bgw_proxy with one proxy database
# per variant, and a pgbouncer in statement mode in front of the partitions.
# All on 127.0.0.1, on free ports, in a temporary directory; everything is
# stopped at exit.
#
# Workloads (pgbench scripts, test/bench/measure.sh):
#   hashed   SELECT get_value(:k): CLUSTER + RUN ON hashtext(k::text), a
#            primary-key lookup on the partition
#   all      SELECT count(*) FROM all_parts(): RUN ON ALL, one row per partition
#   connect  hashed, with pgbench -C (a new session per call)
#   large    SELECT count(*), sum(i) FROM gen(250000): CONNECT to one
#            partition, 250000 rows of (int, 100-char text); 1 client
# Variants: bgw (bgw_proxy), plproxy, pgbouncer (PL/Proxy via pgbouncer),
# direct (the remote function called on part_0 itself; none for RUN ON ALL).
#
# Each configuration (workload x clients) runs BENCH_REPEAT rounds, the
# variants interleaved within a round (in a rotating order), and medians are
# reported: speed ratios first, then tps, the peak connections per partition
# each proxy held (sampled every 0.2 s), and CPU microseconds per call of
# each process class (from /proc/<pid>/stat).
#
#   BENCH_SECONDS=5   seconds per run
#   BENCH_REPEAT=3    rounds per configuration
#   BENCH_CLIENTS="1 8 32"
#   BENCH_PARTS=4     partitions (a power of 2)
#   BENCH_WORKERS=2   bgw_proxy.workers
#   BENCH_LARGE_TX=3  queries per round of the large result
#   BENCH_WORKLOADS="hashed all connect large"
#
# The default run takes about 10 minutes on 2 cores. The large setup:
#   BENCH_PARTS=16 BENCH_CLIENTS=64 make bench
# A quick check: BENCH_SECONDS=1 BENCH_REPEAT=1 BENCH_CLIENTS=1 make bench
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_CLIENTS=${BENCH_CLIENTS:-"1 8 32"}
BENCH_PARTS=${BENCH_PARTS:-4}
BENCH_WORKERS=${BENCH_WORKERS:-2}
BENCH_LARGE_TX=${BENCH_LARGE_TX:-3}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-"hashed all connect large"}

if (((BENCH_PARTS & (BENCH_PARTS - 1)) != 0)); then
  echo "bench: BENCH_PARTS must be a power of 2 (PL/Proxy's hash mapping)" >&2
  exit 1
fi
for tool in pgbouncer pgbench; do
  command -v "$tool" >/dev/null || [ -x "$(pg_config --bindir)/$tool" ] || {
    echo "bench: $tool not found; run scripts/install-deps.sh" >&2
    exit 1
  }
done

source test/lib/instance.sh
source test/bench/topology.sh
source test/bench/measure.sh
source test/bench/report.sh

cleanup() {
  sampler_stop
  stop_pgbouncer
  instance_stop_all
  rm -rf "$BGW_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BENCH_RESULTS=$BGW_TMP/results.txt
BENCH_SERVED=$BGW_TMP/served.txt
: >"$BENCH_RESULTS"
: >"$BENCH_SERVED"
max_clients=$(tr ' ' '\n' <<<"$BENCH_CLIENTS" | sort -n | tail -1)

start_instances "$max_clients" "$BENCH_PARTS" "$BENCH_WORKERS"
start_pgbouncer "$max_clients" "$BENCH_PARTS"
create_databases "$BENCH_PARTS"
write_scripts

# Every variant answers before anything is timed (and connections, caches
# and PL/Proxy's cluster configuration are warm).
for db in bench_bgw bench_plproxy bench_pgbouncer; do
  instance_psql proxy -Atq -d "$db" -c "SELECT get_value(1)" -c "SELECT count(*) FROM all_parts()" \
    -c "SELECT count(*) FROM gen(10)" >/dev/null
done

variants_of() { # workload
  case $1 in
    all) echo "bgw plproxy pgbouncer" ;;
    *) echo "bgw plproxy pgbouncer direct" ;;
  esac
}

# rotate "a b c d" by r places, so no variant always runs first in a round
rotate() {
  local r=$1; shift
  local v=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s ' "${v[$(((i + r) % n))]}"; done
}

run_configuration() { # workload clients
  local w=$1 c=$2 r v
  bgw_pool_drain
  for ((r = 1; r <= BENCH_REPEAT; r++)); do
    for v in $(rotate "$r" $(variants_of "$w")); do
      measure_run "$w" "$c" "$v" "$r"
    done
  done
}

started=$SECONDS
for w in $BENCH_WORKLOADS; do
  if [ "$w" = large ]; then
    echo "bench: large, 1 client ..." >&2
    run_configuration large 1
    continue
  fi
  for c in $BENCH_CLIENTS; do
    echo "bench: $w, $c clients ..." >&2
    run_configuration "$w" "$c"
  done
done

echo
echo "bgw_proxy benchmark: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), PostgreSQL $(pg_config --version | awk '{print $2}'),"
echo "bgw_proxy.workers = $BENCH_WORKERS, $BENCH_PARTS partitions, pgbouncer statement mode pool 4/partition;"
echo "median of $BENCH_REPEAT interleaved rounds of ${BENCH_SECONDS}s per configuration; took $((SECONDS - started)) s"
for w in $BENCH_WORKLOADS; do
  case $w in
    hashed) report_rates hashed "hashed read: SELECT get_value(:k), RUN ON hashtext(k::text)" $BENCH_CLIENTS ;;
    all) report_rates all "RUN ON ALL: SELECT count(*) FROM all_parts(), one row per partition" $BENCH_CLIENTS ;;
    connect) report_rates connect "new session per call: the hashed read with pgbench -C" $BENCH_CLIENTS ;;
    large) report_large ;;
  esac
  if [ "$w" = large ]; then report_cpu large 1; else report_cpu "$w" $BENCH_CLIENTS; fi
done
case " $BENCH_WORKLOADS " in
  *" hashed "*) report_shares hashed "$max_clients" ;;
esac
