-- Chat lookups may also be answered for a phone linked by a citizen's answer to a ZNS
-- (see docs/ARCHITECTURE.md, "Chat lookups"). A ZNS receipt names the phone that got
-- the message but not the Zalo user; a `user_feedback` or `user_click_response_button`
-- on that message names the user but not the phone. `zns_recipients` keeps, from each
-- signed ZNS receipt, which phone the message reached, so the answer can link that
-- phone to the user who gave it (in `subscribers`, with `phone_source`). Rows are kept
-- 30 days (an answer comes days after the message at most), and erased with the phone.
ALTER TABLE notifier.subscribers
    ADD COLUMN phone_source text CHECK (phone_source IN ('user_submit_info', 'zns_interaction'));
-- Before this migration only `user_submit_info` linked a phone to a Zalo user.
UPDATE notifier.subscribers SET phone_source = 'user_submit_info'
 WHERE phone IS NOT NULL AND zalo_user_id IS NOT NULL AND imported_at IS NULL;
CREATE TABLE notifier.zns_recipients (
    tenant       text COLLATE "C" NOT NULL,
    msg_id       text COLLATE "C" NOT NULL,
    tracking_id  text COLLATE "C",
    phone        text COLLATE "C" NOT NULL,
    delivered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, msg_id)
);
CREATE INDEX zns_recipients_by_phone ON notifier.zns_recipients (tenant, phone);
CREATE INDEX zns_recipients_by_age ON notifier.zns_recipients (delivered_at);
