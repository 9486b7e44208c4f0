-- The proxy side: the extension. The remote side: a second database on the
-- same instance, reached by the workers through PGHOST/PGPORT.
CREATE EXTENSION bgw_proxy;
SELECT lanname, lanpltrusted FROM pg_language WHERE lanname = 'bgw_proxy';
-- the workers start with the server: wait (up to 10 s) until each runs
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN (SELECT count(pid) = count(*) FROM pg_stat_bgw_proxy_workers)
              AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'bgw_proxy worker')
                  = (SELECT count(*) FROM pg_stat_bgw_proxy_workers);
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT count(*) AS workers, count(pid) AS running FROM pg_stat_bgw_proxy_workers;
-- the settings, with the context that says when a change takes effect
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'bgw_proxy.%' ORDER BY name;
-- the workers are visible as processes of their own
SELECT count(*) AS worker_processes FROM pg_stat_activity WHERE backend_type = 'bgw_proxy worker';

DROP DATABASE IF EXISTS bgw_remote;
CREATE DATABASE bgw_remote;
\c bgw_remote
CREATE TYPE pair AS (id int, label text);
CREATE FUNCTION echo_int(i int) RETURNS int LANGUAGE sql AS $$ SELECT i $$;
CREATE FUNCTION echo_text(t text) RETURNS text LANGUAGE sql AS $$ SELECT t $$;
CREATE FUNCTION echo_bytea(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$;
CREATE FUNCTION echo_array(a int[]) RETURNS int[] LANGUAGE sql AS $$ SELECT a $$;
CREATE FUNCTION make_pair(i int, t text) RETURNS pair LANGUAGE sql AS $$ SELECT i, t $$;
CREATE FUNCTION series(n int) RETURNS SETOF int LANGUAGE sql AS $$ SELECT generate_series(1, n) $$;
CREATE FUNCTION pairs(n int) RETURNS SETOF pair LANGUAGE sql
    AS $$ SELECT g, 'label ' || g FROM generate_series(1, n) g $$;
CREATE FUNCTION split_name(full_name text, OUT first text, OUT last text) LANGUAGE sql
    AS $$ SELECT split_part(full_name, ' ', 1), split_part(full_name, ' ', 2) $$;
CREATE FUNCTION bump(INOUT n int, OUT doubled int) LANGUAGE sql AS $$ SELECT n + 1, n * 2 $$;
CREATE TABLE calls (id serial, note text);
CREATE FUNCTION record_call(note text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO calls (note) VALUES (note) $$;
CREATE FUNCTION "Odd Name"("Arg" text) RETURNS text LANGUAGE sql AS $$ SELECT 'odd:' || $1 $$;
CREATE FUNCTION sum_all(VARIADIC nums int[]) RETURNS int LANGUAGE sql
    AS $$ SELECT sum(x)::int FROM unnest(nums) x $$;
CREATE FUNCTION fail(code text, msg text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = msg,
        DETAIL = 'remote detail', HINT = 'remote hint';
END $$;
CREATE FUNCTION chatty() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'hello from the remote side';
    RAISE WARNING 'careful';
    RETURN 1;
END $$;
CREATE FUNCTION nap(s float8) RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(s) $$;
\c contrib_regression
