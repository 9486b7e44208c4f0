-- Functions every partition database of the regression tests has.
CREATE FUNCTION echo_where(key text) RETURNS text LANGUAGE sql
    AS $$ SELECT key || '@' || whoami() $$;
CREATE FUNCTION store(keys text[], vals int[]) RETURNS SETOF text LANGUAGE sql
    AS $$ SELECT k || '=' || v || '@' || whoami() FROM unnest(keys, vals) AS u(k, v) $$;
