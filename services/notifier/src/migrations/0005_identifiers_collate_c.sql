-- Identifiers (notification, tenant, dossier and Zalo ids) compare byte by byte.
-- Under a libc locale such as C.UTF-8 or vi_VN.UTF-8 every comparison in a text
-- index calls strcoll(); these ids are ASCII and only ever matched or ordered as
-- such, so the "C" collation gives the same answers at a fraction of the cost on the
-- hot indexes (the primary keys, the history's, the dossier and msg-id lookups).
-- Changing a column's collation rebuilds its indexes, not the table.
ALTER TABLE notifier.deliveries
    ALTER COLUMN notification_id TYPE text COLLATE "C",
    ALTER COLUMN tenant          TYPE text COLLATE "C",
    ALTER COLUMN dossier_code    TYPE text COLLATE "C",
    ALTER COLUMN zalo_msg_id     TYPE text COLLATE "C";
ALTER TABLE notifier.delivery_events
    ALTER COLUMN notification_id TYPE text COLLATE "C",
    ALTER COLUMN tenant          TYPE text COLLATE "C",
    ALTER COLUMN status          TYPE text COLLATE "C";
ALTER TABLE notifier.rate_limits   ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE notifier.zns_quota     ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE notifier.tenant_pauses ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE notifier.oauth_tokens  ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE notifier.webhook_events
    ALTER COLUMN tenant     TYPE text COLLATE "C",
    ALTER COLUMN event_name TYPE text COLLATE "C",
    ALTER COLUMN dedup_key  TYPE text COLLATE "C";
ALTER TABLE notifier.subscribers
    ALTER COLUMN tenant       TYPE text COLLATE "C",
    ALTER COLUMN zalo_user_id TYPE text COLLATE "C";
ALTER TABLE notifier.citizen_messages
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN msg_id TYPE text COLLATE "C";
ALTER TABLE notifier.dead_letters  ALTER COLUMN tenant TYPE text COLLATE "C";
