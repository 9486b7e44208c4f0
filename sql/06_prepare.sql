-- Remote queries run as prepared statements of the pooled connection.
\c bgw_remote
CREATE FUNCTION forget_statements() RETURNS int LANGUAGE plpgsql
    AS $$ BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END $$;
CREATE FUNCTION statements_here() RETURNS bigint LANGUAGE sql
    AS $$ SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'bgw_proxy_%' $$;
\c contrib_regression
CREATE FUNCTION forget_statements() RETURNS int AS $$ CONNECT 'dbname=bgw_remote application_name=prep'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION statements_here() RETURNS bigint AS $$ CONNECT 'dbname=bgw_remote application_name=prep'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION prep_echo(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote application_name=prep'; SELECT i; $$ LANGUAGE bgw_proxy;
SELECT prep_echo(1), prep_echo(2);
-- the connection holds the prepared statements of the queries it ran
SELECT statements_here() >= 2 AS prepared_remotely;
-- a connection that loses them (as through a transaction-mode pooler) is
-- detected: the call is sent again as a plain query and succeeds
SELECT forget_statements();
SELECT prep_echo(3);
SELECT statements_here() AS prepared_after_fallback;
-- off: plain queries
SET bgw_proxy.remote_prepare = off;
CREATE FUNCTION prep_echo2(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote application_name=prep2'; SELECT i; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION statements_here2() RETURNS bigint AS $$ CONNECT 'dbname=bgw_remote application_name=prep2'; SELECT count(*) FROM pg_prepared_statements; $$ LANGUAGE bgw_proxy;
SELECT prep_echo2(4), statements_here2() AS prepared_when_off;
RESET bgw_proxy.remote_prepare;
