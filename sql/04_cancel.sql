-- Cancelling a proxy call cancels the remote statement too.
CREATE FUNCTION nap(s float8) RETURNS int AS $$ CONNECT 'dbname=bgw_remote application_name=nap_probe'; $$ LANGUAGE bgw_proxy;
SELECT nap(0.01);
SET statement_timeout = '300ms';
SELECT nap(30);
RESET statement_timeout;
-- the remote statement was cancelled: nothing of ours is still active there
-- (poll: the cancel request travels asynchronously; pg_stat_activity is
-- read once per transaction unless its snapshot is cleared)
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'nap_probe'
                              AND state = 'active');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
\c bgw_remote
SELECT count(*) AS still_active FROM pg_stat_activity WHERE application_name = 'nap_probe' AND state = 'active';
\c contrib_regression
-- the session, its slot and the pool work right after
SELECT nap(0.01);
SELECT sum(requests_in_flight) AS in_flight FROM pg_stat_bgw_proxy_workers;

SELECT count(*) FROM series(1000);
