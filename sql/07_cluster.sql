-- CLUSTER mode: partitions from the PL/Proxy configuration functions,
-- RUN ON in all its forms, SPLIT, TARGET, and data placement.
SET client_min_messages = warning;
DROP DATABASE IF EXISTS bgw_part0;
DROP DATABASE IF EXISTS bgw_part1;
DROP DATABASE IF EXISTS bgw_part2;
DROP DATABASE IF EXISTS bgw_part3;
RESET client_min_messages;
CREATE DATABASE bgw_part0;
CREATE DATABASE bgw_part1;
CREATE DATABASE bgw_part2;
CREATE DATABASE bgw_part3;
-- every partition has the same functions; each knows its own number
\c bgw_part0
CREATE FUNCTION whoami() RETURNS int LANGUAGE sql AS $$ SELECT 0 $$;
\i sql/include/partition_functions.sql
\c bgw_part1
CREATE FUNCTION whoami() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
\i sql/include/partition_functions.sql
\c bgw_part2
CREATE FUNCTION whoami() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;
\i sql/include/partition_functions.sql
\c bgw_part3
CREATE FUNCTION whoami() RETURNS int LANGUAGE sql AS $$ SELECT 3 $$;
\i sql/include/partition_functions.sql
\c contrib_regression

-- the configuration, as PL/Proxy users keep it: functions in schema plproxy
CREATE SCHEMA plproxy;
CREATE TABLE plproxy.clusters (name text PRIMARY KEY, version int NOT NULL);
CREATE TABLE plproxy.partitions (name text, idx int, connstr text);
CREATE TABLE plproxy.options (name text, key text, val text);
INSERT INTO plproxy.clusters VALUES ('quad', 1), ('trio', 1), ('odd', 1);
INSERT INTO plproxy.partitions SELECT 'quad', i, 'dbname=bgw_part' || i FROM generate_series(0, 3) i;
INSERT INTO plproxy.partitions SELECT 'trio', i, 'dbname=bgw_part' || i FROM generate_series(0, 2) i;
INSERT INTO plproxy.partitions SELECT 'odd', i, 'dbname=bgw_part' || i FROM generate_series(0, 2) i;
INSERT INTO plproxy.options VALUES ('trio', 'modular_mapping', '1');
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE v int;
BEGIN
    SELECT version INTO v FROM plproxy.clusters WHERE name = cluster_name;
    IF v IS NULL THEN RAISE EXCEPTION 'unknown cluster %', cluster_name; END IF;
    RETURN v;
END $$;
CREATE FUNCTION plproxy.get_cluster_partitions(cluster_name text) RETURNS SETOF text LANGUAGE sql
    AS $$ SELECT connstr FROM plproxy.partitions WHERE name = cluster_name ORDER BY idx $$;
CREATE FUNCTION plproxy.get_cluster_config(cluster_name text, OUT key text, OUT val text)
    RETURNS SETOF record LANGUAGE sql
    AS $$ SELECT key, val FROM plproxy.options WHERE name = cluster_name $$;

-- RUN ON a hash function of an argument
CREATE FUNCTION part_of(key text) RETURNS int AS $$
    CLUSTER 'quad';
    RUN ON hashtext(key);
    SELECT whoami();
$$ LANGUAGE bgw_proxy;
SELECT part_of('alice'), hashtext('alice') & 3 AS expected;
-- data placement is PL/Proxy's: hashtext(key) & (n - 1), for a few thousand keys
SELECT count(*) AS keys, count(*) FILTER (WHERE part_of('key' || g) <> hashtext('key' || g) & 3) AS misplaced
  FROM generate_series(1, 2000) g;
-- modular_mapping: abs(hash % n), any number of partitions
CREATE FUNCTION part_of_mod(key text) RETURNS int AS $$
    CLUSTER 'trio';
    RUN ON hashtext(key);
    SELECT whoami();
$$ LANGUAGE bgw_proxy;
SELECT count(*) AS keys, count(*) FILTER (WHERE part_of_mod('key' || g) <> abs(hashtext('key' || g) % 3)) AS misplaced
  FROM generate_series(1, 1000) g;
-- without it, the partition count must be a power of 2
CREATE FUNCTION odd_part(key text) RETURNS int AS $$ CLUSTER 'odd'; RUN ON hashtext(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT odd_part('x');

-- RUN ON an argument, $n, a number, ALL, ANY (the default)
CREATE FUNCTION on_arg(h int) RETURNS int AS $$ CLUSTER 'quad'; RUN ON h; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION on_dollar(h bigint) RETURNS int AS $$ CLUSTER 'quad'; RUN ON $1; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION on_two() RETURNS int AS $$ CLUSTER 'quad'; RUN ON 2; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION on_all() RETURNS SETOF int AS $$ CLUSTER 'quad'; RUN ON ALL; SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION on_any() RETURNS int AS $$ CLUSTER 'quad'; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT on_arg(5), on_arg(-1), on_dollar(6), on_two();
SELECT * FROM on_all() ORDER BY 1;
SELECT count(DISTINCT on_any()) > 1 AS spread, min(p) >= 0 AND max(p) <= 3 AS in_range
  FROM (SELECT on_any() AS p FROM generate_series(1, 40)) s;
-- several hash values: a set-returning function or an array tags several partitions
CREATE FUNCTION on_array(hs int[]) RETURNS SETOF int AS $$ CLUSTER 'quad'; RUN ON hs; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT * FROM on_array(ARRAY[1, 3, 7]) ORDER BY 1;
CREATE FUNCTION on_series(n int) RETURNS SETOF int AS $$ CLUSTER 'quad'; RUN ON generate_series(0, n); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT * FROM on_series(1) ORDER BY 1;
-- a RUN ON function runs through SPI the first time, then as an expression
-- when it is one (not a set-returning function): same values, same errors
SELECT * FROM on_series(2) ORDER BY 1;
CREATE FUNCTION picky_hash(key text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF key = 'bad' THEN RAISE EXCEPTION 'no partition for %', key; END IF;
    RETURN hashtext(key);
END $$;
CREATE FUNCTION picky(key text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON picky_hash(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION picky_too(key text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON picky_hash(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT picky_too('bad');
SELECT picky(k) = hashtext(k) & 3 AS right_partition FROM unnest(ARRAY['bob', 'ann', 'eve', 'joe']) k;
SELECT picky('bad');
-- the RUN ON function gone after its first use: re-planning fails, and the
-- error points into the local query, as SPI's would
ALTER FUNCTION picky_hash(text) RENAME TO picky_hash_gone;
SELECT picky('bob');
ALTER FUNCTION picky_hash_gone(text) RENAME TO picky_hash;
SELECT picky('bob') = hashtext('bob') & 3 AS back;
-- a RUN ON function reading a table sees the transaction's own changes
CREATE TABLE key_home (key text PRIMARY KEY, part int);
INSERT INTO key_home VALUES ('ann', 1);
CREATE FUNCTION home_of(k text) RETURNS int LANGUAGE sql STABLE AS $$ SELECT part FROM key_home WHERE key = k $$;
CREATE FUNCTION at_home(key text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON home_of(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT at_home('ann') AS first, at_home('ann') AS again;
BEGIN;
UPDATE key_home SET part = 2;
SELECT at_home('ann') AS moved;
ROLLBACK;
SELECT at_home('ann') AS back;
-- a NULL hash is an error, as is a partition that does not exist
SELECT on_arg(NULL);
CREATE FUNCTION on_nine() RETURNS int AS $$ CLUSTER 'quad'; RUN ON 9; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT on_nine();
-- a non-SETOF function must get exactly one row
CREATE FUNCTION one_of_two(hs int[]) RETURNS int AS $$ CLUSTER 'quad'; RUN ON hs; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT one_of_two(ARRAY[0, 1]);

-- the generated query calls the same-named function; TARGET renames it
CREATE FUNCTION echo_where(key text) RETURNS text AS $$ CLUSTER 'quad'; RUN ON hashtext(key); $$ LANGUAGE bgw_proxy;
SELECT echo_where('bob'), hashtext('bob') & 3 AS expected;
CREATE FUNCTION renamed(key text) RETURNS text AS $$ CLUSTER 'quad'; RUN ON hashtext(key); TARGET echo_where; $$ LANGUAGE bgw_proxy;
SELECT renamed('bob');
-- CLUSTER can be chosen by a function of the arguments
CREATE FUNCTION pick_cluster(key text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN key LIKE 'm%' THEN 'trio' ELSE 'quad' END $$;
CREATE FUNCTION dyn(key text) RETURNS SETOF int AS $$ CLUSTER pick_cluster(key); RUN ON ALL; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT (SELECT count(*) FROM dyn('x')) AS quad_partitions, (SELECT count(*) FROM dyn('mx')) AS trio_partitions;

-- SPLIT: array arguments split element by element; each partition gets its own
CREATE FUNCTION store(keys text[], vals int[]) RETURNS SETOF text AS $$
    CLUSTER 'quad';
    SPLIT keys, vals;
    RUN ON hashtext(keys);
$$ LANGUAGE bgw_proxy;
SELECT * FROM store(ARRAY['a', 'b', 'c', 'd', 'e', 'f'], ARRAY[1, 2, 3, 4, 5, 6]) s ORDER BY 1;
SELECT k, hashtext(k) & 3 AS expected FROM unnest(ARRAY['a', 'b', 'c', 'd', 'e', 'f']) k ORDER BY 1;
CREATE FUNCTION store_all(keys text[], vals int[]) RETURNS SETOF text AS $$
    CLUSTER 'quad'; SPLIT ALL; RUN ON hashtext(keys); TARGET store;
$$ LANGUAGE bgw_proxy;
SELECT count(*) FROM store_all(ARRAY['a', 'b', 'c'], ARRAY[1, 2, 3]);
SELECT * FROM store(ARRAY['a'], ARRAY[1, 2]);
SELECT count(*) FROM store('{}', '{}');
-- SPLIT with RUN ON a split array of partition numbers
CREATE FUNCTION store_on(parts int[], keys text[], vals int[]) RETURNS SETOF text AS $$
    CLUSTER 'quad'; SPLIT parts, keys, vals; RUN ON parts; SELECT s FROM store(keys, vals) s;
$$ LANGUAGE bgw_proxy;
SELECT * FROM store_on(ARRAY[3, 3, 0], ARRAY['x', 'y', 'z'], ARRAY[7, 8, 9]) s ORDER BY 1;

-- a version bump reloads the cluster: partitions 0 and 1 swapped
UPDATE plproxy.partitions SET idx = 1 - idx WHERE name = 'quad' AND idx IN (0, 1);
SELECT on_two(), on_arg(0) AS before_bump;
UPDATE plproxy.clusters SET version = 2 WHERE name = 'quad';
SELECT on_arg(0) AS after_bump, on_arg(1);
UPDATE plproxy.partitions SET idx = 1 - idx WHERE name = 'quad' AND idx IN (0, 1);
UPDATE plproxy.clusters SET version = 3 WHERE name = 'quad';

-- bad configuration is reported
CREATE FUNCTION nowhere() RETURNS int AS $$ CLUSTER 'nosuch'; SELECT 1; $$ LANGUAGE bgw_proxy;
SELECT nowhere();
INSERT INTO plproxy.options VALUES ('odd', 'bogus_option', '1');
UPDATE plproxy.clusters SET version = 2 WHERE name = 'odd';
SELECT odd_part('x');
DELETE FROM plproxy.options WHERE key = 'bogus_option';
-- a remote error says which partition and database it came from
CREATE FUNCTION fail_on(p int) RETURNS int AS $$ CLUSTER 'quad'; RUN ON p; SELECT 1 / (whoami() - 2); $$ LANGUAGE bgw_proxy;
SELECT fail_on(1);
SELECT fail_on(2);
-- results come back in partition order (first-tagged order), as in PL/Proxy
SELECT array_agg(p) AS in_order FROM on_all() p;
SELECT array_agg(p) AS in_tag_order FROM on_array(ARRAY[3, 1, 2]) p;
