/* bgw_proxy--1.1--1.2.sql: pause, resume and reconnect clusters */

\echo Use "ALTER EXTENSION bgw_proxy UPDATE TO '1.2'" to load this file. \quit

-- New calls to the cluster (or one partition of it), from every database
-- and role of this server, wait; returns once no call of it is running.
-- Not quiet within the timeout: an error, and the pause is lifted.
CREATE FUNCTION bgw_proxy_pause(cluster text, timeout interval DEFAULT '30s', partition int DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_pause_1_2'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Lifts every pause of the cluster, after the workers retired the
-- connections made for the paused cluster or partitions.
CREATE FUNCTION bgw_proxy_resume(cluster text)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_resume_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- The cluster's connections are closed once idle and opened again on demand.
CREATE FUNCTION bgw_proxy_reconnect(cluster text)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_reconnect_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- Every worker closes its idle connections.
CREATE FUNCTION bgw_proxy_disconnect_idle()
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_disconnect_idle_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- Administrators only unless granted.
REVOKE ALL ON FUNCTION bgw_proxy_pause(text, interval, int), bgw_proxy_resume(text),
    bgw_proxy_reconnect(text), bgw_proxy_disconnect_idle() FROM PUBLIC;

-- One row per pause in force. partition is NULL for a whole cluster.
CREATE FUNCTION pg_stat_bgw_proxy_clusters_1_2(
    OUT cluster text,
    OUT partition int,
    OUT state text,
    OUT paused_at timestamptz,
    OUT paused_by int,
    OUT calls_waiting int,
    OUT calls_running int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_stat_bgw_proxy_clusters_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW pg_stat_bgw_proxy_clusters AS
    SELECT * FROM pg_stat_bgw_proxy_clusters_1_2();

GRANT SELECT ON pg_stat_bgw_proxy_clusters TO PUBLIC;
