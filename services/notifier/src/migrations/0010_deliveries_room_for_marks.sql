-- Leave room on each page of `notifier.deliveries` for the dispatch mark and lease
-- renewals: both change only columns no index uses, so with free space on the row's
-- page PostgreSQL updates it in place (a HOT update, no index entries). Full pages
-- (the default fillfactor of 100) made every mark a new row version in every index.
-- Applies to pages written from now on.
ALTER TABLE notifier.deliveries SET (fillfactor = 70);
