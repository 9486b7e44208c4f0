-- SQL/MED clusters: a server of the bgw_proxy wrapper is a cluster.
-- (dblink: a second session, to see what a new session sees)
CREATE EXTENSION dblink;
\set ECHO none
\i sql/include/wait_for.sql
\set ECHO all
CREATE SERVER sq FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    partition_0 'dbname=bgw_part0', partition_1 'dbname=bgw_part1',
    partition_2 'dbname=bgw_part2', partition_3 'dbname=bgw_part3');
CREATE FUNCTION sq_part(key text) RETURNS int AS $$ CLUSTER 'sq'; RUN ON hashtext(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION sq_user(p int) RETURNS text AS $$ CLUSTER 'sq'; RUN ON p; SELECT current_user::text; $$ LANGUAGE bgw_proxy;
SELECT count(*) FILTER (WHERE sq_part('key' || g) <> hashtext('key' || g) & 3) AS misplaced FROM generate_series(1, 200) g;
-- USAGE on the server is required
SET ROLE bgw_other;
SELECT sq_user(0);
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER sq TO bgw_other;
SET ROLE bgw_other;
SELECT sq_user(0) AS without_mapping;
RESET ROLE;
-- a user mapping says as whom to connect: the role's own, else PUBLIC's
CREATE ROLE bgw_mapped LOGIN;
CREATE ROLE bgw_public_mapped LOGIN;
CREATE USER MAPPING FOR bgw_other SERVER sq OPTIONS (user 'bgw_mapped');
CREATE USER MAPPING FOR PUBLIC SERVER sq OPTIONS (user 'bgw_public_mapped');
-- a non-superuser mapped to another user needs that user's password, and
-- the remote must really ask for it (here it trusts everyone: refused)
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping;
RESET ROLE;
ALTER USER MAPPING FOR bgw_other SERVER sq OPTIONS (ADD password 'secret');
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping;
RESET ROLE;
-- an administrator who leaves authentication to the remotes can turn the
-- check off, as PL/Proxy never checked (superuser-only setting, reloaded)
ALTER SYSTEM SET bgw_proxy.mapping_password_required = off;
SELECT pg_reload_conf();
-- once a new session sees the new value, the postmaster has read the file
-- and signalled this session, which reads it before its next statement
SELECT wait_for($$SELECT v = 'off' FROM dblink('dbname=contrib_regression',
                  'SHOW bgw_proxy.mapping_password_required') AS t(v text)$$) AS reloaded;
SHOW bgw_proxy.mapping_password_required;
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping;
RESET ROLE;
ALTER USER MAPPING FOR bgw_other SERVER sq OPTIONS (DROP password);
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping_no_password;
RESET ROLE;
ALTER SYSTEM RESET bgw_proxy.mapping_password_required;
SELECT pg_reload_conf();
SELECT wait_for($$SELECT v = 'on' FROM dblink('dbname=contrib_regression',
                  'SHOW bgw_proxy.mapping_password_required') AS t(v text)$$) AS reloaded;
SHOW bgw_proxy.mapping_password_required;
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping_no_password;
RESET ROLE;
-- mapped to itself, or set up for a superuser: fine
ALTER USER MAPPING FOR bgw_other SERVER sq OPTIONS (SET user 'bgw_other');
SET ROLE bgw_other;
SELECT sq_user(1) AS own_mapping;
RESET ROLE;
SELECT sq_user(1) AS public_mapping;
DROP USER MAPPING FOR PUBLIC SERVER sq;
-- changes to the server take effect on the next call
ALTER SERVER sq OPTIONS (SET partition_0 'dbname=bgw_part2');
CREATE FUNCTION sq_whoami(p int) RETURNS int AS $$ CLUSTER 'sq'; RUN ON p; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT sq_whoami(0) AS partition_0_now;
ALTER SERVER sq OPTIONS (SET partition_0 'dbname=bgw_part0');
SELECT sq_whoami(0) AS partition_0_back;
-- SQL/MED wins over the configuration functions for the same name
CREATE SERVER quad FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'dbname=bgw_part3', p1 'dbname=bgw_part2', p2 'dbname=bgw_part1', p3 'dbname=bgw_part0');
SELECT on_two() AS from_server;
DROP SERVER quad;
SELECT on_two() AS from_functions;
-- cluster options on the server, e.g. modular mapping over 3 partitions
CREATE SERVER sq3 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    modular_mapping '1', p0 'dbname=bgw_part0', p1 'dbname=bgw_part1', p2 'dbname=bgw_part2');
CREATE FUNCTION sq3_part(key text) RETURNS int AS $$ CLUSTER 'sq3'; RUN ON hashtext(key); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT count(*) FILTER (WHERE sq3_part('key' || g) <> abs(hashtext('key' || g) % 3)) AS misplaced FROM generate_series(1, 200) g;
-- the validator rejects what cannot work
CREATE SERVER bad1 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', colour 'blue');
CREATE SERVER bad2 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', p2 'dbname=y');
CREATE SERVER bad3 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname');
CREATE SERVER bad4 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', modular_mapping 'yes');
CREATE SERVER bad5 FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=x', default_user 'root');
CREATE USER MAPPING FOR bgw_other SERVER sq3 OPTIONS (user 'x', sslmode 'disable');
SELECT count(*) AS bad_servers FROM pg_foreign_server WHERE srvname LIKE 'bad%';
-- max_connections bounds a pool: two partitions on the same database, run
-- in parallel by RUN ON ALL, share one connection when the limit is 1
CREATE SERVER twins FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    max_connections '1',
    p0 'dbname=bgw_part0 application_name=twins', p1 'dbname=bgw_part0 application_name=twins');
CREATE FUNCTION twins_all() RETURNS SETOF int AS $$ CLUSTER 'twins'; RUN ON ALL; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT count(*) AS rows FROM twins_all();
SELECT count(*) AS twin_connections FROM pg_stat_activity WHERE application_name = 'twins';
-- connection_lifetime retires a pooled connection (staggered by up to 10%)
CREATE SERVER shortlived FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    connection_lifetime '5', p0 'dbname=bgw_part0 application_name=shortlived');
CREATE FUNCTION shortlived_call() RETURNS int AS $$ CLUSTER 'shortlived'; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT shortlived_call();
SELECT sum(connects) AS connects_before FROM pg_stat_bgw_proxy_workers \gset
SELECT shortlived_call();
SELECT sum(connects) - :connects_before AS reconnects_while_young FROM pg_stat_bgw_proxy_workers;
-- wait for the worker to close it once its lifetime (5 s, +-10%) is over
SELECT wait_for($$SELECT disconnects > 0 FROM pg_stat_bgw_proxy WHERE cluster = 'shortlived'$$) AS retired;
SELECT shortlived_call();
SELECT sum(connects) - :connects_before AS reconnects_after_lifetime FROM pg_stat_bgw_proxy_workers;
-- a call waiting for a connection of a full pool gives up after
-- bgw_proxy.pool_wait_timeout: here the pool has one connection, busy for 2s
CREATE FUNCTION twins_nap(s float8) RETURNS SETOF int AS $$ CLUSTER 'twins'; RUN ON ALL; SELECT 1 FROM pg_sleep(s); $$ LANGUAGE bgw_proxy;
SET bgw_proxy.pool_wait_timeout = '500ms';
SELECT count(*) FROM twins_nap(2);
RESET bgw_proxy.pool_wait_timeout;
SELECT count(*) AS both_ran_in_turn FROM twins_nap(0.1);
