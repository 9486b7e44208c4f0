-- Operations from SQL: pause, resume, reconnect, disconnect idle connections.
-- (test/t/009_pause.pl moves a partition between instances under load.)
\set ECHO none
\i sql/include/wait_for.sql
\set ECHO all
-- a remote function that waits for an advisory lock held by the test
\c bgw_part0
CREATE FUNCTION ops_hold() RETURNS int LANGUAGE sql
    AS $$ SELECT pg_advisory_lock(1717); SELECT pg_advisory_unlock(1717); SELECT 0 $$;
\c contrib_regression

CREATE SERVER ops FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'dbname=bgw_part0 application_name=ops', p1 'dbname=bgw_part1 application_name=ops');
CREATE FUNCTION ops_on(i int) RETURNS int AS $$ CLUSTER 'ops'; RUN ON i; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION ops_all() RETURNS SETOF int AS $$ CLUSTER 'ops'; RUN ON ALL; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION ops_hold() RETURNS int AS $$ CLUSTER 'ops'; RUN ON 0; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION ops_elsewhere() RETURNS int
    AS $$ CONNECT 'dbname=bgw_part2 application_name=ops_elsewhere'; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT ops_on(0), ops_on(1), ops_elsewhere();

-- bad arguments
SELECT bgw_proxy_pause(NULL);
SELECT bgw_proxy_pause('');
SELECT bgw_proxy_pause(repeat('x', 64));
SELECT bgw_proxy_pause('ops', '0s');
SELECT bgw_proxy_pause('ops', '-1 day');
SELECT bgw_proxy_pause('ops', NULL);
SELECT bgw_proxy_pause('ops', partition => -1);
SELECT bgw_proxy_resume('ops');
SELECT bgw_proxy_reconnect('');

-- a quiet cluster is paused at once; the view shows it
SELECT bgw_proxy_pause('ops');
SELECT cluster, partition, state, paused_by = pg_backend_pid() AS by_me, calls_waiting, calls_running,
       paused_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS paused_at_ok
FROM pg_stat_bgw_proxy_clusters;
\set VERBOSITY terse
SELECT bgw_proxy_pause('ops');
SELECT bgw_proxy_pause('ops', partition => 1);
\set VERBOSITY default
-- a call waits, bounded by bgw_proxy.pool_wait_timeout; other clusters are not held
SET bgw_proxy.pool_wait_timeout = '50ms';
SELECT ops_on(0);
SELECT ops_all();
SELECT ops_elsewhere();
-- or by statement_timeout
SET bgw_proxy.pool_wait_timeout = 0;
SET statement_timeout = '50ms';
SELECT ops_on(0);
RESET statement_timeout;
RESET bgw_proxy.pool_wait_timeout;
-- the calls that gave up no longer count as waiting
SELECT calls_waiting FROM pg_stat_bgw_proxy_clusters;
SELECT bgw_proxy_resume('ops');
SELECT count(*) AS pauses FROM pg_stat_bgw_proxy_clusters;
SELECT ops_on(0), ops_on(1);

-- one partition: calls to the others go on
SELECT bgw_proxy_pause('ops', '5s', 1);
SELECT ops_on(0);
SET bgw_proxy.pool_wait_timeout = '50ms';
SELECT ops_on(1);
SELECT ops_all();
RESET bgw_proxy.pool_wait_timeout;
SELECT bgw_proxy_pause('ops', partition => 0);
SELECT cluster, partition, state FROM pg_stat_bgw_proxy_clusters ORDER BY partition;
\set VERBOSITY terse
SELECT bgw_proxy_pause('ops');
\set VERBOSITY default
SELECT bgw_proxy_resume('ops');
SELECT count(*) AS pauses FROM pg_stat_bgw_proxy_clusters;
SELECT ops_on(0), ops_on(1);

-- a waiting call is seen in the view and goes on at the resume
SELECT bgw_proxy_pause('ops');
SELECT dblink_connect('waiter', 'dbname=contrib_regression application_name=ops_waiter');
SELECT dblink_send_query('waiter', 'SELECT ops_on(1)');
-- (the session shows the wait event of extensions while it waits)
SELECT wait_for($$SELECT calls_waiting = 1 FROM pg_stat_bgw_proxy_clusters WHERE cluster = 'ops'$$)
       AND wait_for($$SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'ops_waiter'
                      AND wait_event_type = 'Extension' AND wait_event = 'Extension'$$) AS waiting;
SELECT bgw_proxy_resume('ops');
SELECT * FROM dblink_get_result('waiter') AS r(n int);

-- waiting calls read the configuration as it is at the resume: a SQL/MED
-- cluster altered, a function-defined one given another version
SELECT dblink_connect('waiter3', 'dbname=contrib_regression application_name=ops_waiter3');
SELECT bgw_proxy_pause('ops');
SELECT dblink_send_query('waiter3', 'SELECT ops_on(1)');
SELECT wait_for($$SELECT calls_waiting = 1 FROM pg_stat_bgw_proxy_clusters WHERE cluster = 'ops'$$) AS waiting;
ALTER SERVER ops OPTIONS (SET p1 'dbname=bgw_part3 application_name=ops');
SELECT bgw_proxy_resume('ops');
SELECT * FROM dblink_get_result('waiter3') AS r(n int);
SELECT * FROM dblink_get_result('waiter3') AS r(n int);
ALTER SERVER ops OPTIONS (SET p1 'dbname=bgw_part1 application_name=ops');
INSERT INTO plproxy.clusters VALUES ('ops_fn', 1);
INSERT INTO plproxy.partitions VALUES ('ops_fn', 0, 'dbname=bgw_part0 application_name=ops_fn');
CREATE FUNCTION ops_fn() RETURNS int AS $$ CLUSTER 'ops_fn'; RUN ON 0; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT ops_fn();
SELECT bgw_proxy_pause('ops_fn');
SELECT dblink_send_query('waiter3', 'SELECT ops_fn()');
SELECT wait_for($$SELECT calls_waiting = 1 FROM pg_stat_bgw_proxy_clusters WHERE cluster = 'ops_fn'$$) AS waiting;
UPDATE plproxy.partitions SET connstr = 'dbname=bgw_part2 application_name=ops_fn' WHERE name = 'ops_fn';
UPDATE plproxy.clusters SET version = 2 WHERE name = 'ops_fn';
SELECT bgw_proxy_resume('ops_fn');
SELECT * FROM dblink_get_result('waiter3') AS r(n int);
SELECT * FROM dblink_get_result('waiter3') AS r(n int);
SELECT dblink_disconnect('waiter3');

-- a call that waited in a REPEATABLE READ transaction: its snapshot may
-- predate the new configuration, so it fails with a serialization error
SELECT bgw_proxy_pause('ops');
SELECT dblink_connect('rr', 'dbname=contrib_regression application_name=ops_rr');
SELECT dblink_exec('rr', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT dblink_send_query('rr', 'SELECT ops_on(1)');
SELECT wait_for($$SELECT calls_waiting = 1 FROM pg_stat_bgw_proxy_clusters WHERE cluster = 'ops'$$) AS waiting;
SELECT bgw_proxy_resume('ops');
\set VERBOSITY terse
SELECT * FROM dblink_get_result('rr', false) AS r(n int);
\set VERBOSITY default
SELECT dblink_disconnect('rr');

-- calls in flight run to their end; a pause that does not get quiet in
-- time errors and is lifted, and calls flow again
SELECT dblink_connect('locker', 'dbname=bgw_part0 application_name=ops_locker');
SELECT dblink_exec('locker', 'DO $d$ BEGIN PERFORM pg_advisory_lock(1717); END $d$');
SELECT dblink_connect('holder', 'dbname=contrib_regression application_name=ops_holder');
SELECT dblink_send_query('holder', 'SELECT ops_hold()');
SELECT wait_for($$SELECT count(*) = 1 FROM pg_stat_activity
                  WHERE datname = 'bgw_part0' AND wait_event_type = 'Lock'$$) AS holder_running;
SELECT bgw_proxy_pause('ops', '100ms');
SELECT count(*) AS pauses FROM pg_stat_bgw_proxy_clusters;
SELECT ops_on(1);
-- a pause cancelled while it waits is lifted too: the call it held goes on
SELECT dblink_connect('pauser', 'dbname=contrib_regression application_name=ops_pauser');
SELECT dblink_send_query('pauser', 'SELECT bgw_proxy_pause(''ops'', ''1h'')');
SELECT wait_for($$SELECT state = 'pausing' AND calls_running = 1 FROM pg_stat_bgw_proxy_clusters$$) AS pausing;
SELECT dblink_connect('waiter2', 'dbname=contrib_regression application_name=ops_waiter2');
SELECT dblink_send_query('waiter2', 'SELECT ops_on(1)');
SELECT wait_for($$SELECT calls_waiting = 1 FROM pg_stat_bgw_proxy_clusters$$) AS waiting;
SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'ops_pauser';
SELECT * FROM dblink_get_result('pauser', false) AS r(x text);
SELECT * FROM dblink_get_result('waiter2') AS r(n int);
SELECT count(*) AS pauses FROM pg_stat_bgw_proxy_clusters;
SELECT dblink_exec('locker', 'DO $d$ BEGIN PERFORM pg_advisory_unlock(1717); END $d$');
SELECT * FROM dblink_get_result('holder') AS r(n int);
SELECT dblink_disconnect('holder'), dblink_disconnect('waiter'), dblink_disconnect('waiter2'),
       dblink_disconnect('locker'), dblink_disconnect('pauser');

-- reconnect: every connection of the cluster is replaced, others are kept
SELECT ops_on(0), ops_on(1), ops_elsewhere();
SELECT array_agg(pid) AS ops_pids FROM pg_stat_activity WHERE application_name = 'ops' \gset
SELECT pid AS elsewhere_pid FROM pg_stat_activity WHERE application_name = 'ops_elsewhere' \gset
SELECT cardinality(:'ops_pids'::int[]) >= 2 AS ops_conns;
SELECT bgw_proxy_reconnect('ops');
SELECT wait_for(format('SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = ANY (%L)', :'ops_pids'))
    AS old_closed;
SELECT ops_on(0), ops_on(1);
SELECT count(*) FILTER (WHERE pid = :elsewhere_pid) AS elsewhere_kept
FROM pg_stat_activity WHERE application_name = 'ops_elsewhere';

-- a resume replaces the connections of what was paused, here partition 1,
-- even when the configuration did not change (the server behind a name may
-- have); partition 0's are kept
SELECT array_agg(pid) AS ops_pids FROM pg_stat_activity WHERE application_name = 'ops' \gset
SELECT bgw_proxy_pause('ops', partition => 1);
SELECT bgw_proxy_resume('ops');
SELECT wait_for(format('SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = %L AND pid = ANY (%L)',
                       'bgw_part1', :'ops_pids')) AS p1_replaced,
       (SELECT count(*) >= 1 FROM pg_stat_activity WHERE datname = 'bgw_part0' AND pid = ANY (:'ops_pids'))
           AS p0_kept;
SELECT ops_on(0), ops_on(1);

-- disconnect_idle: every idle pooled connection is closed
SELECT bgw_proxy_disconnect_idle();
SELECT wait_for($$SELECT count(*) = 0 FROM pg_stat_activity
                  WHERE application_name IN ('ops', 'ops_elsewhere')$$) AS all_closed;
SELECT ops_on(0), ops_elsewhere();

-- privileges: superusers, and roles granted EXECUTE; the view is public
CREATE ROLE bgw_ops_user;
SET ROLE bgw_ops_user;
SELECT bgw_proxy_pause('ops');
SELECT bgw_proxy_resume('ops');
SELECT bgw_proxy_reconnect('ops');
SELECT bgw_proxy_disconnect_idle();
SELECT count(*) AS pauses FROM pg_stat_bgw_proxy_clusters;
RESET ROLE;
GRANT EXECUTE ON FUNCTION bgw_proxy_pause(text, interval, int), bgw_proxy_resume(text) TO bgw_ops_user;
SET ROLE bgw_ops_user;
SELECT bgw_proxy_pause('ops');
SELECT bgw_proxy_resume('ops');
SELECT bgw_proxy_reconnect('ops');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION bgw_proxy_pause(text, interval, int), bgw_proxy_resume(text) FROM bgw_ops_user;
DROP ROLE bgw_ops_user;
