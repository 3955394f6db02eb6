-- Ratings citizens gave a message sent with a rating (service feedback) template, from
-- Zalo's `user_feedback` webhook, kept for the ratings feature. `msg_id` is the rated
-- message's Zalo id and `tracking_id` our notification id (so the delivery, and its
-- dossier, are one join away); a citizen rates a message once, so a second event for
-- the same message keeps the first. `note` is the citizen's own text.
CREATE TABLE notifier.citizen_feedback (
    tenant       text COLLATE "C" NOT NULL,
    msg_id       text COLLATE "C" NOT NULL,
    tracking_id  text COLLATE "C",
    rating       smallint CHECK (rating BETWEEN 1 AND 5),
    note         text NOT NULL DEFAULT '',
    feedbacks    jsonb NOT NULL DEFAULT '[]',
    submitted_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, msg_id)
);
CREATE INDEX citizen_feedback_by_tracking_id
    ON notifier.citizen_feedback (tracking_id) WHERE tracking_id IS NOT NULL;
