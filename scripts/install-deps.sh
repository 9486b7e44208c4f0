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
echo "install-deps: ok"
