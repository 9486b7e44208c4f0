-- Remote connections are pooled in the workers and shared by sessions.
CREATE FUNCTION pool_probe(i int) RETURNS int AS $$ CONNECT 'dbname=bgw_remote application_name=pool_probe'; SELECT i; $$ LANGUAGE bgw_proxy;
SELECT pool_probe(1);
SELECT sum(connects) AS connects_before FROM pg_stat_bgw_proxy_workers \gset

-- a second session reuses the connection the first one opened
\c -
SELECT pool_probe(2);
SELECT sum(connects) - :connects_before AS new_connects FROM pg_stat_bgw_proxy_workers;

-- 100 fresh sessions in a row: still no new remote connection
\o /dev/null
\c -
SELECT pool_probe(1);
\c -
SELECT pool_probe(2);
\c -
SELECT pool_probe(3);
\c -
SELECT pool_probe(4);
\c -
SELECT pool_probe(5);
\c -
SELECT pool_probe(6);
\c -
SELECT pool_probe(7);
\c -
SELECT pool_probe(8);
\c -
SELECT pool_probe(9);
\c -
SELECT pool_probe(10);
\c -
SELECT pool_probe(11);
\c -
SELECT pool_probe(12);
\c -
SELECT pool_probe(13);
\c -
SELECT pool_probe(14);
\c -
SELECT pool_probe(15);
\c -
SELECT pool_probe(16);
\c -
SELECT pool_probe(17);
\c -
SELECT pool_probe(18);
\c -
SELECT pool_probe(19);
\c -
SELECT pool_probe(20);
\c -
SELECT pool_probe(21);
\c -
SELECT pool_probe(22);
\c -
SELECT pool_probe(23);
\c -
SELECT pool_probe(24);
\c -
SELECT pool_probe(25);
\c -
SELECT pool_probe(26);
\c -
SELECT pool_probe(27);
\c -
SELECT pool_probe(28);
\c -
SELECT pool_probe(29);
\c -
SELECT pool_probe(30);
\c -
SELECT pool_probe(31);
\c -
SELECT pool_probe(32);
\c -
SELECT pool_probe(33);
\c -
SELECT pool_probe(34);
\c -
SELECT pool_probe(35);
\c -
SELECT pool_probe(36);
\c -
SELECT pool_probe(37);
\c -
SELECT pool_probe(38);
\c -
SELECT pool_probe(39);
\c -
SELECT pool_probe(40);
\c -
SELECT pool_probe(41);
\c -
SELECT pool_probe(42);
\c -
SELECT pool_probe(43);
\c -
SELECT pool_probe(44);
\c -
SELECT pool_probe(45);
\c -
SELECT pool_probe(46);
\c -
SELECT pool_probe(47);
\c -
SELECT pool_probe(48);
\c -
SELECT pool_probe(49);
\c -
SELECT pool_probe(50);
\c -
SELECT pool_probe(51);
\c -
SELECT pool_probe(52);
\c -
SELECT pool_probe(53);
\c -
SELECT pool_probe(54);
\c -
SELECT pool_probe(55);
\c -
SELECT pool_probe(56);
\c -
SELECT pool_probe(57);
\c -
SELECT pool_probe(58);
\c -
SELECT pool_probe(59);
\c -
SELECT pool_probe(60);
\c -
SELECT pool_probe(61);
\c -
SELECT pool_probe(62);
\c -
SELECT pool_probe(63);
\c -
SELECT pool_probe(64);
\c -
SELECT pool_probe(65);
\c -
SELECT pool_probe(66);
\c -
SELECT pool_probe(67);
\c -
SELECT pool_probe(68);
\c -
SELECT pool_probe(69);
\c -
SELECT pool_probe(70);
\c -
SELECT pool_probe(71);
\c -
SELECT pool_probe(72);
\c -
SELECT pool_probe(73);
\c -
SELECT pool_probe(74);
\c -
SELECT pool_probe(75);
\c -
SELECT pool_probe(76);
\c -
SELECT pool_probe(77);
\c -
SELECT pool_probe(78);
\c -
SELECT pool_probe(79);
\c -
SELECT pool_probe(80);
\c -
SELECT pool_probe(81);
\c -
SELECT pool_probe(82);
\c -
SELECT pool_probe(83);
\c -
SELECT pool_probe(84);
\c -
SELECT pool_probe(85);
\c -
SELECT pool_probe(86);
\c -
SELECT pool_probe(87);
\c -
SELECT pool_probe(88);
\c -
SELECT pool_probe(89);
\c -
SELECT pool_probe(90);
\c -
SELECT pool_probe(91);
\c -
SELECT pool_probe(92);
\c -
SELECT pool_probe(93);
\c -
SELECT pool_probe(94);
\c -
SELECT pool_probe(95);
\c -
SELECT pool_probe(96);
\c -
SELECT pool_probe(97);
\c -
SELECT pool_probe(98);
\c -
SELECT pool_probe(99);
\c -
SELECT pool_probe(100);
\o
SELECT sum(connects) - :connects_before AS new_connects_after_100_sessions FROM pg_stat_bgw_proxy_workers;
-- and the remote sees exactly one connection of that pool
\c bgw_remote
SELECT count(*) AS remote_connections FROM pg_stat_activity WHERE application_name = 'pool_probe';
\c contrib_regression
SELECT sum(conns_open) >= 1 AS pooled, sum(requests_in_flight) AS in_flight FROM pg_stat_bgw_proxy_workers;

-- the connection is per role: another role gets its own connection
CREATE ROLE bgw_other LOGIN;
GRANT USAGE ON SCHEMA public TO bgw_other;
SET ROLE bgw_other;
SELECT pool_probe(7);
RESET ROLE;
\c bgw_remote
SELECT usename, count(*) FROM pg_stat_activity WHERE application_name = 'pool_probe' GROUP BY 1 ORDER BY 1;
\c contrib_regression
SELECT submitted - completed AS outstanding FROM pg_stat_bgw_proxy_queue;

-- a call with one target runs in the caller's own backend, on a connection
-- a worker parked for backends (bgw_proxy.direct_calls): it enters no
-- queue, and it still shows in the statistics
SELECT calls AS calls_before FROM pg_stat_bgw_proxy WHERE conninfo LIKE '%pool_probe%' AND role = 'postgres' \gset
SELECT submitted AS submitted_before FROM pg_stat_bgw_proxy_queue \gset
SELECT pool_probe(8);
SELECT submitted = :submitted_before AS went_direct FROM pg_stat_bgw_proxy_queue;
SELECT calls = :calls_before + 1 AS counted FROM pg_stat_bgw_proxy WHERE conninfo LIKE '%pool_probe%' AND role = 'postgres';
-- off: the same call goes through a worker
SET bgw_proxy.direct_calls = off;
SELECT pool_probe(9);
SELECT submitted = :submitted_before + 1 AS through_worker FROM pg_stat_bgw_proxy_queue;
RESET bgw_proxy.direct_calls;
