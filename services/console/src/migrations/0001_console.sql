-- The console's own state: admin accounts per tenant, their sessions, sign-in attempts
-- (for lockout) and the audit log of every action that changes something.

CREATE TABLE console.accounts (
    id            bigserial PRIMARY KEY,
    tenant        text COLLATE "C" NOT NULL,
    username      text COLLATE "C" NOT NULL,
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- argon2id in PHC string form (algorithm, parameters and salt included).
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, username)
);

-- A session is known by the SHA-256 of its 256-bit id: the cookie's value never
-- rests in the database, so a leaked table signs nobody in.
CREATE TABLE console.sessions (
    id_hash      bytea PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES console.accounts (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    address      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_by_account ON console.sessions (account_id);

-- Every sign-in attempt on a known tenant; failures since the last success lock an
-- account, failures from one address lock that address.
CREATE TABLE console.login_attempts (
    id        bigserial PRIMARY KEY,
    tenant    text COLLATE "C" NOT NULL,
    username  text COLLATE "C" NOT NULL,
    address   text NOT NULL,
    succeeded boolean NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_by_account ON console.login_attempts (tenant, username, at);
CREATE INDEX login_attempts_by_address ON console.login_attempts (address, at) WHERE NOT succeeded;

-- Who did what to which object, when and from where. Append-only: the triggers below
-- refuse every UPDATE, DELETE and TRUNCATE.
CREATE TABLE console.audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    tenant   text COLLATE "C" NOT NULL,
    actor    text NOT NULL,
    action   text NOT NULL,
    object   text,
    address  text,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_tenant ON console.audit_log (tenant, id);

CREATE FUNCTION console.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'console.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON console.audit_log
    FOR EACH ROW EXECUTE FUNCTION console.refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON console.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION console.refuse_audit_change();
