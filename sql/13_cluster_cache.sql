-- Function-defined cluster configurations are loaded once and shared by
-- every backend of the database, until the version changes.
CREATE SEQUENCE plproxy.loads;
CREATE OR REPLACE FUNCTION plproxy.get_cluster_partitions(cluster_name text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('plproxy.loads');  -- counts the loads
    RETURN QUERY SELECT connstr FROM plproxy.partitions WHERE name = cluster_name ORDER BY idx;
END $$;
UPDATE plproxy.clusters SET version = 10 WHERE name = 'quad';
SELECT on_two();
SELECT last_value AS loads FROM plproxy.loads;
-- a new session takes the shared copy: no second load
\c -
SELECT on_two(), on_arg(1);
SELECT last_value AS loads FROM plproxy.loads;
SELECT database, cluster, version, partitions FROM bgw_proxy_cluster_cache WHERE cluster = 'quad';
-- a new version is loaded once more, then shared again
UPDATE plproxy.clusters SET version = 11 WHERE name = 'quad';
SELECT on_two();
\c -
SELECT on_two();
SELECT last_value AS loads FROM plproxy.loads;
SELECT version FROM bgw_proxy_cluster_cache WHERE cluster = 'quad';
-- the cache does not bypass the right to run the configuration functions
GRANT USAGE ON SCHEMA plproxy TO bgw_other;
GRANT SELECT ON ALL TABLES IN SCHEMA plproxy TO bgw_other;
REVOKE EXECUTE ON FUNCTION plproxy.get_cluster_partitions(text) FROM PUBLIC;
SET ROLE bgw_other;
SELECT on_two();
RESET ROLE;
GRANT EXECUTE ON FUNCTION plproxy.get_cluster_partitions(text) TO PUBLIC;
SET ROLE bgw_other;
SELECT on_two() AS allowed_again;
RESET ROLE;
