-- Progress counters kept per statement, not per row. The row-level triggers of
-- migration 11 ran a PL/pgSQL function and one or two upserts into
-- `broadcast_counts` for every broadcast delivery inserted or changed: three upserts
-- per recipient (claimed, then sent), the largest share of PostgreSQL's work while a
-- broadcast is sent (about 40 % of its CPU in a profile of a 400,000-recipient
-- fan-out). These statement-level triggers read the statement's transition tables
-- and write one upsert per (broadcast, key) that the statement touched: a sender's
-- batch of 128 claims is one upsert, not 128. The counts are the same: a row counts
-- +1 under its new key and -1 under its old one when a statement changes its key
-- (status, or the failure's code or reason), within the same transaction as the
-- change. `shard` stays the writing backend's pid (see migration 11).
--
-- PostgreSQL allows no column list on an UPDATE trigger with transition tables, so
-- the update trigger fires for every UPDATE of `deliveries` and finds the rows whose
-- key changed by joining the old and new rows on the primary key. A statement that
-- touches no broadcast delivery (a case update's claim, result or dispatch mark)
-- returns after one look at its new rows.
DROP TRIGGER deliveries_count_broadcast_insert ON notifier.deliveries;
DROP TRIGGER deliveries_count_broadcast_update ON notifier.deliveries;
DROP FUNCTION notifier.count_broadcast_delivery();

CREATE FUNCTION notifier.count_broadcast_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM inserted WHERE broadcast_id IS NOT NULL) THEN
        RETURN NULL;  -- case updates: nothing to count
    END IF;
    INSERT INTO notifier.broadcast_counts AS c (broadcast_id, key, shard, n)
    SELECT r.broadcast_id,
           notifier.broadcast_count_key(r.status, r.last_error_code, r.last_error),
           pg_backend_pid(), count(*)
      FROM inserted r
     WHERE r.broadcast_id IS NOT NULL
     GROUP BY 1, 2
    ON CONFLICT (broadcast_id, key, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION notifier.count_broadcast_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM after_rows WHERE broadcast_id IS NOT NULL) THEN
        RETURN NULL;  -- case updates: nothing to count
    END IF;
    INSERT INTO notifier.broadcast_counts AS c (broadcast_id, key, shard, n)
    SELECT ch.broadcast_id, v.key, pg_backend_pid(), sum(v.delta)
      FROM (SELECT a.broadcast_id,
                   notifier.broadcast_count_key(b.status, b.last_error_code, b.last_error) AS old_key,
                   notifier.broadcast_count_key(a.status, a.last_error_code, a.last_error) AS new_key
              FROM after_rows a
              JOIN before_rows b ON b.notification_id = a.notification_id
             WHERE a.broadcast_id IS NOT NULL) ch
     CROSS JOIN LATERAL (VALUES (ch.old_key, -1), (ch.new_key, 1)) AS v(key, delta)
     WHERE ch.old_key <> ch.new_key
     GROUP BY 1, 2
    HAVING sum(v.delta) <> 0
    ON CONFLICT (broadcast_id, key, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_count_broadcast_inserts
    AFTER INSERT ON notifier.deliveries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION notifier.count_broadcast_inserts();
CREATE TRIGGER deliveries_count_broadcast_updates
    AFTER UPDATE ON notifier.deliveries
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notifier.count_broadcast_updates();
