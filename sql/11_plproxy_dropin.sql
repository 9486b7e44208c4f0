-- bgw_proxy_plproxy: a PL/Proxy schema runs with only CREATE EXTENSION changed.
SET client_min_messages = warning;
DROP DATABASE IF EXISTS bgw_pl_app;
DROP DATABASE IF EXISTS bgw_pl_real;
RESET client_min_messages;
CREATE DATABASE bgw_pl_app;
CREATE DATABASE bgw_pl_real;
\c bgw_pl_app
CREATE EXTENSION bgw_proxy_plproxy CASCADE;
-- no schema plproxy is created: the user creates it, as with PL/Proxy
SELECT count(*) AS plproxy_schemas FROM pg_namespace WHERE nspname = 'plproxy';
-- the schema below is written exactly as for PL/Proxy
CREATE SCHEMA plproxy;
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS int4 AS $$
BEGIN
    IF cluster_name = 'userdb' THEN RETURN 1; END IF;
    RAISE EXCEPTION 'Unknown cluster';
END;
$$ LANGUAGE plpgsql;
CREATE FUNCTION plproxy.get_cluster_partitions(cluster_name text) RETURNS SETOF text AS $$
BEGIN
    IF cluster_name = 'userdb' THEN
        RETURN NEXT 'dbname=bgw_part0';
        RETURN NEXT 'dbname=bgw_part1';
        RETURN NEXT 'dbname=bgw_part2';
        RETURN NEXT 'dbname=bgw_part3';
        RETURN;
    END IF;
    RAISE EXCEPTION 'Unknown cluster';
END;
$$ LANGUAGE plpgsql;
CREATE FUNCTION plproxy.get_cluster_config(IN cluster_name text, OUT key text, OUT val text)
RETURNS SETOF record AS $$
BEGIN
    key := 'connection_lifetime';
    val := 30*60;
    RETURN NEXT;
    RETURN;
END;
$$ LANGUAGE plpgsql;
CREATE FUNCTION echo_where(username text) RETURNS text AS $$
    CLUSTER 'userdb';
    RUN ON hashtext(username);
$$ LANGUAGE plproxy;
SELECT echo_where('bob'), hashtext('bob') & 3 AS expected;
CREATE SERVER userdb_med FOREIGN DATA WRAPPER plproxy OPTIONS (
    connection_lifetime '1800',
    p0 'dbname=bgw_part0', p1 'dbname=bgw_part1', p2 'dbname=bgw_part2', p3 'dbname=bgw_part3');
CREATE USER MAPPING FOR PUBLIC SERVER userdb_med;
CREATE FUNCTION echo_where_med(username text) RETURNS text AS $$
    CLUSTER 'userdb_med';
    RUN ON hashtext(username);
    TARGET echo_where;
$$ LANGUAGE plproxy;
SELECT echo_where_med('bob');
-- remote notices and errors in PL/Proxy's form: function(nargs): [database]
-- REMOTE level: text, with the remote's SQLSTATE
CREATE FUNCTION chatty() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE plproxy;
SELECT chatty();
CREATE FUNCTION fail(code text, msg text) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE plproxy;
SELECT fail('22012', 'remote division');
\echo :LAST_ERROR_SQLSTATE
SELECT fdwname, fdwvalidator::regproc FROM pg_foreign_data_wrapper ORDER BY 1;
-- PL/Proxy's own restrictions hold for LANGUAGE plproxy (LANGUAGE bgw_proxy
-- allows both, see 01_types and 12_shapes)
CREATE FUNCTION no_variadic(VARIADIC k text[]) RETURNS text AS $$
    CLUSTER 'userdb'; RUN ON 0; $$ LANGUAGE plproxy;
CREATE FUNCTION no_select_record() RETURNS SETOF record AS $$
    CLUSTER 'userdb'; RUN ON 0; SELECT 1, 'a'; $$ LANGUAGE plproxy;
\c bgw_pl_real
-- the real PL/Proxy in the same database is refused, clearly
CREATE EXTENSION plproxy;
CREATE EXTENSION bgw_proxy_plproxy CASCADE;
\c contrib_regression
DROP DATABASE bgw_pl_app;
DROP DATABASE bgw_pl_real;
