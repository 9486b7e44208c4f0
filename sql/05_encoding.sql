-- The remote client_encoding follows the calling database's encoding, so
-- text converts correctly whatever the two sides use.
\c bgw_remote
CREATE FUNCTION remote_encoding() RETURNS text LANGUAGE sql
    AS $$ SELECT current_setting('client_encoding') $$;
CREATE FUNCTION text_length(t text) RETURNS int LANGUAGE sql AS $$ SELECT length(t) $$;
CREATE FUNCTION e_acute() RETURNS text LANGUAGE sql AS $$ SELECT chr(233) $$;
DROP DATABASE IF EXISTS bgw_latin1;
CREATE DATABASE bgw_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
\c bgw_latin1
CREATE EXTENSION bgw_proxy;
CREATE FUNCTION remote_encoding() RETURNS text AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION text_length(t text) RETURNS int AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION e_acute() RETURNS text AS $$ CONNECT 'dbname=bgw_remote'; $$ LANGUAGE bgw_proxy;
SELECT remote_encoding();
-- one LATIN1 character (one byte here, two in the UTF8 remote) is one character there
SELECT text_length(chr(233)) AS remote_length, octet_length(chr(233)) AS local_bytes;
SELECT e_acute() = chr(233) AS round_trip_ok, octet_length(e_acute()) AS local_bytes;
\c contrib_regression
