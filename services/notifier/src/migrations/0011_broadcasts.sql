-- Policy broadcasts: the tenant's audience (subscribers from webhooks and imports),
-- broadcasts with their checkpoint and runner lease, progress counters kept by a
-- trigger on the deliveries, the monthly promotion cap per citizen and the day's
-- promotion (tag 3) sends.

-- The audience: one row per citizen of a tenant, known by Zalo user id (webhooks),
-- by phone (imports) or both. `id` orders the keyset pages of a fan-out and names the
-- citizen in a broadcast's notification ids. `following`: NULL until Zalo says (an
-- imported citizen), false after an unfollow (then out of every later broadcast).
-- `announcements`: opted in to broadcasts (separate from following); `opted_out_at`:
-- the citizen (or an admin for them) opted out, which no import undoes. `updated_at`:
-- Zalo's time of the latest follow event applied ('-infinity' before any).
ALTER TABLE notifier.subscribers DROP CONSTRAINT subscribers_pkey;
ALTER TABLE notifier.subscribers
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ADD COLUMN tags text[] COLLATE "C" NOT NULL DEFAULT '{}',
    ADD COLUMN announcements boolean NOT NULL DEFAULT false,
    ADD COLUMN opted_out_at timestamptz,
    ADD COLUMN name text,
    ADD COLUMN imported_at timestamptz;
ALTER TABLE notifier.subscribers ALTER COLUMN zalo_user_id DROP NOT NULL;
ALTER TABLE notifier.subscribers ALTER COLUMN following DROP NOT NULL;
ALTER TABLE notifier.subscribers ADD CONSTRAINT subscribers_known
    CHECK (zalo_user_id IS NOT NULL OR phone IS NOT NULL);
ALTER TABLE notifier.subscribers ADD CONSTRAINT subscribers_user UNIQUE (tenant, zalo_user_id);
-- One row per phone and tenant: the latest user to share a phone takes it (as the
-- send path's look-up already chose the latest).
UPDATE notifier.subscribers s SET phone = NULL
 WHERE phone IS NOT NULL AND EXISTS (
       SELECT 1 FROM notifier.subscribers o
        WHERE o.tenant = s.tenant AND o.phone = s.phone
          AND (o.updated_at, o.id) > (s.updated_at, s.id));
DROP INDEX IF EXISTS notifier.subscribers_by_phone;
ALTER TABLE notifier.subscribers ADD CONSTRAINT subscribers_phone UNIQUE (tenant, phone);
-- Who a broadcast may reach, in keyset order; tags for tag expressions.
CREATE INDEX subscribers_audience ON notifier.subscribers (tenant, id)
    WHERE announcements AND opted_out_at IS NULL AND following IS DISTINCT FROM false;
CREATE INDEX subscribers_tags ON notifier.subscribers USING gin (tags);

-- Broadcasts. `cursor`: the last subscriber id published (the checkpoint, written
-- after each chunk's confirms); `queued`: recipients published so far;
-- `runner_owner` / `runner_until`: the one process expanding it, on a renewed lease.
CREATE TABLE notifier.broadcasts (
    id             text COLLATE "C" PRIMARY KEY,
    tenant         text COLLATE "C" NOT NULL,
    title          text NOT NULL,
    audience_tags  text,
    template       text NOT NULL,
    params         jsonb NOT NULL,
    channel        text NOT NULL DEFAULT 'subscribers' CHECK (channel IN ('subscribers', 'article')),
    article        jsonb,
    state          text NOT NULL
                   CHECK (state IN ('scheduled', 'running', 'paused', 'completed', 'cancelled')),
    start_at       timestamptz NOT NULL,
    end_at         timestamptz,
    audience       bigint NOT NULL,
    cursor         bigint NOT NULL DEFAULT 0,
    queued         bigint NOT NULL DEFAULT 0,
    expanded_at    timestamptz,
    left_out       bigint NOT NULL DEFAULT 0,
    left_out_reason text,
    runner_owner   bigint,
    runner_until   timestamptz,
    rate_sent      bigint NOT NULL DEFAULT 0,
    rate_at        timestamptz,
    rate_per_second double precision,
    zalo_msg_id    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX broadcasts_by_tenant ON notifier.broadcasts (tenant, created_at DESC, id);
CREATE INDEX broadcasts_to_run ON notifier.broadcasts (start_at)
    WHERE state IN ('scheduled', 'running') AND expanded_at IS NULL;
CREATE INDEX broadcasts_running ON notifier.broadcasts (id) WHERE state = 'running';

-- A broadcast's deliveries, and recipients skipped for good (monthly cap, opted out,
-- cancelled, ended).
ALTER TABLE notifier.deliveries ADD COLUMN broadcast_id text COLLATE "C";
ALTER TABLE notifier.deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE notifier.deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN (
    'sending', 'sent', 'delivered', 'seen', 'failed', 'deferred', 'held', 'ambiguous', 'retrying',
    'skipped'
));
CREATE INDEX deliveries_of_broadcast ON notifier.deliveries (broadcast_id, status)
    WHERE broadcast_id IS NOT NULL AND status IN ('deferred', 'held');

-- Progress: how many of a broadcast's deliveries are in each state now, kept by the
-- triggers below in the same transaction as every status change, so a progress read
-- sums a few rows instead of counting a million. `shard` is the writing backend's pid:
-- each backend only ever locks its own rows, so concurrent senders never wait for (or
-- deadlock on) each other's counters. Keys: a status, `failed:<zalo code or class>`,
-- `skipped:<reason>`.
CREATE TABLE notifier.broadcast_counts (
    broadcast_id text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    shard        integer NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (broadcast_id, key, shard)
);

CREATE FUNCTION notifier.broadcast_count_key(p_status text, p_code integer, p_error text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_status
        WHEN 'failed' THEN 'failed:' || coalesce(p_code::text, 'other')
        WHEN 'skipped' THEN 'skipped:' || coalesce(p_error, 'other')
        ELSE p_status END
$$;

CREATE FUNCTION notifier.count_broadcast_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_new text;
    v_old text;
BEGIN
    v_new := notifier.broadcast_count_key(NEW.status, NEW.last_error_code, NEW.last_error);
    IF TG_OP = 'UPDATE' THEN
        v_old := notifier.broadcast_count_key(OLD.status, OLD.last_error_code, OLD.last_error);
        IF v_old = v_new THEN
            RETURN NULL;
        END IF;
        INSERT INTO notifier.broadcast_counts AS c (broadcast_id, key, shard, n)
        VALUES (OLD.broadcast_id, v_old, pg_backend_pid(), -1)
        ON CONFLICT (broadcast_id, key, shard) DO UPDATE SET n = c.n - 1;
    END IF;
    INSERT INTO notifier.broadcast_counts AS c (broadcast_id, key, shard, n)
    VALUES (NEW.broadcast_id, v_new, pg_backend_pid(), 1)
    ON CONFLICT (broadcast_id, key, shard) DO UPDATE SET n = c.n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_count_broadcast_insert
    AFTER INSERT ON notifier.deliveries
    FOR EACH ROW WHEN (NEW.broadcast_id IS NOT NULL)
    EXECUTE FUNCTION notifier.count_broadcast_delivery();
CREATE TRIGGER deliveries_count_broadcast_update
    AFTER UPDATE OF status, last_error_code, last_error ON notifier.deliveries
    FOR EACH ROW WHEN (NEW.broadcast_id IS NOT NULL AND
        (OLD.status, OLD.last_error_code, OLD.last_error)
            IS DISTINCT FROM (NEW.status, NEW.last_error_code, NEW.last_error))
    EXECUTE FUNCTION notifier.count_broadcast_delivery();

-- At most 4 promotions per citizen per month from one OA: the broadcasts that took a
-- citizen's slots this month (at most 4 ids, so a retried or republished request of
-- the same broadcast finds its own slot again).
CREATE TABLE notifier.promotion_sends (
    tenant        text COLLATE "C" NOT NULL,
    month         date NOT NULL,
    subscriber_id bigint NOT NULL,
    broadcasts    text[] COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, month, subscriber_id)
);

-- Tag-3 (promotion) ZNS sends reserved today: they stop at 25 % of the daily quota.
ALTER TABLE notifier.zns_quota ADD COLUMN promotion_sent integer NOT NULL DEFAULT 0;

-- The gate, again, with two rules for broadcasts: a promotion's ZNS sends stop at
-- `p_promotion_share` (25 %) of the day's quota (counted in `promotion_sent`), and the
-- horizon is the caller's (the broadcast lane's is shorter, so a broadcast can only
-- book the slots case updates leave).
DROP FUNCTION notifier.take_send_slots(text, date, integer, integer, boolean, double precision,
                                       double precision, double precision, double precision);
CREATE FUNCTION notifier.take_send_slots(
    p_tenant          text,
    p_day             date,
    p_want_zns        integer,
    p_want_other      integer,
    p_broadcast       boolean,
    p_interval_ms     double precision,
    p_tolerance_ms    double precision,
    p_horizon_ms      double precision,
    p_reserve         double precision,
    p_promotion       boolean,
    p_promotion_share double precision
) RETURNS TABLE (
    paused         boolean,
    pause_reason   text,
    zns_allowed    integer,
    zns_granted    integer,
    other_granted  integer,
    first_slot_ms  double precision,
    retry_after_ms double precision,
    remaining      integer,
    daily_quota    integer
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now       timestamptz := clock_timestamp();
    v_paused    boolean;
    v_reason    text;
    v_found     boolean := false;
    v_remaining integer;
    v_daily     integer;
    v_promoted  integer;
    v_exhausted boolean := false;
    v_allowed   integer := p_want_zns;
    v_tat       timestamptz;
    v_start     timestamptz;
    v_fit       integer;
    v_zns       integer := 0;
    v_other     integer := 0;
BEGIN
    SELECT tp.paused, tp.reason INTO v_paused, v_reason
      FROM notifier.tenant_pauses tp WHERE tp.tenant = p_tenant;
    IF coalesce(v_paused, false) THEN
        RETURN QUERY SELECT true, v_reason, 0, 0, 0, 0::float8, 0::float8, NULL::integer, NULL::integer;
        RETURN;
    END IF;

    IF p_want_zns > 0 THEN
        SELECT q.remaining, q.daily_quota, q.exhausted, q.promotion_sent
          INTO v_remaining, v_daily, v_exhausted, v_promoted
          FROM notifier.zns_quota q WHERE q.tenant = p_tenant AND q.day = p_day FOR UPDATE;
        v_found := FOUND;
        IF v_found AND v_exhausted THEN
            v_allowed := 0;
        ELSIF v_found AND p_broadcast AND v_remaining IS NOT NULL THEN
            v_allowed := LEAST(p_want_zns,
                GREATEST(0, v_remaining - ceil(coalesce(v_daily, 0) * p_reserve)::integer));
        END IF;
        IF v_found AND p_promotion AND coalesce(v_daily, 0) > 0 THEN
            v_allowed := LEAST(v_allowed,
                GREATEST(0, floor(v_daily * p_promotion_share)::integer - v_promoted));
        END IF;
    END IF;

    IF v_allowed + p_want_other > 0 THEN
        IF p_interval_ms <= 0 THEN
            -- No rate limit configured: everything now.
            v_zns := v_allowed;
            v_other := p_want_other;
            v_start := v_now;
        ELSE
            INSERT INTO notifier.rate_limits (tenant, tat) VALUES (p_tenant, v_now)
                ON CONFLICT (tenant) DO NOTHING;
            SELECT GREATEST(r.tat, v_now) INTO v_tat
              FROM notifier.rate_limits r WHERE r.tenant = p_tenant FOR UPDATE;
            v_start := v_tat - make_interval(secs => p_tolerance_ms / 1000.0);
            v_fit := floor((extract(epoch FROM (v_now - v_start))::float8 * 1000.0 + p_horizon_ms)
                           / p_interval_ms)::integer + 1;
            IF v_fit <= 0 THEN
                RETURN QUERY SELECT false, NULL::text, v_allowed, 0, 0, 0::float8,
                    (extract(epoch FROM (v_start - v_now))::float8 * 1000.0 - p_horizon_ms + 1.0)::float8,
                    v_remaining, v_daily;
                RETURN;
            END IF;
            v_zns := LEAST(v_allowed, v_fit);
            v_other := LEAST(p_want_other, v_fit - v_zns);
            UPDATE notifier.rate_limits
               SET tat = v_tat + make_interval(secs => (v_zns + v_other) * p_interval_ms / 1000.0),
                   updated_at = v_now
             WHERE tenant = p_tenant;
        END IF;
        IF v_zns > 0 AND v_found THEN
            IF v_remaining IS NOT NULL THEN
                v_remaining := v_remaining - v_zns;
            END IF;
            UPDATE notifier.zns_quota
               SET remaining = v_remaining,
                   promotion_sent = promotion_sent + CASE WHEN p_promotion THEN v_zns ELSE 0 END,
                   updated_at = v_now
             WHERE tenant = p_tenant AND day = p_day;
        END IF;
    ELSE
        v_start := v_now;
    END IF;

    RETURN QUERY SELECT false, NULL::text, v_allowed, v_zns, v_other,
        (extract(epoch FROM (v_start - v_now))::float8 * 1000.0)::float8, 0::float8, v_remaining, v_daily;
END
$$;
