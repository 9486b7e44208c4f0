-- wait_for(query): runs a query returning one boolean until it is true, for
-- up to 10 s, and says whether it became true. For what the workers do
-- asynchronously (gauges, closing connections). pg_stat_activity is read
-- once per transaction unless the snapshot is cleared: it is, every time.
CREATE OR REPLACE FUNCTION wait_for(cond text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE ok bool;
BEGIN
    FOR i IN 1 .. 200 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXECUTE cond INTO ok;
        IF ok THEN RETURN true; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
