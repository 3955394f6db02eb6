-- Chat lookups answered: each "tra cứu <mã>" a citizen writes is kept with what became
-- of it. `forward` ones are handed to the tracker by the lookup relay (`forwarded_at`
-- set once its publish is confirmed); `rate_limited` ones (over the per-user limit)
-- are kept, counted and never forwarded. The index serves the per-user count of
-- recent lookups the limit reads.
ALTER TABLE notifier.citizen_messages
    ADD COLUMN outcome text NOT NULL DEFAULT 'forward'
        CHECK (outcome IN ('forward', 'rate_limited'));
CREATE INDEX citizen_messages_by_user
    ON notifier.citizen_messages (tenant, zalo_user_id, received_at);
-- The relay's queue: only lookups still to forward (rate-limited ones never are).
DROP INDEX notifier.citizen_messages_unforwarded;
CREATE INDEX citizen_messages_to_forward
    ON notifier.citizen_messages (id) WHERE forwarded_at IS NULL AND outcome = 'forward';
