#!/usr/bin/env bash
# Installs everything bgw_proxy needs to build and test on Debian bookworm.
# Safe to run again: apt-get skips what is already there.
set -euo pipefail

pkgs=(
  postgresql-15                 # the server the tests start (already on the image)
  postgresql-server-dev-15      # PGXS and server headers
  postgresql-contrib            # pgbench for the benchmark and soak tests
  libpq-dev                     # libpq, linked into the extension
  libboost-dev                  # Boost.Lockfree (header only)
  libipc-run-perl               # PostgreSQL::Test::Cluster for TAP tests
  postgresql-15-plproxy         # the real PL/Proxy 2.10, to test side by side and the conflict check
  pgbouncer                     # the pooler of the "PL/Proxy + pgbouncer" benchmark variant (started by test/bench.sh itself)
  clang libclang-rt-dev         # clang++ and its libFuzzer/ASan/UBSan runtimes, for make fuzz
  g++ make
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The pgbouncer package ships a system service on port 6432. The benchmark
# starts its own pgbouncer on a free port; the service is never wanted here.
if [ "$(id -u)" -eq 0 ] && [ -x /etc/init.d/pgbouncer ]; then
  /etc/init.d/pgbouncer status >/dev/null 2>&1 && /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
  update-rc.d pgbouncer disable >/dev/null 2>&1 || true
fi
echo "install-deps: ok"
