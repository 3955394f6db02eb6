-- Ratings given in Zalo count as the dossier's rating: the feedback relay hands each
-- kept `user_feedback` to the tracker (`forwarded_at` set once its publish is
-- confirmed, or once it is known to name no dossier). The index is the relay's queue.
ALTER TABLE notifier.citizen_feedback ADD COLUMN forwarded_at timestamptz;
CREATE INDEX citizen_feedback_to_forward
    ON notifier.citizen_feedback (received_at) WHERE forwarded_at IS NULL;
