-- Remote errors come back with their SQLSTATE, message, detail and hint,
-- and a context line naming the proxy function.
CREATE FUNCTION fail(code text, msg text) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT fail('22012', 'remote division trouble');
DO $$
DECLARE st text; m text; d text; h text; c text;
BEGIN
    PERFORM fail('P0042', 'custom failure');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT,
        d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
    RAISE NOTICE 'sqlstate=% message=% detail=% hint=%', st, m, d, h;
    RAISE NOTICE 'names the function: %', c LIKE '%bgw_proxy function public.fail, partition 0%';
END $$;
-- a failed call leaves the session and the pool usable
CREATE FUNCTION echo_int2(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; SELECT echo_int(i); $$ LANGUAGE bgw_proxy;
SELECT echo_int2(5);

-- remote notices and warnings are relayed
CREATE FUNCTION chatty() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT chatty();

-- a missing remote function is the remote's error
CREATE FUNCTION not_there(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT not_there(1);

-- connection failures name the problem
CREATE FUNCTION no_db() RETURNS int AS $$ CONNECT 'dbname=bgw_no_such_db'; SELECT 1; $$ LANGUAGE bgw_proxy;
SELECT no_db();
CREATE FUNCTION refused() RETURNS int AS $$ CONNECT 'host=127.0.0.1 port=1 dbname=x'; SELECT 1; $$ LANGUAGE bgw_proxy;
SELECT refused();

-- wrong result shapes
CREATE FUNCTION two_rows() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; SELECT generate_series(1, 2); $$ LANGUAGE bgw_proxy;
SELECT two_rows();
CREATE FUNCTION no_rows() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; SELECT 1 WHERE false; $$ LANGUAGE bgw_proxy;
SELECT no_rows();
CREATE FUNCTION two_cols() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; SELECT 1, 2; $$ LANGUAGE bgw_proxy;
SELECT two_cols();
CREATE FUNCTION bad_value() RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; SELECT 'abc'; $$ LANGUAGE bgw_proxy;
SELECT bad_value();

-- the validator rejects bad bodies at CREATE FUNCTION, pointing at the spot
CREATE FUNCTION v1() RETURNS int AS $$ CONNECT 'dbname=x' $$ LANGUAGE bgw_proxy;
CREATE FUNCTION v2() RETURNS int AS $$
    CONNECT 'dbname=x';
    CONNECT 'dbname=y';
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION v3() RETURNS int AS $$ SELECT 1; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION v4() RETURNS int AS $$ CONNECT 'dbname=x; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION v5() RETURNS int AS $$ CONNECT 'port=notanumber sslmode'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION v6(a int) RETURNS int AS $$ CONNECT 'dbname=x'; SELECT $2; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION v7() RETURNS int AS $$ CONNECT 'dbname=x'; bogus; $$ LANGUAGE bgw_proxy;
-- nothing was created
SELECT count(*) FROM pg_proc WHERE proname ~ '^v[0-9]$';
