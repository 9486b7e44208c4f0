-- Results in binary: asked for when every result column of the (prepared)
-- remote statement is exactly its declared type and a built-in type with a
-- stable binary form; anything else comes in text, through the declared
-- type's input function. The same functions on a cluster with
-- disable_binary give the reference.
\c bgw_part0
CREATE FUNCTION kinds(OUT i int4, OUT b bigint, OUT n numeric, OUT f float8, OUT t timestamptz,
                      OUT d date, OUT u uuid, OUT bt bytea, OUT a int4[], OUT ok bool)
    LANGUAGE sql AS $$
    SELECT -7, 9000000000, 12345.678901, 0.1::float8, '2026-11-21 12:34:56.789+00'::timestamptz,
           '2000-02-29'::date, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid,
           '\x00ff10'::bytea, ARRAY[1, NULL, 3], true $$;
CREATE FUNCTION big(v bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT v $$;
CREATE FUNCTION num(v numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT v $$;
CREATE FUNCTION words() RETURNS SETOF text LANGUAGE sql AS $$ VALUES ('one'), ('two') $$;
\c contrib_regression
SET timezone = 'UTC';
CREATE SERVER bin FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=bgw_part0 application_name=bin');
CREATE SERVER txt FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'dbname=bgw_part0 application_name=txt',
                                                          disable_binary '1');
CREATE FUNCTION kinds_bin(OUT i int4, OUT b bigint, OUT n numeric, OUT f float8, OUT t timestamptz,
                          OUT d date, OUT u uuid, OUT bt bytea, OUT a int4[], OUT ok bool)
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT * FROM kinds(); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION kinds_txt(OUT i int4, OUT b bigint, OUT n numeric, OUT f float8, OUT t timestamptz,
                          OUT d date, OUT u uuid, OUT bt bytea, OUT a int4[], OUT ok bool)
    AS $$ CLUSTER 'txt'; RUN ON 0; SELECT * FROM kinds(); $$ LANGUAGE bgw_proxy;
SELECT * FROM kinds_bin();
SELECT (SELECT row(k.*)::text FROM kinds_bin() k) = (SELECT row(k.*)::text FROM kinds_txt() k) AS same_values;
SELECT cluster, calls, binary_calls FROM pg_stat_bgw_proxy WHERE cluster IN ('bin', 'txt') ORDER BY 1;

-- a remote bigint declared int locally: in text, with the local checks
CREATE FUNCTION big_as_int(v bigint) RETURNS int
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT big(v); $$ LANGUAGE bgw_proxy;
SELECT bgw_proxy_stat_reset('bin');
SELECT big_as_int(42);
SELECT calls, binary_calls FROM pg_stat_bgw_proxy WHERE cluster = 'bin';
SELECT big_as_int(9000000000);
-- declared as the remote returns it: binary
CREATE FUNCTION big_as_big(v bigint) RETURNS bigint
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT big(v); $$ LANGUAGE bgw_proxy;
SELECT big_as_big(9000000000);
SELECT calls, binary_calls FROM pg_stat_bgw_proxy WHERE cluster = 'bin';
-- a domain with a check (text), and a numeric column with a typmod (binary)
CREATE DOMAIN small_positive AS int CHECK (VALUE BETWEEN 1 AND 100);
CREATE FUNCTION big_as_domain(v bigint) RETURNS small_positive
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT big(v); $$ LANGUAGE bgw_proxy;
SELECT big_as_domain(5);
SELECT big_as_domain(500);
CREATE TYPE rounded AS (r numeric(6, 2));
CREATE FUNCTION num_rounded(v numeric) RETURNS rounded
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT num(v) AS r; $$ LANGUAGE bgw_proxy;
SELECT * FROM num_rounded(3.14159);
SELECT * FROM num_rounded(123456.7);
-- NULLs, and a domain's NOT NULL on a column of a composite result
SELECT big_as_int(NULL) IS NULL AS null_kept;
CREATE DOMAIN must_have AS bigint NOT NULL;
CREATE TYPE pair_nn AS (a int, b must_have);
CREATE FUNCTION nn_pair(v bigint) RETURNS pair_nn
    AS $$ CLUSTER 'bin'; RUN ON 0; SELECT 1 AS a, big(v) AS b; $$ LANGUAGE bgw_proxy;
SELECT * FROM nn_pair(5);
SELECT * FROM nn_pair(NULL);

-- text results stay text; unprepared statements too
CREATE FUNCTION words_bin() RETURNS SETOF text AS $$ CLUSTER 'bin'; RUN ON 0; SELECT * FROM words(); $$ LANGUAGE bgw_proxy;
SELECT bgw_proxy_stat_reset('bin');
SELECT * FROM words_bin();
SET bgw_proxy.remote_prepare = off;
SELECT big_as_int(7);
RESET bgw_proxy.remote_prepare;
SELECT calls, binary_calls FROM pg_stat_bgw_proxy WHERE cluster = 'bin';
