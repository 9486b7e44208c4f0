-- pg_stat_bgw_proxy: each column on controlled traffic, resets, privileges,
-- the queue view, wait events and the extension's upgrade path.
-- Each partition has a secret in its connection string, spelled another
-- way, and an application_name of its own: its pool opens its own
-- connections, whatever earlier tests left in the workers.
CREATE SERVER mon FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part0 application_name=mon0 sslpassword=secret0',
    p1 'dbname=bgw_part1 application_name=mon1 password=secret1',
    p2 'postgresql://postgres:secret2@/bgw_part2?application_name=mon2',
    p3 'postgresql:///bgw_part3?password=secret3&application_name=mon3');
CREATE FUNCTION mon_call(p int) RETURNS int
    AS $$ CLUSTER 'mon'; RUN ON p; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION mon_div(p int, d int) RETURNS int
    AS $$ CLUSTER 'mon'; RUN ON p; SELECT 100 / d; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION mon_rows(p int, n int) RETURNS SETOF int
    AS $$ CLUSTER 'mon'; RUN ON p; SELECT generate_series(1, n); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION mon_all() RETURNS SETOF int
    AS $$ CLUSTER 'mon'; RUN ON ALL; SELECT whoami(); $$ LANGUAGE bgw_proxy;

\set ECHO none
\i sql/include/wait_for.sql
\set ECHO all

-- no row before the first call
SELECT count(*) AS rows_before FROM pg_stat_bgw_proxy WHERE cluster = 'mon';

-- five calls to partition 2, one to partition 0
SELECT mon_call(2), mon_call(2), mon_call(2), mon_call(2), mon_call(2), mon_call(0);
SELECT database, cluster, partition, role, conninfo, calls, errors, cancels, rows,
       bytes_received, bytes_sent > 0 AND bytes_sent % calls = 0 AS bytes_sent_per_call,
       total_time > 0 AS timed, mean_time = total_time / calls AS mean_is_total_over_calls,
       conns_open, conns_idle, conns_active, conns_connecting, conns_cancelling,
       calls_waiting, longest_wait, connects, disconnects, last_error, last_error_at,
       stats_reset <= now() AS reset_in_past
FROM pg_stat_bgw_proxy WHERE cluster = 'mon' ORDER BY partition;

-- rows and bytes received follow what came back (int results come in
-- binary, 4 bytes each)
SELECT count(*) FROM mon_rows(0, 3);
SELECT count(*) FROM mon_rows(0, 1000);
SELECT calls, rows, bytes_received FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND partition = 0;

-- a remote error: counted, its text and time kept; the others unchanged
SELECT mon_div(2, 0);
SELECT partition, calls, errors, last_error, last_error_at > now() - interval '1 minute' AS recent
FROM pg_stat_bgw_proxy WHERE cluster = 'mon' ORDER BY partition;

-- passwords never show, whatever the spelling of the connection string
SELECT mon_call(1), mon_call(3);
SELECT partition, conninfo, conninfo LIKE '%secret%' AS leaks
FROM pg_stat_bgw_proxy WHERE cluster = 'mon' ORDER BY partition;
-- not even in the function behind the view
SELECT count(*) AS leaking_rows FROM pg_stat_bgw_proxy_1_1() WHERE conninfo LIKE '%secret%';

-- RUN ON ALL counts one call on every partition
SELECT bgw_proxy_stat_reset('mon');
SELECT count(*) FROM mon_all();
SELECT partition, calls, errors, last_error, stats_reset > now() - interval '1 minute' AS just_reset
FROM pg_stat_bgw_proxy WHERE cluster = 'mon' ORDER BY partition;

-- a per-cluster reset leaves the other clusters and the gauges alone
SELECT sum(calls) AS sq_calls FROM pg_stat_bgw_proxy WHERE cluster = 'sq' \gset
SELECT :sq_calls > 0 AS sq_has_calls;
SELECT bgw_proxy_stat_reset('mon');
SELECT sum(calls) AS mon_calls, sum(errors) AS mon_errors, sum(conns_open) AS mon_conns_open
FROM pg_stat_bgw_proxy WHERE cluster = 'mon';
SELECT sum(calls) = :sq_calls AS sq_untouched FROM pg_stat_bgw_proxy WHERE cluster = 'sq';
-- the full reset clears everything, the queue's counters too
SELECT bgw_proxy_stat_reset();
SELECT sum(calls) AS calls, sum(errors) AS errors, count(last_error) AS last_errors FROM pg_stat_bgw_proxy;
SELECT submitted, completed, queue_full_waits, slot_waits, depth, in_flight,
       stats_reset > now() - interval '1 minute' AS just_reset
FROM pg_stat_bgw_proxy_queue;
-- a call through a worker passes the queue; a direct call (one target, an
-- idle connection parked for backends) does not
SET bgw_proxy.direct_calls = off;
SELECT mon_call(2);
SELECT submitted, completed, depth, in_flight FROM pg_stat_bgw_proxy_queue;
RESET bgw_proxy.direct_calls;
SELECT mon_call(2);
SELECT submitted, completed, depth, in_flight FROM pg_stat_bgw_proxy_queue;

-- privileges: a plain role sees its own pools only, and cannot reset
CREATE ROLE bgw_mon_user LOGIN;
GRANT USAGE ON FOREIGN SERVER mon TO bgw_mon_user;
SET ROLE bgw_mon_user;
SELECT mon_call(3);
SELECT role, partition, calls, conninfo FROM pg_stat_bgw_proxy;
SELECT bgw_proxy_stat_reset();
SELECT bgw_proxy_stat_reset('mon');
RESET ROLE;
-- pg_read_all_stats sees every row (still no password)
GRANT pg_read_all_stats TO bgw_mon_user;
SET ROLE bgw_mon_user;
SELECT count(DISTINCT role) > 1 AS sees_other_roles, count(*) FILTER (WHERE conninfo LIKE '%secret%') AS leaks
FROM pg_stat_bgw_proxy;
RESET ROLE;
SELECT role, calls FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND partition = 3 ORDER BY role;

-- a call the caller gives up on counts in cancels (and calls), not errors
CREATE FUNCTION mon_sleep(p int, s float8) RETURNS void
    AS $$ CLUSTER 'mon'; RUN ON p; SELECT pg_sleep(s); $$ LANGUAGE bgw_proxy;
SELECT bgw_proxy_stat_reset('mon');
-- through a worker
SET bgw_proxy.direct_calls = off;
SET statement_timeout = '300ms';
SELECT mon_sleep(1, 30);
RESET statement_timeout;
-- the cancelled statement is drained and its connection idle again (the
-- worker may not have seen the cancel yet when the caller's error returns)
SELECT wait_for($$SELECT cancels = 1 AND conns_open = 1 AND conns_idle = 1 FROM pg_stat_bgw_proxy
                  WHERE cluster = 'mon' AND partition = 1 AND role = 'postgres'$$)
    AS cancel_resolved;
SELECT partition, calls, errors, cancels FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND role = 'postgres' ORDER BY partition;
-- the next call on that partition works on the same, drained connection
SELECT mon_call(1);
SELECT calls, cancels, connects, conns_open FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND partition = 1 AND role = 'postgres';
RESET bgw_proxy.direct_calls;
-- a direct call (the same statement's first call in a session goes through
-- a worker): the backend gives the connection back mid-statement, its
-- worker cancels the statement, reads the rest and parks it again
SELECT mon_call(1);
SELECT mon_sleep(1, 0);
SELECT submitted AS submitted_before FROM pg_stat_bgw_proxy_queue \gset
SET statement_timeout = '300ms';
SELECT mon_sleep(1, 30);
RESET statement_timeout;
SELECT submitted = :submitted_before AS went_direct FROM pg_stat_bgw_proxy_queue;
SELECT wait_for($$SELECT cancels = 2 AND conns_open = 1 AND conns_idle = 1 AND disconnects = 0
                  FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND partition = 1 AND role = 'postgres'$$)
    AS direct_cancel_resolved;
SELECT wait_for($$SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'bgw_part1' AND state = 'active' AND query LIKE '%pg_sleep%'$$)
    AS remote_statement_ended;
SELECT mon_call(1);
SELECT calls, cancels, connects, conns_open FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND partition = 1 AND role = 'postgres';

-- a call with several targets runs direct too, once every partition has a
-- parked connection: the statement goes to all, the answers are read in
-- partition order
CREATE FUNCTION mon_all_div(d int) RETURNS SETOF int
    AS $$ CLUSTER 'mon'; RUN ON ALL; SELECT 100 / (whoami() - d); $$ LANGUAGE bgw_proxy;
SELECT * FROM mon_all_div(9);
SELECT bgw_proxy_stat_reset('mon');
SELECT submitted AS submitted_before FROM pg_stat_bgw_proxy_queue \gset
SELECT * FROM mon_all_div(10);
SELECT submitted = :submitted_before AS went_direct FROM pg_stat_bgw_proxy_queue;
SELECT partition, calls, errors, cancels, rows FROM pg_stat_bgw_proxy
WHERE cluster = 'mon' AND role = 'postgres' ORDER BY partition;
-- partition 2 fails: the call fails with its error; partition 3's answer,
-- not read yet, counts as cancelled (the backend counts its direct calls
-- itself, before the error returns)
SELECT * FROM mon_all_div(2);
SELECT submitted = :submitted_before AS went_direct FROM pg_stat_bgw_proxy_queue;
SELECT partition, calls, errors, cancels, last_error FROM pg_stat_bgw_proxy
WHERE cluster = 'mon' AND role = 'postgres' ORDER BY partition;
-- ... and its worker drains it and parks it again: a call goes direct once
-- more, on the same connections (none was closed)
CREATE FUNCTION mon_all_went_direct() RETURNS bool LANGUAGE plpgsql AS $$
DECLARE before bigint; got int[];
BEGIN
    SELECT submitted INTO before FROM pg_stat_bgw_proxy_queue;
    got := ARRAY(SELECT mon_all_div(-1));
    IF got IS DISTINCT FROM ARRAY[100, 50, 33, 25] THEN
        RAISE EXCEPTION 'mon_all_div(-1) returned %', got;
    END IF;
    RETURN (SELECT submitted FROM pg_stat_bgw_proxy_queue) = before;
END $$;
SELECT wait_for('SELECT mon_all_went_direct()') AS direct_again;
SELECT sum(disconnects) AS disconnects FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND role = 'postgres';

-- cancelled in the middle (statement_timeout while partition 1 sleeps):
-- every partition's connection is given back to be drained, none closed,
-- and the remote statement ends
CREATE FUNCTION mon_all_nap(s float8) RETURNS SETOF int
    AS $$ CLUSTER 'mon'; RUN ON ALL;
          SELECT whoami() FROM pg_sleep(CASE WHEN whoami() = 1 THEN s ELSE 0 END); $$ LANGUAGE bgw_proxy;
SELECT * FROM mon_all_nap(0);
SELECT submitted AS submitted_before FROM pg_stat_bgw_proxy_queue \gset
SET statement_timeout = '300ms';
SELECT * FROM mon_all_nap(30);
RESET statement_timeout;
SELECT submitted = :submitted_before AS went_direct FROM pg_stat_bgw_proxy_queue;
SELECT wait_for($$SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'bgw_part1' AND state = 'active' AND query LIKE '%pg_sleep%'$$)
    AS remote_statement_ended;
SELECT wait_for('SELECT mon_all_went_direct()') AS direct_again;
SELECT sum(disconnects) AS disconnects FROM pg_stat_bgw_proxy WHERE cluster = 'mon' AND role = 'postgres';

-- connects and disconnects: a connection past its lifetime is closed when idle
CREATE SERVER mon_short FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part0 application_name=mon_short', connection_lifetime '5');
CREATE FUNCTION mon_short() RETURNS int
    AS $$ CLUSTER 'mon_short'; RUN ON 0; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT mon_short();
SELECT connects, disconnects, conns_open FROM pg_stat_bgw_proxy WHERE cluster = 'mon_short';
SELECT wait_for($$SELECT disconnects > 0 AND conns_open = 0 FROM pg_stat_bgw_proxy WHERE cluster = 'mon_short'$$);
SELECT connects, disconnects, conns_open, conns_idle FROM pg_stat_bgw_proxy WHERE cluster = 'mon_short';

-- waiting for a connection of a full pool, seen from a third session; the
-- callers' wait shows in pg_stat_activity as an extension wait
CREATE SERVER mon_one FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part0 application_name=mon_one', max_connections '1');
-- the holder's remote statement waits for an advisory lock this session
-- holds on the remote database: it ends when we say so, not after a time
CREATE FUNCTION mon_hold() RETURNS int
    AS $$ CLUSTER 'mon_one'; RUN ON 0; SELECT whoami() FROM (SELECT pg_advisory_xact_lock(4242)) l; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION mon_nap(s float8) RETURNS int
    AS $$ CLUSTER 'mon_one'; RUN ON 0; SELECT whoami() FROM pg_sleep(s); $$ LANGUAGE bgw_proxy;
SELECT mon_nap(0);
SELECT dblink_connect('locker', 'dbname=bgw_part0 application_name=mon_locker');
SELECT dblink_exec('locker', 'DO $d$ BEGIN PERFORM pg_advisory_lock(4242); END $d$');
SELECT dblink_connect('holder', 'dbname=contrib_regression application_name=mon_holder');
SELECT dblink_connect('waiter', 'dbname=contrib_regression application_name=mon_waiter');
SELECT dblink_send_query('holder', 'SELECT mon_hold()');
SELECT wait_for($$SELECT conns_active = 1 FROM pg_stat_bgw_proxy WHERE cluster = 'mon_one'$$) AS holder_running;
SELECT dblink_send_query('waiter', 'SELECT mon_nap(0)');
SELECT wait_for($$SELECT calls_waiting > 0 AND longest_wait > 100 FROM pg_stat_bgw_proxy WHERE cluster = 'mon_one'$$)
    AS waiter_waiting;
SELECT conns_open, conns_active, calls_waiting, longest_wait > 100 AS waited_a_while
FROM pg_stat_bgw_proxy WHERE cluster = 'mon_one';
SELECT wait_for($$SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name IN ('mon_holder', 'mon_waiter')
    AND wait_event_type = 'Extension'$$) AS both_wait;
SELECT application_name, wait_event_type, wait_event FROM pg_stat_activity
WHERE application_name IN ('mon_holder', 'mon_waiter') ORDER BY application_name;
SELECT dblink_exec('locker', 'DO $d$ BEGIN PERFORM pg_advisory_unlock(4242); END $d$');
SELECT * FROM dblink_get_result('holder') AS r(n int);
SELECT * FROM dblink_get_result('waiter') AS r(n int);
SELECT dblink_disconnect('holder'), dblink_disconnect('waiter'), dblink_disconnect('locker');
SELECT conns_open, calls_waiting, longest_wait, calls FROM pg_stat_bgw_proxy WHERE cluster = 'mon_one';

-- the extension's SQL is versioned: 1.0 installs and upgrades to the latest (1.3)
CREATE DATABASE bgw_upgrade;
\c bgw_upgrade
CREATE EXTENSION bgw_proxy VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'bgw_proxy';
SELECT count(*) AS queue_columns FROM information_schema.columns WHERE table_name = 'pg_stat_bgw_proxy_queue';
ALTER EXTENSION bgw_proxy UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'bgw_proxy';
SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) AS queue_columns
FROM information_schema.columns WHERE table_name = 'pg_stat_bgw_proxy_queue';
SELECT count(*) AS stat_columns FROM information_schema.columns WHERE table_name = 'pg_stat_bgw_proxy';
\c contrib_regression
DROP DATABASE bgw_upgrade;
