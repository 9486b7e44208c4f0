-- Bodies are checked at CREATE FUNCTION; nothing below gets created.
CREATE FUNCTION r1(k text) RETURNS int AS $$ CLUSTER 'quad'; CONNECT 'dbname=x'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r2(k text) RETURNS int AS $$ RUN ON 0; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r3(k text) RETURNS int AS $$ CONNECT 'dbname=x'; RUN ON 0; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r4(k text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON ALL; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r5(k text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON nokey; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r6(k text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON $2; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r7(k text) RETURNS SETOF int AS $$ CLUSTER 'quad'; SPLIT k; RUN ON hashtext(k); $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r8(k text[]) RETURNS SETOF int AS $$ CLUSTER 'quad'; SPLIT k, $1; RUN ON 0; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r9(k text[]) RETURNS SETOF int AS $$ CLUSTER 'quad'; SPLIT kk; RUN ON 0; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r10(k text) RETURNS int AS $$ CONNECT nokey; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r11(k text) RETURNS int AS $$ CLUSTER quad; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r12(k text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON hashtext(k); RUN ON 1; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r13(k text) RETURNS int AS $$ CLUSTER 'quad'; RUN ON hashtext(k; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r14(k text) RETURNS int AS $$ CLUSTER 'quad'; TARGET; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r15(k text) RETURNS int AS $$ CLUSTER 'quad'; SELECT k FROM t WHERE x = $3; $$ LANGUAGE bgw_proxy;
SELECT count(*) AS created FROM pg_proc WHERE proname ~ '^r[0-9]+$';
-- accepted forms
CREATE FUNCTION ok1(k text) RETURNS int AS $$
    -- a comment, /* and another */ mixed case
    cluster 'quad';
    Run On HashText(k);
    select whoami();
$$ LANGUAGE bgw_proxy;
CREATE FUNCTION ok2(k text, c text) RETURNS int AS $$ CONNECT c; SELECT 1; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION ok3(c text) RETURNS int AS $$ CONNECT $1; SELECT 1; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION conn_for(k text) RETURNS text LANGUAGE sql AS $$ SELECT 'dbname=bgw_part' || (hashtext(k) & 3) $$;
CREATE FUNCTION ok4(k text) RETURNS int AS $$ CONNECT conn_for(k); SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT ok1('z'), ok2('z', 'dbname=bgw_part2'), ok3('dbname=bgw_part3'), ok4('z'), hashtext('z') & 3 AS expected;
-- CONNECT from an argument needs a text argument; no polymorphic types
CREATE FUNCTION r16(k int) RETURNS int AS $$ CONNECT k; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r17(k anyelement) RETURNS int AS $$ CONNECT 'dbname=x'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r18(k int) RETURNS anyarray AS $$ CONNECT 'dbname=x'; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r19(k int) RETURNS int AS $$ CLUSTER 'quad'; TARGET other; SELECT 1; $$ LANGUAGE bgw_proxy;
-- SPLIT ALL without array arguments splits nothing, as in PL/Proxy
CREATE FUNCTION ok5(k text) RETURNS SETOF int AS $$ CLUSTER 'quad'; SPLIT ALL; RUN ON 2; SELECT whoami(); $$ LANGUAGE bgw_proxy;
SELECT * FROM ok5('x');
-- volatility: STABLE and IMMUTABLE are reads for LANGUAGE bgw_proxy, and
-- LANGUAGE plproxy allows VOLATILE only (18_replicas tests both)
-- pseudo-types: rejected as arguments; as the result, when called
CREATE FUNCTION r22(k cstring) RETURNS int AS $$ CLUSTER 'quad'; RUN ON 0; SELECT 1; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION r23(k text) RETURNS cstring AS $$ CLUSTER 'quad'; RUN ON 0; SELECT k; $$ LANGUAGE bgw_proxy;
SELECT r23('x');
