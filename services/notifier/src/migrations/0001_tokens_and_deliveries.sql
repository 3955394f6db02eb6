-- OAuth tokens per tenant and one row per notification.
CREATE TABLE notifier.oauth_tokens (
    tenant            text PRIMARY KEY,
    access_token      text,
    access_expires_at timestamptz,
    refresh_token     text NOT NULL,
    refreshed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notifier.deliveries (
    notification_id   text PRIMARY KEY,
    tenant            text NOT NULL,
    kind              text NOT NULL,
    lane              text NOT NULL,
    dossier_code      text,
    channel           text NOT NULL,
    status            text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    zalo_msg_id       text,
    attempts          integer NOT NULL DEFAULT 0,
    last_error_code   integer,
    last_error        text,
    lease_until       timestamptz,
    event_accepted_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_by_dossier ON notifier.deliveries (tenant, dossier_code, created_at);
    
