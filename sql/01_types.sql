-- Every result shape through CONNECT functions.
CREATE FUNCTION echo_int(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION echo_text(t text) RETURNS text AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION echo_bytea(b bytea) RETURNS bytea AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION echo_array(a int[]) RETURNS int[] AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;

SELECT echo_int(42), echo_int(-7), echo_int(NULL) IS NULL AS null_in_null_out;
SELECT echo_text('plain'), echo_text('it''s "quoted" \ and ünïcödé'), echo_text('');
SELECT echo_text(NULL) IS NULL AS null_text;
SELECT echo_bytea('\x00ff10'::bytea), echo_bytea(''::bytea);
SELECT echo_array(ARRAY[1, NULL, 3]), echo_array('{}');
SELECT length(echo_text(repeat('x', 200000))) AS big_text_roundtrip;

-- composite results: a named row type, OUT and INOUT parameters
CREATE TYPE pair AS (id int, label text);
CREATE FUNCTION make_pair(i int, t text) RETURNS pair AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT make_pair(1, 'one');
SELECT * FROM make_pair(2, NULL);
CREATE FUNCTION split_name(full_name text, OUT first text, OUT last text)
    AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM split_name('Ada Lovelace');
CREATE FUNCTION bump(INOUT n int, OUT doubled int) AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM bump(20);

-- SETOF scalar and SETOF composite, in FROM and in the target list
CREATE FUNCTION series(n int) RETURNS SETOF int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM series(3);
SELECT series(2);
SELECT count(*) FROM series(0);
CREATE FUNCTION pairs(n int) RETURNS SETOF pair AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT * FROM pairs(3) ORDER BY id;
-- a result far larger than the response ring and work_mem streams through
-- (rows go from the ring straight into a tuplestore that spills to disk)
SET work_mem = '64kB';
SELECT count(*), sum(s) FROM series(1000000) s;
RESET work_mem;

-- void: the remote side effect happens, nothing comes back
CREATE FUNCTION record_call(note text) RETURNS void AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT record_call('first'), record_call('second');

-- custom SELECT: arguments by name and by $n, the rest passed through
CREATE FUNCTION count_calls(pattern text) RETURNS bigint AS $$
    CONNECT 'dbname=bgw_remote';
    SELECT count(*) FROM calls WHERE note LIKE pattern OR note = $1;
$$ LANGUAGE bgw_proxy;
SELECT count_calls('f%');
CREATE FUNCTION list_calls() RETURNS SETOF text AS $$
    CONNECT 'dbname=bgw_remote';
    SELECT note FROM calls ORDER BY id;
$$ LANGUAGE bgw_proxy;
SELECT * FROM list_calls();

-- quoted identifiers in the function name; variadic arguments
CREATE FUNCTION "Odd Name"("Arg" text) RETURNS text AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT "Odd Name"('x');
CREATE FUNCTION sum_all(VARIADIC nums int[]) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT sum_all(1, 2, 3), sum_all(VARIADIC ARRAY[10, 20]);

-- a replaced function is recompiled in this session
CREATE OR REPLACE FUNCTION echo_text(t text) RETURNS text AS $$
    CONNECT 'dbname=bgw_remote';
    SELECT upper(t);
$$ LANGUAGE bgw_proxy;
SELECT echo_text('now upper');
