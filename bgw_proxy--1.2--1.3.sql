/* bgw_proxy--1.2--1.3.sql: replicas and health: the nodes of multi-host partitions */

\echo Use "ALTER EXTENSION bgw_proxy UPDATE TO '1.3'" to load this file. \quit

-- One row per node (a host of a partition whose connection string names
-- several) the workers have routed calls to, in every database. node (host
-- and port) and the texts of the last check and failure, which may name the
-- host, are shown to superusers and members of pg_read_all_stats only (NULL
-- for other roles); the function filters them.
CREATE FUNCTION pg_stat_bgw_proxy_nodes_1_3(
    OUT dbid oid,
    OUT cluster text,
    OUT partition int,
    OUT node text,
    OUT role text,
    OUT state text,
    OUT weight int,
    OUT lag_bytes bigint,
    OUT last_check timestamptz,
    OUT last_check_ok boolean,
    OUT last_check_result text,
    OUT last_failure timestamptz,
    OUT last_failure_reason text,
    OUT calls bigint,
    OUT errors bigint,
    OUT retries bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_nodes_1_3'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW pg_stat_bgw_proxy_nodes AS
    SELECT s.dbid, d.datname AS database, s.cluster, s.partition, s.node, s.role, s.state, s.weight,
           s.lag_bytes, s.last_check, s.last_check_ok, s.last_check_result, s.last_failure,
           s.last_failure_reason, s.calls, s.errors, s.retries
    FROM pg_stat_bgw_proxy_nodes_1_3() s
    LEFT JOIN pg_database d ON d.oid = s.dbid;

GRANT SELECT ON pg_stat_bgw_proxy_nodes TO PUBLIC;
