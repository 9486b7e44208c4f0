/* bgw_proxy--1.0.sql */

\echo Use "CREATE EXTENSION bgw_proxy" to load this file. \quit

CREATE FUNCTION bgw_proxy_call_handler()
RETURNS language_handler
AS 'MODULE_PATHNAME', 'bgw_proxy_call_handler'
LANGUAGE C;

CREATE FUNCTION bgw_proxy_validator(oid)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_validator'
LANGUAGE C STRICT;

-- Untrusted: a proxy function decides which servers the database server
-- itself connects to, and as whom, so only superusers may create one.
CREATE LANGUAGE bgw_proxy
    HANDLER bgw_proxy_call_handler
    VALIDATOR bgw_proxy_validator;

COMMENT ON LANGUAGE bgw_proxy IS 'PL/Proxy-compatible remote calls through bgw_proxy workers';

CREATE FUNCTION pg_stat_bgw_proxy_workers_1_0(
    OUT worker int,
    OUT pid int,
    OUT state text,
    OUT started_at timestamptz,
    OUT conns_open int,
    OUT conns_idle int,
    OUT conns_active int,
    OUT conns_connecting int,
    OUT requests_in_flight int,
    OUT requests_served bigint,
    OUT connects bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_workers_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW pg_stat_bgw_proxy_workers AS
    SELECT * FROM pg_stat_bgw_proxy_workers_1_0();

CREATE FUNCTION pg_stat_bgw_proxy_queue_1_0(
    OUT queues int,
    OUT capacity bigint,
    OUT submitted bigint,
    OUT completed bigint,
    OUT queue_full_waits bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_queue_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW pg_stat_bgw_proxy_queue AS
    SELECT * FROM pg_stat_bgw_proxy_queue_1_0();

GRANT SELECT ON pg_stat_bgw_proxy_workers, pg_stat_bgw_proxy_queue TO PUBLIC;

-- SQL/MED cluster definitions: a server of this wrapper is a cluster.
CREATE FUNCTION bgw_proxy_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER bgw_proxy VALIDATOR bgw_proxy_fdw_validator;

-- The shared cache of function-defined cluster configurations.
CREATE FUNCTION bgw_proxy_cluster_cache_1_0(
    OUT dbid oid,
    OUT cluster text,
    OUT version int,
    OUT partitions int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgw_proxy_cluster_cache_1_0'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW bgw_proxy_cluster_cache AS
    SELECT d.datname AS database, c.cluster, c.version, c.partitions
    FROM bgw_proxy_cluster_cache_1_0() c LEFT JOIN pg_database d ON d.oid = c.dbid;
-- cluster names of every database: for administrators only
REVOKE ALL ON FUNCTION bgw_proxy_cluster_cache_1_0() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bgw_proxy_cluster_cache_1_0() TO pg_read_all_stats;
