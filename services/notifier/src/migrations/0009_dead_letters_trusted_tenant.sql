-- Dead letters used to keep every header, source tokens included, and to take their
-- tenant from the body. Credentials go. The tenant of a row from `intake.ingress` came
-- from a body anyone with access to `loa.ingress` could write, so it is cleared: such
-- rows are for operators now (`loa dead-letters list`), and cannot be replayed with
-- their token, which is gone (their publisher sends them again). Rows from the other
-- queues carried events and requests that came through intake, which had verified
-- their tenant, and keep it.
UPDATE notifier.dead_letters AS d
   SET headers = coalesce(
           (SELECT jsonb_object_agg(h.key, h.value)
              FROM jsonb_each(d.headers) AS h
             WHERE lower(h.key) NOT IN ('x-loa-token', 'authorization')),
           '{}'::jsonb)
 WHERE EXISTS (SELECT 1 FROM jsonb_each(d.headers) AS h
                WHERE lower(h.key) IN ('x-loa-token', 'authorization'));
UPDATE notifier.dead_letters
   SET tenant = NULL
 WHERE source_queue = 'intake.ingress' AND tenant IS NOT NULL;
