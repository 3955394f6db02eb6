-- The other texts citizens send the OA (neither a lookup nor "huỷ"), kept beside the
-- lookups so the console shows them with what Loa answered. `body` is the text with
-- invisible and control characters removed, at most 2,000 characters
-- (`body_truncated` says it was cut). A text's `outcome` is `forward` when it gets
-- the day's automatic reply (published by the text reply relay, `forwarded_at` set
-- once confirmed) or `answered_today` when the user already got it that day (Vietnam
-- time). Deleted with the lookups by the retention sweep and by an erasure.
ALTER TABLE notifier.citizen_messages DROP CONSTRAINT IF EXISTS citizen_messages_kind_check;
ALTER TABLE notifier.citizen_messages
    ADD CONSTRAINT citizen_messages_kind_check CHECK (kind IN ('lookup', 'text'));
ALTER TABLE notifier.citizen_messages DROP CONSTRAINT IF EXISTS citizen_messages_outcome_check;
ALTER TABLE notifier.citizen_messages
    ADD CONSTRAINT citizen_messages_outcome_check
        CHECK (outcome IN ('forward', 'rate_limited', 'answered_today'));
ALTER TABLE notifier.citizen_messages
    ADD COLUMN body text CHECK (char_length(body) <= 2000),
    ADD COLUMN body_truncated boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT citizen_messages_body_only_in_texts CHECK ((kind = 'text') = (body IS NOT NULL));
-- The console's filter by kind, newest first.
CREATE INDEX citizen_messages_by_tenant_kind ON notifier.citizen_messages (tenant, kind, id);
