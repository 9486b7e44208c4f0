-- Function shapes of SPEC §3 beyond the basic ones.
\c bgw_remote
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE point2 AS (x int, y int);
CREATE FUNCTION dom_echo(p positive) RETURNS positive LANGUAGE sql AS $$ SELECT p $$;
CREATE FUNCTION mood_next(m mood) RETURNS mood LANGUAGE sql
    AS $$ SELECT CASE m WHEN 'sad' THEN 'ok'::mood ELSE 'happy'::mood END $$;
CREATE FUNCTION range_len(r int4range) RETURNS int LANGUAGE sql AS $$ SELECT upper(r) - lower(r) $$;
CREATE FUNCTION range_of(a int, b int) RETURNS int4range LANGUAGE sql AS $$ SELECT int4range(a, b) $$;
CREATE FUNCTION flip(p point2) RETURNS point2 LANGUAGE sql AS $$ SELECT p.y, p.x $$;
CREATE FUNCTION points(n int) RETURNS TABLE (x int, y int) LANGUAGE sql
    AS $$ SELECT g, g * g FROM generate_series(1, n) g $$;
CREATE FUNCTION with_default(a int, b int DEFAULT 10) RETURNS int LANGUAGE sql AS $$ SELECT a + b $$;
CREATE FUNCTION dynamic_query(sql text) RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE rec record;
BEGIN
    FOR rec IN EXECUTE sql LOOP RETURN NEXT rec; END LOOP;
END $$;
CREATE FUNCTION one_record() RETURNS record LANGUAGE sql AS $$ SELECT 7, 'seven'::text $$;
\c contrib_regression
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE point2 AS (x int, y int);
CREATE FUNCTION dom_echo(p positive) RETURNS positive AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT dom_echo(5);
SELECT dom_echo(-1);
CREATE FUNCTION mood_next(m mood) RETURNS mood AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT mood_next('sad'), mood_next('ok');
CREATE FUNCTION range_len(r int4range) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION range_of(a int, b int) RETURNS int4range AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT range_len('[3,10)'), range_of(1, 5);
CREATE FUNCTION flip(p point2) RETURNS point2 AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT flip(ROW(1, 2)::point2), (flip(ROW(3, 4))).x;
-- RETURNS TABLE
CREATE FUNCTION points(n int) RETURNS TABLE (x int, y int) AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM points(3);
-- default arguments are filled in locally and sent
CREATE FUNCTION with_default(a int, b int DEFAULT 10) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT with_default(1), with_default(1, 2);
-- RECORD with a column definition list at the call site (PL/Proxy's dynamic records)
CREATE FUNCTION dynamic_query(q text) RETURNS SETOF record AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM dynamic_query('SELECT g, ''row '' || g FROM generate_series(1, 3) g') AS (id int, label text);
SELECT * FROM dynamic_query('SELECT 1.5::numeric, now() IS NOT NULL') AS (n numeric, b boolean);
CREATE FUNCTION one_record() RETURNS record AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM one_record() AS (n int, word text);
SELECT one_record();
-- LANGUAGE bgw_proxy also takes a SELECT for a dynamic record (PL/Proxy does not)
CREATE FUNCTION select_record(n int) RETURNS SETOF record AS $$
    CONNECT 'dbname=bgw_remote'; SELECT g AS id, 'row ' || g AS label FROM generate_series(1, n) g; $$ LANGUAGE bgw_proxy;
SELECT * FROM select_record(2) AS (id int, label text);
-- a row type with a dropped column
CREATE TYPE point3 AS (x int, gone text, y int);
ALTER TYPE point3 DROP ATTRIBUTE gone;
CREATE FUNCTION flip3(p point2) RETURNS point3 AS $$ CONNECT 'dbname=bgw_remote'; SELECT (flip(p)).*; $$ LANGUAGE bgw_proxy;
SELECT * FROM flip3(ROW(5, 6));
-- composite results are matched by column name, as in PL/Proxy
CREATE FUNCTION swapped(OUT res1 text, OUT res2 text) AS $$
    CONNECT 'dbname=bgw_remote'; SELECT 'second' AS res2, 'first' AS res1;
$$ LANGUAGE bgw_proxy;
SELECT * FROM swapped();
CREATE FUNCTION misnamed(OUT res1 text, OUT res2 text) AS $$
    CONNECT 'dbname=bgw_remote'; SELECT 'x' AS res1, 'y' AS res_none;
$$ LANGUAGE bgw_proxy;
SELECT * FROM misnamed();
-- too many rows is PL/pgSQL's too_many_rows (P0003), as in PL/Proxy
CREATE FUNCTION two(OUT n int) AS $$ CONNECT 'dbname=bgw_remote'; SELECT generate_series(1, 2) AS n; $$ LANGUAGE bgw_proxy;
DO $$ BEGIN PERFORM two(); EXCEPTION WHEN too_many_rows THEN RAISE NOTICE 'caught too_many_rows'; END $$;
