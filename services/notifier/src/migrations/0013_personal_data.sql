-- Personal data: retention and a citizen's erasure (see `crate::personal_data`).

-- A dead letter whose body's persons were masked: never looked at again by the
-- retention sweep, and never replayed (it would carry masked phones).
ALTER TABLE notifier.dead_letters ADD COLUMN personal_data_erased_at timestamptz;

-- Erasure requests' audit: who asked, with which credential, when, a hash of the phone
-- (never the phone), what was removed (counts by kind).
CREATE TABLE notifier.erasures (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text COLLATE "C" NOT NULL,
    phone_hash   text COLLATE "C" NOT NULL,
    requested_by text NOT NULL,
    credential   text NOT NULL,
    erased_at    timestamptz NOT NULL,
    removed      jsonb NOT NULL
);
CREATE INDEX erasures_by_phone_hash ON notifier.erasures (tenant, phone_hash);
