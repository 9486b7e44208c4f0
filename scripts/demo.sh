#!/usr/bin/env bash
# A throwaway local cluster showing bgw_proxy's main job: a proxy function
# on one database calls the real function on another through the shared
# worker pool. Starts an instance in a temp dir, prints the results and the
# worker view, and removes everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib/instance.sh
trap 'instance_stop_all; rm -rf "$BGW_TMP"' EXIT

port=$((58000 + RANDOM % 900))
instance_start demo "$port" "shared_preload_libraries = 'bgw_proxy'" "bgw_proxy.workers = 2"

instance_psql demo -q -c "CREATE DATABASE userdb" -c "CREATE DATABASE app"
instance_psql demo -q -d userdb <<'SQL'
CREATE TABLE users (username text PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO users VALUES ('alice', 120), ('bob', 75), ('carol', 300);
CREATE FUNCTION get_balance(i_username text) RETURNS bigint LANGUAGE sql
    AS $$ SELECT balance FROM users WHERE username = i_username $$;
CREATE FUNCTION rich_users(min_balance bigint, OUT username text, OUT balance bigint)
    RETURNS SETOF record LANGUAGE sql
    AS $$ SELECT username, balance FROM users WHERE balance >= min_balance ORDER BY 1 $$;
SQL

echo "== proxy functions in database app, the real ones in database userdb"
instance_psql demo -d app <<'SQL'
CREATE EXTENSION bgw_proxy;
CREATE FUNCTION get_balance(i_username text) RETURNS bigint AS $$
    CONNECT 'dbname=userdb';
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION rich_users(min_balance bigint, OUT username text, OUT balance bigint)
    RETURNS SETOF record AS $$
    CONNECT 'dbname=userdb';
$$ LANGUAGE bgw_proxy;
\echo
\echo '-- get_balance(''bob'') runs on userdb through a bgw_proxy worker'
SELECT get_balance('bob');
SELECT * FROM rich_users(100);
\echo '-- the workers and their pooled remote connections'
SELECT worker, state, conns_open, conns_idle, requests_served, connects
  FROM pg_stat_bgw_proxy_workers ORDER BY worker;
\echo '-- per pool: where the calls went and what came back'
SELECT database, conninfo, role, conns_idle, calls, errors, rows, connects
  FROM pg_stat_bgw_proxy;
SQL
echo "== demo done; the throwaway cluster is removed"
