-- What the admin console asks of the notifier, each through an index: today's
-- deliveries (BRIN on the insert time: tiny, nearly free to keep), deliveries needing
-- attention by state (few rows), a failed delivery's dead letter, citizens' messages
-- newest first.
CREATE INDEX IF NOT EXISTS deliveries_created_brin ON notifier.deliveries USING brin (created_at);
CREATE INDEX IF NOT EXISTS deliveries_needing_attention
    ON notifier.deliveries (tenant, status, updated_at, notification_id)
    WHERE status IN ('failed', 'deferred', 'held', 'ambiguous', 'retrying');
CREATE INDEX IF NOT EXISTS dead_letters_by_message_id
    ON notifier.dead_letters (tenant, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS citizen_messages_by_tenant ON notifier.citizen_messages (tenant, id);
