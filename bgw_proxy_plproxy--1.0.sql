/* bgw_proxy_plproxy--1.0.sql: an unmodified PL/Proxy schema runs on bgw_proxy
 * with only its CREATE EXTENSION line changed. No schema named plproxy is
 * created: PL/Proxy users create it themselves for get_cluster_* functions. */

\echo Use "CREATE EXTENSION bgw_proxy_plproxy" to load this file. \quit

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'plproxy') THEN
        RAISE EXCEPTION 'the plproxy extension is installed in this database'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'bgw_proxy_plproxy provides LANGUAGE plproxy and FOREIGN DATA WRAPPER plproxy itself.',
                  HINT = 'Drop the plproxy extension first (DROP EXTENSION plproxy), then create bgw_proxy_plproxy.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_language WHERE lanname = 'plproxy') THEN
        RAISE EXCEPTION 'a language named plproxy already exists in this database'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first; bgw_proxy_plproxy creates LANGUAGE plproxy itself.';
    END IF;
END $$;

CREATE FUNCTION plproxy_call_handler()
RETURNS language_handler
AS 'MODULE_PATHNAME', 'bgw_proxy_call_handler'
LANGUAGE C;

CREATE FUNCTION plproxy_validator(oid)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_validator'
LANGUAGE C STRICT;

CREATE LANGUAGE plproxy
    HANDLER plproxy_call_handler
    VALIDATOR plproxy_validator;

COMMENT ON LANGUAGE plproxy IS 'PL/Proxy language, served by bgw_proxy';

CREATE FUNCTION plproxy_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'bgw_proxy_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER plproxy VALIDATOR plproxy_fdw_validator;
