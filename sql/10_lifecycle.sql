-- Things that happen around proxy functions while the workers run.

-- DROP DATABASE waits for every process to absorb a barrier; the workers
-- must take part (a hang here would be stopped by the timeout)
SET statement_timeout = '60s';
CREATE DATABASE bgw_dropme;
DROP DATABASE bgw_dropme;
RESET statement_timeout;
SELECT count(pid) AS workers_running FROM pg_stat_bgw_proxy_workers;

-- a row type changed after the function was compiled in this session
CREATE TYPE shape AS (a int, b text);
CREATE FUNCTION get_shape() RETURNS shape AS $$ CONNECT 'dbname=bgw_remote'; SELECT 1 AS a, 'one' AS b; $$ LANGUAGE bgw_proxy;
SELECT * FROM get_shape();
ALTER TYPE shape ADD ATTRIBUTE c int;
SELECT * FROM get_shape();
ALTER TYPE shape DROP ATTRIBUTE c;
SELECT * FROM get_shape();

-- URI connection strings: the calling role is passed, not appended as text
CREATE FUNCTION uri_user() RETURNS text AS $$
    CONNECT 'postgresql:///bgw_remote?application_name=uri_probe';
    SELECT current_user::text;
$$ LANGUAGE bgw_proxy;
GRANT EXECUTE ON FUNCTION uri_user() TO bgw_other;
SET ROLE bgw_other;
SELECT uri_user();
RESET ROLE;
SELECT uri_user();
