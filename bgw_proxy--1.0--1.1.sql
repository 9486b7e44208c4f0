/* bgw_proxy--1.0--1.1.sql: per-pool statistics, queue depth, resets */

\echo Use "ALTER EXTENSION bgw_proxy UPDATE TO '1.1'" to load this file. \quit

-- One row per (database, cluster, partition, role) the workers served.
-- Times are in milliseconds; the password of a connection string is never
-- shown. Rows are filtered in the function: members of pg_read_all_stats
-- see all, other roles the rows of roles whose privileges they have.
CREATE FUNCTION pg_stat_bgw_proxy_1_1(
    OUT dbid oid,
    OUT cluster text,
    OUT partition int,
    OUT roleid oid,
    OUT conninfo text,
    OUT conns_open int,
    OUT conns_idle int,
    OUT conns_active int,
    OUT conns_connecting int,
    OUT conns_cancelling int,
    OUT calls_waiting int,
    OUT longest_wait double precision,
    OUT calls bigint,
    OUT errors bigint,
    OUT cancels bigint,
    OUT rows bigint,
    OUT binary_calls bigint,
    OUT bytes_sent bigint,
    OUT bytes_received bigint,
    OUT total_time double precision,
    OUT connects bigint,
    OUT disconnects bigint,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_1_1'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW pg_stat_bgw_proxy AS
    SELECT s.dbid, d.datname AS database, s.cluster, s.partition, s.roleid, r.rolname AS role,
           s.conninfo, s.conns_open, s.conns_idle, s.conns_active, s.conns_connecting,
           s.conns_cancelling, s.calls_waiting, s.longest_wait,
           s.calls, s.errors, s.cancels, s.rows, s.binary_calls, s.bytes_sent, s.bytes_received,
           s.total_time,
           CASE WHEN s.calls > 0 THEN s.total_time / s.calls END AS mean_time,
           s.connects, s.disconnects, s.last_error, s.last_error_at, s.stats_reset
    FROM pg_stat_bgw_proxy_1_1() s
    LEFT JOIN pg_database d ON d.oid = s.dbid
    LEFT JOIN pg_roles r ON r.oid = s.roleid;

GRANT SELECT ON pg_stat_bgw_proxy TO PUBLIC;

-- The queue view grows at its end (what 1.0 showed keeps its place).
CREATE FUNCTION pg_stat_bgw_proxy_queue_1_1(
    OUT queues int,
    OUT capacity bigint,
    OUT submitted bigint,
    OUT completed bigint,
    OUT queue_full_waits bigint,
    OUT depth bigint,
    OUT peak_depth bigint,
    OUT in_flight bigint,
    OUT slot_waits bigint,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_queue_1_1'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE OR REPLACE VIEW pg_stat_bgw_proxy_queue AS
    SELECT * FROM pg_stat_bgw_proxy_queue_1_1();
-- pg_stat_bgw_proxy_queue_1_0() stays: SQL written against 1.0 keeps working.

-- Resets: every counter, or those of one cluster of the current database.
-- Administrators only unless granted, like pg_stat_statements_reset().
CREATE FUNCTION bgw_proxy_stat_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_stat_reset_1_1'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE FUNCTION bgw_proxy_stat_reset(cluster text)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_stat_reset_cluster_1_1'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

REVOKE ALL ON FUNCTION bgw_proxy_stat_reset(), bgw_proxy_stat_reset(text) FROM PUBLIC;
