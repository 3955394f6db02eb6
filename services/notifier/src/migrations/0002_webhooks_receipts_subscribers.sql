-- Zalo webhooks (deduplicated), delivery receipts and history, the OA's subscribers
-- and the chat lookups citizens send to the OA.

-- Receipts move a delivery on to `delivered` and `seen`. Migration 3 (the delivery
-- engine) widens the same constraint with the same list; both are idempotent.
ALTER TABLE notifier.deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE notifier.deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('sending', 'sent', 'delivered', 'seen', 'failed', 'deferred', 'held',
                      'ambiguous', 'retrying'));
ALTER TABLE notifier.deliveries
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    ADD COLUMN IF NOT EXISTS seen_at      timestamptz;
-- OA receipts and seen events name only Zalo's message id.
CREATE INDEX IF NOT EXISTS deliveries_by_zalo_msg_id
    ON notifier.deliveries (tenant, zalo_msg_id) WHERE zalo_msg_id IS NOT NULL;

-- Every webhook accepted, once: a redelivered one hits the primary key and has no
-- second effect. `dedup_key` is `message.msg_id`, or the SHA-256 of the raw body for
-- events without one (follow, seen). `outcome`: `applied`, `ignored` (an event we do
-- not act on), `pending` (a receipt whose delivery is not recorded yet; retried at
-- `next_attempt_at`) or `unmatched` (no delivery of ours after an hour).
CREATE TABLE notifier.webhook_events (
    tenant          text NOT NULL,
    event_name      text NOT NULL,
    dedup_key       text NOT NULL,
    msg_id          text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    body            jsonb NOT NULL,
    outcome         text NOT NULL
                    CHECK (outcome IN ('received', 'applied', 'ignored', 'pending', 'unmatched')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    PRIMARY KEY (tenant, event_name, dedup_key)
);
CREATE INDEX webhook_events_pending
    ON notifier.webhook_events (next_attempt_at) WHERE outcome = 'pending';
CREATE INDEX webhook_events_by_received_at ON notifier.webhook_events (received_at);

-- A delivery's history: one row per status transition (sent, delivered, seen, failed,
-- …). `sent`, `delivered` and `seen` happen at most once per delivery.
CREATE TABLE notifier.delivery_events (
    id              bigserial PRIMARY KEY,
    notification_id text NOT NULL,
    tenant          text NOT NULL,
    status          text NOT NULL,
    at              timestamptz NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_events_by_notification
    ON notifier.delivery_events (notification_id, id);
CREATE UNIQUE INDEX delivery_events_once
    ON notifier.delivery_events (notification_id, status)
    WHERE status IN ('sent', 'delivered', 'seen');

-- Zalo users of each tenant's OA, from follow / unfollow (and `user_submit_info` for
-- the phone). `updated_at` is the time of the last follow state Zalo reported, so an
-- older event arriving late does not undo a newer one.
CREATE TABLE notifier.subscribers (
    tenant       text NOT NULL,
    zalo_user_id text NOT NULL,
    phone        text,
    following    boolean NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, zalo_user_id)
);
CREATE INDEX subscribers_by_phone
    ON notifier.subscribers (tenant, phone) WHERE phone IS NOT NULL;

-- What citizens asked the OA in chat ("tra cứu <code>"), for the tracker to answer
-- (`forwarded_at` is set once handed over).
CREATE TABLE notifier.citizen_messages (
    id           bigserial PRIMARY KEY,
    tenant       text NOT NULL,
    zalo_user_id text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('lookup')),
    dossier_code text,
    msg_id       text NOT NULL,
    received_at  timestamptz NOT NULL,
    forwarded_at timestamptz,
    UNIQUE (tenant, msg_id)
);
CREATE INDEX citizen_messages_unforwarded
    ON notifier.citizen_messages (id) WHERE forwarded_at IS NULL;
