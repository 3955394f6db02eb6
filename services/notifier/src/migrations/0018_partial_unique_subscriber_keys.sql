-- The audience's two unique keys index only the rows that have the key. A phone-only
-- import (a province's list) left one NULL user id a row in `subscribers_user`, and a
-- follower without a phone one NULL phone in `subscribers_phone`: entries no look-up
-- ever reads (NULLs are never equal, so they were never checked either), and one more
-- index insertion for every imported line. Every `ON CONFLICT` on these keys names the
-- predicate, which is how PostgreSQL picks a partial unique index as its arbiter.
CREATE UNIQUE INDEX subscribers_user_key ON notifier.subscribers (tenant, zalo_user_id)
    WHERE zalo_user_id IS NOT NULL;
CREATE UNIQUE INDEX subscribers_phone_key ON notifier.subscribers (tenant, phone)
    WHERE phone IS NOT NULL;
ALTER TABLE notifier.subscribers DROP CONSTRAINT subscribers_user;
ALTER TABLE notifier.subscribers DROP CONSTRAINT subscribers_phone;
