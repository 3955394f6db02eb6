-- The delivery engine: every delivery status the engine and the receipts need, parked
-- requests (deferred to a wall-clock time, held while their tenant is paused, or
-- ambiguous until a receipt or a recheck), the rate limit shared by every replica, the
-- ZNS daily quota per tenant and day, and tenant pauses.

ALTER TABLE notifier.deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE notifier.deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN (
    'sending', 'sent', 'delivered', 'seen', 'failed', 'deferred', 'held', 'ambiguous', 'retrying'
));

-- `not_before`: when a `deferred` row is due again (NULL: due now). `recheck_at`: when an
-- `ambiguous` row is resent unless a receipt marked it delivered. `request`: the
-- notification request envelope of a parked row, republished when it is due.
ALTER TABLE notifier.deliveries
    ADD COLUMN IF NOT EXISTS not_before timestamptz,
    ADD COLUMN IF NOT EXISTS recheck_at timestamptz,
    ADD COLUMN IF NOT EXISTS request    jsonb;
CREATE INDEX deliveries_deferred_due ON notifier.deliveries (not_before) WHERE status = 'deferred';
CREATE INDEX deliveries_ambiguous_due ON notifier.deliveries (recheck_at) WHERE status = 'ambiguous';
CREATE INDEX deliveries_held ON notifier.deliveries (tenant) WHERE status = 'held';

-- GCRA state per tenant (Zalo app): the theoretical arrival time of the next request.
CREATE TABLE notifier.rate_limits (
    tenant     text PRIMARY KEY,
    tat        timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The OA's ZNS daily quota as Zalo last reported it, per Vietnamese quota day.
-- `remaining` is also lowered by every send reserved, so replicas cannot overshoot the
-- transactional reserve between two answers; `exhausted` is set by -144 only (a
-- success reporting 0 left is not taken as the day spent) and stops every ZNS send of
-- the tenant until the next day.
CREATE TABLE notifier.zns_quota (
    tenant      text NOT NULL,
    day         date NOT NULL,
    daily_quota integer,
    remaining   integer,
    exhausted   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, day)
);

-- A tenant whose sending needs an operator (-115 balance, -321, -135, refused refresh
-- token, …). Every replica reads it before sending; `POST /v1/pause/resume` clears it.
CREATE TABLE notifier.tenant_pauses (
    tenant     text PRIMARY KEY,
    paused     boolean NOT NULL,
    error_code integer,
    reason     text NOT NULL,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    resumed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One round trip per batch and tenant: reads the pause and the quota, reserves the
-- quota, and reserves up to `p_want_zns + p_want_other` send slots on the tenant's GCRA
-- (only slots that start within `p_horizon_ms`). Slot j of the grant starts at
-- `first_slot_ms + j * p_interval_ms` from now (negative: already due). When nothing
-- fits the horizon, `retry_after_ms` says when to ask again.
--
-- `p_want_zns` requests go to ZNS and count against the quota: while the quota is
-- exhausted none is allowed; broadcasts (`p_broadcast`) only down to the reserve
-- (`ceil(daily_quota * p_reserve)`); `zns_allowed` says how many passed the quota
-- (the rest are to be deferred), `zns_granted` how many of those got a slot now.
CREATE FUNCTION notifier.take_send_slots(
    p_tenant       text,
    p_day          date,
    p_want_zns     integer,
    p_want_other   integer,
    p_broadcast    boolean,
    p_interval_ms  double precision,
    p_tolerance_ms double precision,
    p_horizon_ms   double precision,
    p_reserve      double precision
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
        SELECT q.remaining, q.daily_quota, q.exhausted INTO v_remaining, v_daily, v_exhausted
          FROM notifier.zns_quota q WHERE q.tenant = p_tenant AND q.day = p_day FOR UPDATE;
        v_found := FOUND;
        IF v_found AND v_exhausted THEN
            v_allowed := 0;
        ELSIF v_found AND p_broadcast AND v_remaining IS NOT NULL THEN
            v_allowed := LEAST(p_want_zns,
                GREATEST(0, v_remaining - ceil(coalesce(v_daily, 0) * p_reserve)::integer));
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
        IF v_zns > 0 AND v_found AND v_remaining IS NOT NULL THEN
            v_remaining := v_remaining - v_zns;
            UPDATE notifier.zns_quota SET remaining = v_remaining, updated_at = v_now
             WHERE tenant = p_tenant AND day = p_day;
        END IF;
    ELSE
        v_start := v_now;
    END IF;

    RETURN QUERY SELECT false, NULL::text, v_allowed, v_zns, v_other,
        (extract(epoch FROM (v_start - v_now))::float8 * 1000.0)::float8, 0::float8, v_remaining, v_daily;
END
$$;
