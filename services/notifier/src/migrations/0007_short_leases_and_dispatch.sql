-- Short, renewed leases and the dispatch mark, so that a crashed sender costs seconds
-- and its unknown sends are told apart from the ones it never made.
--
-- `lease_owner`: the sender process holding the lease; it renews `lease_until` every
-- second or so while alive, so a dead sender's leases lapse within a few seconds.
-- `dispatched_at`: set (one statement per send round) just before the Zalo call of an
-- attempt, cleared by the next claim. A lapsed lease with a dispatch mark is a send
-- whose outcome is unknown (it may have reached Zalo); without one it never left.
-- `prior_doubt`: what the latest claim found in doubt about the attempt before it
-- (`interrupted`, `unanswered` or NULL), computed from the row as the claim locked it.
ALTER TABLE notifier.deliveries
    ADD COLUMN IF NOT EXISTS lease_owner   bigint,
    ADD COLUMN IF NOT EXISTS dispatched_at timestamptz,
    ADD COLUMN IF NOT EXISTS prior_doubt   text;

-- A copy of a request that arrived while another sender held its lease is parked in
-- `request` on the `sending` row and acked; the scheduler republishes it once the
-- lease lapses without a result (its holder died). Rare rows: a small partial index.
CREATE INDEX IF NOT EXISTS deliveries_parked_behind_lease
    ON notifier.deliveries (lease_until) WHERE status = 'sending' AND request IS NOT NULL;

-- Before resending a request whose earlier send is unknown, the sender looks for a
-- delivery receipt carrying its tracking id (ZNS receipts echo our notification id).
CREATE INDEX IF NOT EXISTS webhook_events_by_tracking_id
    ON notifier.webhook_events (tenant, (body -> 'message' ->> 'tracking_id'))
    WHERE event_name = 'user_received_message';
