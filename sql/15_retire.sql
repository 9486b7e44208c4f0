-- When pooled connections are retired: the configuration behind them
-- changed, their database is being dropped, or the remote closed them.
-- Connections are told apart by application_name in pg_stat_activity
-- (the partitions are databases of this same server).
CREATE FUNCTION conns_named(app text) RETURNS bigint LANGUAGE sql
    AS $$ SELECT count(*) FROM pg_stat_activity WHERE application_name = app $$;
\set ECHO none
\i sql/include/wait_for.sql
\set ECHO all

-- a function-defined cluster moves its partition: once the new version is
-- in use, the connection to the old place is closed (not left to idle_timeout)
INSERT INTO plproxy.clusters VALUES ('moving', 1);
INSERT INTO plproxy.partitions VALUES ('moving', 0, 'dbname=bgw_part0 application_name=moving_a');
CREATE FUNCTION moving() RETURNS int AS $$ CLUSTER 'moving'; RUN ON 0; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT moving();
SELECT conns_named('moving_a') AS conns_a;
UPDATE plproxy.partitions SET connstr = 'dbname=bgw_part1 application_name=moving_b' WHERE name = 'moving';
UPDATE plproxy.clusters SET version = 2 WHERE name = 'moving';
SELECT moving();
SELECT wait_for($$SELECT conns_named('moving_a') = 0$$) AS a_closed, conns_named('moving_b') AS conns_b;

-- a version bump with the same partitions: the connection is replaced too
-- (a DBA bumps the version when something behind the names changed)
-- (the remote session ends a moment after the worker closes it: wait for it)
CREATE TEMP TABLE old_conn AS SELECT pid FROM pg_stat_activity WHERE application_name = 'moving_b';
UPDATE plproxy.clusters SET version = 3 WHERE name = 'moving';
SELECT moving();
SELECT wait_for($$SELECT NOT EXISTS (SELECT FROM pg_stat_activity JOIN old_conn USING (pid))$$) AS old_gone,
       conns_named('moving_b') AS conns_b;
-- no change, no reconnect
SELECT pid AS kept_pid FROM pg_stat_activity WHERE application_name = 'moving_b' \gset
SELECT moving(), moving();
SELECT pid = :kept_pid AS same_connection FROM pg_stat_activity WHERE application_name = 'moving_b';

-- an altered SQL/MED server: the same
CREATE SERVER altered FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=bgw_part2 application_name=altered_a');
CREATE FUNCTION altered() RETURNS int AS $$ CLUSTER 'altered'; RUN ON 0; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT altered();
ALTER SERVER altered OPTIONS (SET p0 'dbname=bgw_part3 application_name=altered_b');
SELECT altered();
SELECT wait_for($$SELECT conns_named('altered_a') = 0$$) AS a_closed, conns_named('altered_b') AS conns_b;

-- an idle pooled connection whose remote session was killed is not handed
-- out: the next call gets a working connection
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'altered_b';
SELECT altered();
SELECT altered();

-- DROP DATABASE of a partition: the workers' idle connections to it are
-- closed first, so it does not fail with "being accessed by other users"
CREATE DATABASE bgw_dropped;
\c bgw_dropped
CREATE FUNCTION whoami() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;
\c contrib_regression
CREATE FUNCTION in_dropped() RETURNS int AS $$ CONNECT 'dbname=bgw_dropped application_name=dropped'; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT in_dropped();
SELECT conns_named('dropped') AS pooled;
-- a drop that cannot run (not the owner, in a transaction block) leaves
-- the pool alone
CREATE ROLE bgw_not_owner;
SET ROLE bgw_not_owner;
DROP DATABASE bgw_dropped;
RESET ROLE;
BEGIN;
DROP DATABASE bgw_dropped;
ROLLBACK;
-- the next call passes through the worker after any retirement it was told
-- of: it finds its connection still there (no new connect)
SELECT in_dropped();
SELECT connects AS connects_still_one, conns_open FROM pg_stat_bgw_proxy
WHERE conninfo LIKE '%application_name=dropped%';
SELECT conns_named('dropped') AS still_pooled;
DROP DATABASE bgw_dropped;
-- afterwards: a clear error, nothing stuck
SELECT in_dropped();
-- (a failed call's error reaches the caller just before its worker counts
-- it as ended)
SELECT wait_for($$SELECT sum(requests_in_flight) = 0 FROM pg_stat_bgw_proxy_workers$$) AS nothing_in_flight;
