# test/bench/report.sh — tables from $BENCH_RESULTS (sourced by test/bench.sh).
# Medians over the rounds of each configuration; ratios first, absolute
# figures as context. Plain awk (mawk): no asort, so a small insertion sort.

BENCH_AWK_LIB='
function median(list,   n, v, i, j, t) {
  n = split(list, v, " ")
  for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
  if (n == 0) return "NA"
  return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function add(key, val) { if (val != "NA") vals[key] = vals[key] " " val }
function ratio(a, b) { return (a == "NA" || b == "NA" || b + 0 == 0) ? "n/a" : sprintf("%.2fx", a / b) }
function num(v, fmt) { return v == "NA" ? "n/a" : sprintf(fmt, v) }
# per run: tps, latency, CPU microseconds per call of each class, and peaks
{
  k = $1 SUBSEP $2 SUBSEP $3
  seen[k] = 1
  add(k SUBSEP "tps", $5); add(k SUBSEP "lat", $7)
  if ($6 > 0) {
    us = 1000000 / tck / $6
    add(k SUBSEP "proxy", $8 * us); add(k SUBSEP "workers", $9 * us)
    add(k SUBSEP "part", $10 * us); add(k SUBSEP "pgb", $11 * us)
    add(k SUBSEP "total", ($8 + $9 + $10 + $11) * us)
  }
  if ($12 != "-") {
    if (!(k in lo) || $12 > lo[k]) lo[k] = $12
    if (!(k in hi) || $13 > hi[k]) hi[k] = $13
  }
}
function med(k, what) { return median(vals[k SUBSEP what]) }
function conns(k) { return (k in hi) ? (lo[k] == hi[k] ? hi[k] : lo[k] "-" hi[k]) : "-" }
'

# report_rates WORKLOAD TITLE CLIENTS...: speed ratios, tps and connections
report_rates() {
  local w=$1 title=$2; shift 2
  echo
  echo "== $title"
  awk -v tck="$CLK_TCK" -v w="$w" -v clients="$*" "$BENCH_AWK_LIB"'
    END {
      printf "%-8s | %-34s | %-36s | %s\n", "", "speed ratio (>1: bgw_proxy faster)", "tps (median)", "peak conns/partition"
      printf "%-8s | %10s %12s %10s | %8s %8s %9s %8s | %6s %8s %9s\n", "clients",
        "/plproxy", "/pgbouncer", "/direct", "bgw", "plproxy", "pgbouncer", "direct", "bgw", "plproxy", "pgbouncer"
      n = split(clients, cs, " ")
      for (i = 1; i <= n; i++) {
        c = cs[i]; b = med(w SUBSEP c SUBSEP "bgw", "tps")
        p = med(w SUBSEP c SUBSEP "plproxy", "tps"); g = med(w SUBSEP c SUBSEP "pgbouncer", "tps")
        d = med(w SUBSEP c SUBSEP "direct", "tps")
        printf "%-8s | %10s %12s %10s | %8s %8s %9s %8s | %6s %8s %9s\n", c,
          ratio(b, p), ratio(b, g), ratio(b, d), num(b, "%.0f"), num(p, "%.0f"), num(g, "%.0f"), num(d, "%.0f"),
          conns(w SUBSEP c SUBSEP "bgw"), conns(w SUBSEP c SUBSEP "plproxy"), conns(w SUBSEP c SUBSEP "pgbouncer")
      }
    }' "$BENCH_RESULTS"
}

# report_large: seconds per query of the one large result, 1 client
report_large() {
  echo
  echo "== one large result: SELECT count(*), sum(i) FROM gen(250000), 100-char text, CONNECT to part_0, 1 client, $BENCH_LARGE_TX queries per round"
  awk -v tck="$CLK_TCK" "$BENCH_AWK_LIB"'
    END {
      k = "large" SUBSEP 1 SUBSEP
      b = med(k "bgw", "lat"); p = med(k "plproxy", "lat"); g = med(k "pgbouncer", "lat"); d = med(k "direct", "lat")
      printf "%-34s | %s\n", "speed ratio (>1: bgw_proxy faster)", "seconds per query (median)"
      printf "%10s %12s %10s | %8s %8s %9s %8s\n", "/plproxy", "/pgbouncer", "/direct", "bgw", "plproxy", "pgbouncer", "direct"
      printf "%10s %12s %10s | %8s %8s %9s %8s\n", ratio(p, b), ratio(g, b), ratio(d, b),
        num(b / 1000, "%.3f"), num(p / 1000, "%.3f"), num(g / 1000, "%.3f"), num(d / 1000, "%.3f")
    }' "$BENCH_RESULTS"
}

# report_cpu WORKLOAD CLIENTS...: CPU microseconds per call by process class
report_cpu() {
  local w=$1; shift
  awk -v tck="$CLK_TCK" -v w="$w" -v clients="$*" "$BENCH_AWK_LIB"'
    END {
      printf "CPU us per call (median; %d ticks/s)\n", tck
      printf "%-8s %-10s %8s %8s %10s %10s %8s   %s\n", "clients", "variant", "total", "proxy", "bgw_wrkrs", "partition", "pgbouncer", "total vs bgw"
      n = split(clients, cs, " "); split("bgw plproxy pgbouncer direct", vs, " ")
      for (i = 1; i <= n; i++) {
        base = med(w SUBSEP cs[i] SUBSEP "bgw", "total")
        for (j = 1; j <= 4; j++) {
          k = w SUBSEP cs[i] SUBSEP vs[j]
          if (!(k in seen)) continue
          t = med(k, "total")
          printf "%-8s %-10s %8s %8s %10s %10s %8s   %s\n", cs[i], vs[j], num(t, "%.0f"),
            num(med(k, "proxy"), "%.0f"), num(med(k, "workers"), "%.0f"), num(med(k, "part"), "%.0f"),
            num(med(k, "pgb"), "%.0f"), ratio(t, base)
        }
      }
    }' "$BENCH_RESULTS"
}

# report_shares WORKLOAD CLIENTS: each worker's share of the bgw_proxy calls
report_shares() {
  local w=$1 c=$2
  echo
  echo "bgw_proxy workers' share of calls ($w, $c clients, all rounds; requests_served deltas):"
  awk -v w="$w" -v c="$c" '$1 == w && $2 == c { n[$4] += $5; all += $5 }
    END { for (k in n) printf "  worker %s: %5.1f%%  (%d calls)\n", k, all ? 100 * n[k] / all : 0, n[k] }' "$BENCH_SERVED" | sort
}
