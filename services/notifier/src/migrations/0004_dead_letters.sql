-- Every message a Loa consumer gave up on, or the broker dead-lettered after its delivery
-- limit, as consumed from `loa.dead-letters`: listed and replayed by admins.
CREATE TABLE notifier.dead_letters (
    id            bigserial PRIMARY KEY,
    -- sha256 of source queue, reason, routing key, message id and body: a redelivered
    -- dead letter, or the same message dead-lettered twice for the same reason, is one row.
    content_hash  bytea NOT NULL UNIQUE,
    -- The `tenant` of the body (events and notification requests carry one); NULL when
    -- the body has none (poison), and then only the CLI sees the row.
    tenant        text,
    -- The queue whose consumer (or delivery limit) gave up on it; `unknown` if not said.
    source_queue  text NOT NULL,
    -- Where a replay publishes it; NULL when the source is unknown (not replayable).
    exchange      text,
    routing_key   text NOT NULL,
    reason        text NOT NULL,
    -- Every AMQP header as JSON (replays restore them, minus the dead-letter ones).
    headers       jsonb NOT NULL DEFAULT '{}',
    body          bytea NOT NULL,
    message_id    text,
    -- When it (last) died; a replayed row that dies again is revived, not duplicated.
    dead_at       timestamptz NOT NULL DEFAULT now(),
    deaths        integer NOT NULL DEFAULT 1,
    replayed_at   timestamptz,
    replay_count  integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_by_tenant ON notifier.dead_letters (tenant, id);
CREATE INDEX dead_letters_unreplayed ON notifier.dead_letters (tenant) WHERE replayed_at IS NULL;
