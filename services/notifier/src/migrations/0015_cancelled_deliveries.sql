-- A delivery an admin cancelled is `cancelled`, its own final status: it used to be
-- stored as `failed`, which a later claim (the tracker's relay publishing the request
-- again, or a replay) could take and send after all.
ALTER TABLE notifier.deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE notifier.deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN (
    'sending', 'sent', 'delivered', 'seen', 'failed', 'deferred', 'held', 'ambiguous', 'retrying',
    'skipped', 'cancelled'
));
UPDATE notifier.deliveries
   SET status = 'cancelled'
 WHERE status = 'failed' AND last_error = 'Cancelled by an admin' AND last_error_code IS NULL;
-- The console lists cancelled deliveries beside the ones needing attention.
DROP INDEX IF EXISTS notifier.deliveries_needing_attention;
CREATE INDEX deliveries_needing_attention
    ON notifier.deliveries (tenant, status, updated_at, notification_id)
    WHERE status IN ('failed', 'deferred', 'held', 'ambiguous', 'retrying', 'cancelled');
