//! Writing the audience (`notifier.subscribers`) from imports and opt-outs.
//!
//! One row per citizen of a tenant, known by phone, by Zalo user id, or both: a phone
//! and a user id each name at most one row (unique per tenant). An import line with
//! both joins what was known apart: a phone-only row of that phone takes the user id
//! (keeping its id, which names the citizen in running broadcasts), or, when the user
//! id already has a row, is merged into it (its tags, opt-in and opt-out carry over); the phone moves
//! off any other user's row. The webhooks do the same when a follower shares a phone
//! ([`crate::zalo_webhooks`]).
//!
//! [`import_batch`] writes a batch of lines in one transaction, a handful of
//! statements whatever the batch's size, and says which were new. Lines of one batch
//! must not share a phone or a user id ([`Batch::push`] refuses the second, to be
//! written in the next batch), so each statement touches a row at most once.
//!
//! A batch commits without waiting for its WAL to reach the disk
//! (`synchronous_commit = off`), and an import ends with [`make_durable`]: a commit that
//! waits for the WAL to be flushed up to its own commit record, and so for every batch
//! committed before it (the WAL is one sequence, flushed in order). Each batch's own
//! flush was most of an import's time on a busy disk; the import only answers once the
//! last flush is done, so a `200` still means every line is on disk, and a crash before
//! it loses at most batches the client was never told about, and re-imports
//! (an import is idempotent).

use super::audience::ImportLine;
use anyhow::Context;
use deadpool_postgres::Pool;
use std::collections::HashSet;

/// A batch of import lines with distinct phones and user ids.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    lines: Vec<ImportLine>,
    phones: HashSet<String>,
    users: HashSet<String>,
    /// Lines naming both a phone and a user id (they join rows: [`join_phones`]).
    joining: usize,
}

/// How a batch's statements find the rows they write, which says which batches may be
/// written at the same time on two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyed {
    /// Every line names a phone and no user id: rows are found by phone alone.
    Phone,
    /// Every line names a user id and no phone: rows are found by user id alone.
    User,
    /// Lines by phone and lines by user id, or lines joining both: one citizen's row
    /// can be found by either, so another batch may reach it by its other key.
    Both,
}

impl Batch {
    /// Adds a line, or gives it back when it shares a phone or user id with a line
    /// already in the batch (write this batch first).
    pub(crate) fn push(&mut self, line: ImportLine) -> Result<(), ImportLine> {
        let clash = line.phone.as_ref().is_some_and(|p| self.phones.contains(p))
            || line
                .zalo_user_id
                .as_ref()
                .is_some_and(|u| self.users.contains(u));
        if clash {
            return Err(line);
        }
        if line.phone.is_some() && line.zalo_user_id.is_some() {
            self.joining += 1;
        }
        self.phones.extend(line.phone.clone());
        self.users.extend(line.zalo_user_id.clone());
        self.lines.push(line);
        Ok(())
    }

    fn keyed(&self) -> Keyed {
        match (self.phones.is_empty(), self.users.is_empty(), self.joining) {
            (false, true, _) => Keyed::Phone,
            (true, false, _) => Keyed::User,
            _ => Keyed::Both,
        }
    }

    /// Whether this batch may be written while `other` is (on another connection):
    /// only when no row can be written by both, so neither waits for the other's row
    /// locks (or deadlocks with it) and the order of their commits cannot change what
    /// is stored. That holds when both find their rows by the same single key and
    /// share no value of it: a citizen's row has one phone and one user id, so two
    /// batches by phone with no phone in common never reach the same row. A batch
    /// reaching rows by both keys (or one by phone beside one by user id) could meet
    /// the other's row through its other key: it waits, as does a batch naming a
    /// citizen the other names (the later line must win).
    pub(crate) fn may_run_beside(&self, other: &Batch) -> bool {
        let keyed = self.keyed();
        keyed != Keyed::Both
            && keyed == other.keyed()
            && self.phones.is_disjoint(&other.phones)
            && self.users.is_disjoint(&other.users)
    }

    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// What writing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Citizens new to the audience.
    pub(crate) imported: u64,
    /// Citizens already there (changed or not).
    pub(crate) updated: u64,
}

/// Writes one batch of import lines for `tenant` in one transaction, committed
/// without waiting for the disk: the import calls [`make_durable`] before it answers.
pub(crate) async fn import_batch(
    pool: &Pool,
    tenant: &str,
    batch: &Batch,
) -> anyhow::Result<Written> {
    if batch.is_empty() {
        return Ok(Written::default());
    }
    let phones: Vec<Option<&str>> = batch.lines.iter().map(|l| l.phone.as_deref()).collect();
    let users: Vec<Option<&str>> = batch
        .lines
        .iter()
        .map(|l| l.zalo_user_id.as_deref())
        .collect();
    // Tags cannot contain spaces: one string per line, split again in SQL.
    let tags: Vec<String> = batch.lines.iter().map(|l| l.tags.join(" ")).collect();
    let announcements: Vec<bool> = batch.lines.iter().map(|l| l.announcements).collect();
    let names: Vec<Option<&str>> = batch.lines.iter().map(|l| l.name.as_deref()).collect();

    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin an import transaction")?;
    // The import's last step, `make_durable`, waits for this commit to reach the disk.
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await
        .context("Failed to begin an import transaction")?;
    // Only a line naming both a phone and a user id can join rows (every statement
    // of `join_phones` reads those lines alone): a phone-only import skips them.
    if batch.joining > 0 {
        join_phones(&tx, tenant, &phones, &users).await?;
    }
    // Then every line is one upsert: by user id when it has one, else by phone.
    let upsert = |conflict: &str, set_phone: &str, which: &str| {
        format!(
            "INSERT INTO notifier.subscribers AS s
                    (tenant, zalo_user_id, phone, following, updated_at, tags, announcements, name,
                     imported_at)
             SELECT $1, l.uid, l.phone, NULL, '-infinity',
                    CASE WHEN l.tags = '' THEN '{{}}'::text[] ELSE string_to_array(l.tags, ' ') END,
                    l.announcements, l.name, now()
               FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[])
                    AS l(phone, uid, tags, announcements, name)
              WHERE {which}
             ON CONFLICT {conflict} DO UPDATE
                SET {set_phone} tags = EXCLUDED.tags, announcements = EXCLUDED.announcements,
                    name = coalesce(EXCLUDED.name, s.name), imported_at = EXCLUDED.imported_at
             RETURNING (xmax = 0)"
        )
    };
    let mut written = Written::default();
    let with_user = batch.users.len();
    for (sql, lines) in [
        (
            upsert(
                "(tenant, zalo_user_id) WHERE zalo_user_id IS NOT NULL",
                "phone = coalesce(EXCLUDED.phone, s.phone),",
                "l.uid IS NOT NULL",
            ),
            with_user,
        ),
        (
            upsert(
                "(tenant, phone) WHERE phone IS NOT NULL",
                "",
                "l.uid IS NULL",
            ),
            batch.len() - with_user,
        ),
    ] {
        if lines == 0 {
            continue;
        }
        let statement = tx
            .prepare_cached(&sql)
            .await
            .context("Failed to prepare the import")?;
        let rows = tx
            .query(
                &statement,
                &[&tenant, &phones, &users, &tags, &announcements, &names],
            )
            .await
            .context("Failed to write imported subscribers")?;
        for row in rows {
            if row.get::<_, bool>(0) {
                written.imported += 1;
            } else {
                written.updated += 1;
            }
        }
    }
    tx.commit()
        .await
        .context("Failed to commit an import batch")?;
    Ok(written)
}

/// Waits until every import batch committed so far is on disk: one transaction that
/// writes a WAL record of its own and commits synchronously. PostgreSQL flushes the
/// WAL up to that commit record before the commit returns, and the WAL is flushed in
/// order, so every commit that returned before this one began (the batches,
/// asynchronous, on any connection) is flushed too. Call it once every batch has
/// committed, before answering.
///
/// The record is a transactional logical message (`pg_logical_emit_message`, allowed
/// to any role, harmless at any `wal_level`): a transaction that only took a
/// transaction id (`txid_current()`) writes no WAL before its commit record, and
/// PostgreSQL commits such a transaction asynchronously whatever
/// `synchronous_commit` says, so it would flush nothing.
pub(crate) async fn make_durable(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the import's last commit")?;
    tx.batch_execute(
        "SET LOCAL synchronous_commit = on;
         SELECT pg_logical_emit_message(true, 'loa.import', 'durable')",
    )
    .await
    .context("Failed to write the import's last commit")?;
    tx.commit()
        .await
        .context("Failed to flush the imported subscribers to disk")?;
    Ok(())
}

/// Makes room for lines naming a phone and a user id (`phones[i]` with `users[i]`):
/// a phone-only row of that phone takes the user id, unless the user id has a row of
/// its own, into which it is then merged (tags, opt-in and opt-out carry over); the phone moves
/// off any other user's row. After this, upserting the lines by user id cannot clash
/// on `(tenant, phone)`. The webhooks call it for a phone a follower shares.
pub(crate) async fn join_phones<C: deadpool_postgres::GenericClient>(
    tx: &C,
    tenant: &str,
    phones: &[Option<&str>],
    users: &[Option<&str>],
) -> anyhow::Result<()> {
    // The lines, as every statement below reads them ($2, $3: phones and user ids).
    const LINES: &str = "UNNEST($2::text[], $3::text[]) AS l(phone, uid)";
    // A phone-only row takes the user id of a line naming both, unless that user
    // id has a row of its own.
    let attach = tx
        .prepare_cached(&format!(
            "UPDATE notifier.subscribers s SET zalo_user_id = l.uid
               FROM {LINES}
              WHERE s.tenant = $1 AND s.phone = l.phone AND s.zalo_user_id IS NULL
                AND l.uid IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM notifier.subscribers x
                                 WHERE x.tenant = $1 AND x.zalo_user_id = l.uid)"
        ))
        .await
        .context("Failed to prepare the import")?;
    tx.execute(&attach, &[&tenant, &phones, &users])
        .await
        .context("Failed to attach user ids to known phones")?;
    // Otherwise the phone-only row merges into the user's (its opt-out carries over).
    let merge = tx
        .prepare_cached(&format!(
            "WITH gone AS (
                 DELETE FROM notifier.subscribers s USING {LINES}
                  WHERE s.tenant = $1 AND s.phone = l.phone AND s.zalo_user_id IS NULL
                    AND l.uid IS NOT NULL
                 RETURNING l.uid, s.opted_out_at, s.tags, s.announcements, s.name
             )
             UPDATE notifier.subscribers u
                SET opted_out_at = coalesce(u.opted_out_at, gone.opted_out_at),
                    tags = ARRAY(SELECT DISTINCT t FROM unnest(u.tags || gone.tags) AS t ORDER BY t),
                    announcements = u.announcements OR gone.announcements,
                    name = coalesce(u.name, gone.name)
               FROM gone
              WHERE u.tenant = $1 AND u.zalo_user_id = gone.uid"
        ))
        .await
        .context("Failed to prepare the import")?;
    tx.execute(&merge, &[&tenant, &phones, &users])
        .await
        .context("Failed to merge phone-only subscribers")?;
    // A phone named with a user id moves off any other user's row.
    let unshare = tx
        .prepare_cached(&format!(
            "UPDATE notifier.subscribers s SET phone = NULL
               FROM {LINES}
              WHERE s.tenant = $1 AND s.phone = l.phone AND l.uid IS NOT NULL
                AND s.zalo_user_id IS DISTINCT FROM l.uid"
        ))
        .await
        .context("Failed to prepare the import")?;
    tx.execute(&unshare, &[&tenant, &phones, &users])
        .await
        .context("Failed to move phones to their users")?;
    Ok(())
}

/// Who an opt-out or an opt-in names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Citizen {
    /// By phone (`84…`).
    Phone(String),
    /// By Zalo user id.
    ZaloUser(String),
}

impl Citizen {
    /// The unique key naming the citizen's row, and the phone and user id to bind.
    fn key(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Self::Phone(p) => (
                "(tenant, phone) WHERE phone IS NOT NULL",
                Some(p.as_str()),
                None,
            ),
            Self::ZaloUser(u) => (
                "(tenant, zalo_user_id) WHERE zalo_user_id IS NOT NULL",
                None,
                Some(u.as_str()),
            ),
        }
    }
}

/// Opts a citizen out of every later broadcast: a row that stays opted out whatever
/// is imported later (one is created for a citizen not in the audience yet). Returns
/// whether they were opted in (or unknown) until now.
pub(crate) async fn opt_out<C: deadpool_postgres::GenericClient>(
    client: &C,
    tenant: &str,
    citizen: &Citizen,
) -> anyhow::Result<bool> {
    let (conflict, phone, user) = citizen.key();
    let row = client
        .query_one(
            &format!(
                "WITH before AS (
                     SELECT opted_out_at FROM notifier.subscribers
                      WHERE tenant = $1 AND (phone = $2 OR zalo_user_id = $3)
                 )
                 INSERT INTO notifier.subscribers AS s
                        (tenant, zalo_user_id, phone, following, updated_at, opted_out_at)
                 VALUES ($1, $3, $2, NULL, '-infinity', now())
                 ON CONFLICT {conflict} DO UPDATE
                    SET opted_out_at = coalesce(s.opted_out_at, EXCLUDED.opted_out_at)
                 RETURNING NOT EXISTS (SELECT 1 FROM before WHERE opted_out_at IS NOT NULL)"
            ),
            &[&tenant, &phone, &user],
        )
        .await
        .context("Failed to opt a citizen out")?;
    Ok(row.get(0))
}

/// Opts a citizen in to announcements: they agreed to hear them (again), so a
/// former opt-out is lifted and later broadcasts reach them (if they follow the OA or
/// have a phone). A row is created for a citizen not in the audience yet. Returns
/// whether anything changed (false: they were already opted in).
pub(crate) async fn opt_in<C: deadpool_postgres::GenericClient>(
    client: &C,
    tenant: &str,
    citizen: &Citizen,
) -> anyhow::Result<bool> {
    let (conflict, phone, user) = citizen.key();
    let row = client
        .query_one(
            &format!(
                "WITH before AS (
                     SELECT announcements, opted_out_at FROM notifier.subscribers
                      WHERE tenant = $1 AND (phone = $2 OR zalo_user_id = $3)
                 )
                 INSERT INTO notifier.subscribers AS s
                        (tenant, zalo_user_id, phone, following, updated_at, announcements)
                 VALUES ($1, $3, $2, NULL, '-infinity', true)
                 ON CONFLICT {conflict} DO UPDATE
                    SET announcements = true, opted_out_at = NULL
                 RETURNING NOT EXISTS (SELECT 1 FROM before
                                        WHERE announcements AND opted_out_at IS NULL)"
            ),
            &[&tenant, &phone, &user],
        )
        .await
        .context("Failed to opt a citizen in")?;
    Ok(row.get(0))
}
