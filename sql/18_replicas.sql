-- Replicas and health, the proxy's side: STABLE and IMMUTABLE proxy
-- functions (reads), the cluster options of multi-host partitions, the
-- nodes view, and RUN ON ALL returning the partitions that answered.
-- (The TAP tests run real copies: a streaming standby, failures, promotion.)

-- 1. Volatility. LANGUAGE bgw_proxy: STABLE and IMMUTABLE are reads.
CREATE SERVER rep FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part0', p1 'dbname=bgw_part1', p2 'dbname=bgw_part2', p3 'dbname=bgw_part3');
CREATE FUNCTION rep_stable(p int) RETURNS int
    AS $$ CLUSTER 'rep'; RUN ON p; SELECT whoami(); $$ LANGUAGE bgw_proxy STABLE;
CREATE FUNCTION rep_immutable(p int) RETURNS int
    AS $$ CLUSTER 'rep'; RUN ON p; SELECT whoami(); $$ LANGUAGE bgw_proxy IMMUTABLE;
CREATE FUNCTION rep_volatile(p int) RETURNS int
    AS $$ CLUSTER 'rep'; RUN ON p; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT rep_stable(1), rep_immutable(2), rep_volatile(3);
-- ALTER FUNCTION changes it both ways; the next call sees it
ALTER FUNCTION rep_volatile(int) STABLE;
SELECT rep_volatile(3);
ALTER FUNCTION rep_volatile(int) VOLATILE;
SELECT rep_volatile(3);
-- LANGUAGE plproxy keeps PL/Proxy's rule: VOLATILE only, at CREATE
-- FUNCTION and at call time
SET client_min_messages = warning;
DROP DATABASE IF EXISTS bgw_rep_pl;
RESET client_min_messages;
CREATE DATABASE bgw_rep_pl;
\c bgw_rep_pl
CREATE EXTENSION bgw_proxy_plproxy CASCADE;
CREATE FUNCTION pl_stable() RETURNS int
    AS $$ CONNECT 'dbname=bgw_part1'; SELECT whoami(); $$ LANGUAGE plproxy STABLE;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION pl_immutable() RETURNS int
    AS $$ CONNECT 'dbname=bgw_part1'; SELECT whoami(); $$ LANGUAGE plproxy IMMUTABLE;
CREATE FUNCTION pl_volatile() RETURNS int
    AS $$ CONNECT 'dbname=bgw_part1'; SELECT whoami(); $$ LANGUAGE plproxy;
SELECT pl_volatile();
ALTER FUNCTION pl_volatile() STABLE;
SELECT pl_volatile();
\c contrib_regression
DROP DATABASE bgw_rep_pl;

-- 2. Cluster options, as server options: each good value is taken, each
-- bad one refused with its SQLSTATE (partition 0 has two hosts, partition
-- 1 one).
-- rep_try(commands): 'ok' when they ran, else the error's SQLSTATE and message
CREATE FUNCTION rep_try(commands text, OUT result text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE commands;
    result := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS result = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;
SELECT o.key, o.val, r.result, r.message
FROM (VALUES ('read_from', 'any'), ('read_from', 'standby'), ('read_from', 'PRIMARY'),
             ('read_from', 'replica'), ('read_from', ''),
             ('max_replica_lag', '0'), ('max_replica_lag', '1048576'), ('max_replica_lag', '16MB'),
             ('max_replica_lag', '64 kB'), ('max_replica_lag', '10GB'), ('max_replica_lag', '-1'),
             ('max_replica_lag', '16 parsecs'), ('max_replica_lag', '1s'), ('max_replica_lag', 'lots'),
             ('health_check_interval', '0'), ('health_check_interval', '500'),
             ('health_check_interval', '500ms'), ('health_check_interval', '2s'),
             ('health_check_interval', '1h'), ('health_check_interval', '99ms'),
             ('health_check_interval', '2h'), ('health_check_interval', '5MB'),
             ('health_check_interval', '-1s'), ('health_check_interval', 'often'),
             ('health_check_timeout', '0'), ('health_check_timeout', '1.5s'),
             ('health_check_timeout', '50'),
             ('health_check_retries', '1'), ('health_check_retries', '100'), ('health_check_retries', '0'),
             ('health_check_retries', '101'), ('health_check_retries', 'x'),
             ('partial_results', 'on'), ('partial_results', 'false'), ('partial_results', '1'),
             ('partial_results', 'maybe'),
             ('partition_0_weights', '3,1'), ('p0_weights', ' 0 , 2 '), ('partition_1_weights', '5'),
             ('partition_0_weights', '1'), ('partition_0_weights', '1,2,3'), ('partition_1_weights', '1,1'),
             ('partition_2_weights', '1'), ('partition_0_weights', '1,-1'), ('partition_0_weights', '1,,2'),
             ('partition_0_weights', '1,x'), ('partition_0_weights', '1,1000001'),
             ('partition_0_weights', '')) AS o(key, val),
     LATERAL rep_try(format('CREATE SERVER rep_try FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 %L, p1 %L, %I %L);
                             DROP SERVER rep_try',
                            'host=a,b port=5432,5433 dbname=x', 'dbname=y', o.key, o.val)) AS r;
-- what the errors say in full, with their hints
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', read_from 'replica');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', max_replica_lag '16 parsecs');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', health_check_interval '50ms');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', health_check_timeout 'soon');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', health_check_retries '0');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', partial_results 'maybe');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', p0_weights '1;2');
-- the weights count the hosts of host=, else of hostaddr=, or of a URI
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'host=a,b,c port=5432 dbname=x', partition_0_weights '1,2');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'hostaddr=127.0.0.1,127.0.0.2 dbname=x', partition_0_weights '1,2,3');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'postgresql://a:5432,b:5433/x', partition_0_weights '1');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'dbname=x', p1 'dbname=y', partition_2_weights '1');
CREATE SERVER rep_bad FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 'host=a,b dbname=x', partition_0_weights '1,1', p0_weights '2,2');
-- weights are options of a server, like its partitions
CREATE FOREIGN DATA WRAPPER rep_fdw VALIDATOR bgw_proxy_fdw_validator OPTIONS (p0_weights '1');
-- a good server; ALTER SERVER checks the whole new set of options
CREATE SERVER rep_good FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'host=a,b port=5432,5433 dbname=x', p1 'postgresql://c:5432,d:5432,e:5432/y',
    partition_0_weights '3,1', p1_weights '1,0,1', read_from 'standby', max_replica_lag '16MB',
    health_check_interval '2s', health_check_timeout '500ms', health_check_retries '5',
    partial_results 'on');
ALTER SERVER rep_good OPTIONS (SET p1 'host=c dbname=y');
ALTER SERVER rep_good OPTIONS (DROP p1_weights);
ALTER SERVER rep_good OPTIONS (SET p1 'host=c dbname=y');
DROP SERVER rep_good;

-- 3. The same options from plproxy.get_cluster_config (keys are
-- case-insensitive), checked when the cluster is loaded: a call that runs
-- nowhere (SPLIT of an empty array) loads it without calling a partition.
-- (versions come from a sequence: a failed load's UPDATE is rolled back with
-- its subtransaction, and a version must never name two configurations)
CREATE SEQUENCE rep_versions START 2;
INSERT INTO plproxy.clusters VALUES ('repf', 1);
INSERT INTO plproxy.partitions VALUES ('repf', 0, 'host=a,b port=5432,5433 dbname=x'), ('repf', 1, 'dbname=y');
CREATE FUNCTION rep_load(k int[]) RETURNS SETOF int
    AS $$ CLUSTER 'repf'; SPLIT k; RUN ON 0; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT o.key, o.val, r.result, r.message
FROM (VALUES ('read_from', 'primary'), ('Read_From', 'standby'), ('read_from', 'nearest'),
             ('max_replica_lag', '1GB'), ('max_replica_lag', '-5'),
             ('health_check_interval', '750ms'), ('health_check_interval', '10'),
             ('health_check_timeout', '3s'), ('health_check_retries', '2'), ('health_check_retries', '0'),
             ('partial_results', 'yes'), ('partial_results', 'sometimes'),
             ('partition_0_weights', '2,1'), ('p0_weights', '2,1'), ('PARTITION_1_WEIGHTS', '4'),
             ('partition_0_weights', '2'), ('partition_1_weights', '1,2'), ('partition_5_weights', '1'),
             ('partition_0_weights', 'heavy,light')) AS o(key, val),
     LATERAL rep_try(format($q$DELETE FROM plproxy.options WHERE name = 'repf';
                              INSERT INTO plproxy.options VALUES ('repf', %L, %L);
                              UPDATE plproxy.clusters SET version = nextval('rep_versions') WHERE name = 'repf';
                              SELECT * FROM rep_load('{}')$q$, o.key, o.val)) AS r;
-- one error in full
DELETE FROM plproxy.options WHERE name = 'repf';
INSERT INTO plproxy.options VALUES ('repf', 'partition_1_weights', '1,2');
UPDATE plproxy.clusters SET version = nextval('rep_versions') WHERE name = 'repf';
SELECT * FROM rep_load('{}');
-- every option at once; a new session takes the configuration from the
-- shared cache (no second load), new options included
DELETE FROM plproxy.options WHERE name = 'repf';
INSERT INTO plproxy.options VALUES ('repf', 'read_from', 'standby'), ('repf', 'max_replica_lag', '1MB'),
    ('repf', 'health_check_interval', '1s'), ('repf', 'health_check_timeout', '1s'),
    ('repf', 'health_check_retries', '2'), ('repf', 'partial_results', 'on'),
    ('repf', 'partition_0_weights', '1,3');
UPDATE plproxy.clusters SET version = nextval('rep_versions') WHERE name = 'repf';
SELECT * FROM rep_load('{}');
SELECT last_value AS loads_before FROM plproxy.loads \gset
\c -
SELECT * FROM rep_load('{}');
SELECT last_value - :loads_before AS new_loads FROM plproxy.loads;
DELETE FROM plproxy.options WHERE name = 'repf';
DELETE FROM plproxy.partitions WHERE name = 'repf';
DELETE FROM plproxy.clusters WHERE name = 'repf';
DROP SEQUENCE rep_versions;

-- 4. pg_stat_bgw_proxy_nodes: its columns, readable by every role; no
-- node before a call to a multi-host partition (the TAP tests fill it)
SELECT column_name, data_type FROM information_schema.columns
WHERE table_name = 'pg_stat_bgw_proxy_nodes' ORDER BY ordinal_position;
SELECT count(*) AS nodes FROM pg_stat_bgw_proxy_nodes;
CREATE ROLE bgw_rep_user;
SET ROLE bgw_rep_user;
SELECT count(*) AS nodes FROM pg_stat_bgw_proxy_nodes;
RESET ROLE;
DROP ROLE bgw_rep_user;
-- the reset functions reset the nodes' counters too
SELECT bgw_proxy_stat_reset(), bgw_proxy_stat_reset('rep');

-- 5. RUN ON ALL with partial_results: the partitions that answered, and a
-- WARNING per partition that failed, in partition order. Partition
-- `fail_on` sends two rows, then fails on its third: its rows that came
-- are kept.
\c bgw_part1
CREATE FUNCTION rep_check() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'partition 1 is being moved',
        DETAIL = 'It is read-only until the move ends.', HINT = 'Try again in a minute.';
END $$;
\c bgw_part3
CREATE FUNCTION rep_check() RETURNS int LANGUAGE sql AS $$ SELECT 1 / 0 $$;
\c bgw_part0
CREATE FUNCTION rep_check() RETURNS int LANGUAGE sql AS $$ SELECT 0 $$;
\c bgw_part2
CREATE FUNCTION rep_check() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;
\c contrib_regression
CREATE SERVER rep_partial FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part0', p1 'dbname=bgw_part1', p2 'dbname=bgw_part2', p3 'dbname=bgw_part3',
    partial_results 'on');
CREATE FUNCTION rep_rows(fail_on int) RETURNS SETOF text AS $$
    CLUSTER 'rep_partial'; RUN ON ALL;
    SELECT whoami() || '.' || g || CASE WHEN whoami() = fail_on THEN ' 1/' || (g - 3) || '=' || 1 / (g - 3) ELSE '' END
    FROM generate_series(1, 3) g;
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION rep_checks() RETURNS SETOF int AS $$
    CLUSTER 'rep_partial'; RUN ON ALL; SELECT rep_check();
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION rep_all_fail() RETURNS SETOF int AS $$
    CLUSTER 'rep_partial'; RUN ON ALL; SELECT 1 / (whoami() - whoami());
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION rep_one(p int) RETURNS SETOF int AS $$
    CLUSTER 'rep_partial'; RUN ON p; SELECT rep_check();
$$ LANGUAGE bgw_proxy;
SELECT * FROM rep_rows(-1);
SELECT * FROM rep_rows(2);
SELECT * FROM rep_rows(0);
-- two partitions fail: two WARNINGs, with the remote SQLSTATE, detail
-- and hint
SELECT * FROM rep_checks();
-- every partition failed: the first one's error, as without the option
SELECT * FROM rep_all_fail();
-- only RUN ON ALL: one partition's failure is the call's
SELECT * FROM rep_one(1);
-- the statistics count the failed partitions as errors
SELECT partition, calls, errors FROM pg_stat_bgw_proxy WHERE cluster = 'rep_partial' ORDER BY partition;
-- without the option (the default), a failed partition fails the call
ALTER SERVER rep_partial OPTIONS (SET partial_results 'off');
SELECT * FROM rep_rows(2);
ALTER SERVER rep_partial OPTIONS (DROP partial_results);
SELECT * FROM rep_rows(1);
