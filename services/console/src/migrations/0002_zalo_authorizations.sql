-- Zalo OA re-authorisations in flight: the `state` sent to Zalo's consent page (kept as
-- its SHA-256), who started it and for which tenant, and the PKCE verifier that only
-- the console knows. Single use, 10 minutes.
CREATE TABLE console.zalo_authorizations (
    state_hash   bytea PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES console.accounts (id) ON DELETE CASCADE,
    tenant       text COLLATE "C" NOT NULL,
    verifier     text NOT NULL,
    address      text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
