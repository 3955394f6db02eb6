//! The fan-out: turns a running broadcast into one notification request per
//! recipient on the broadcast lane, and keeps every broadcast's state moving.
//!
//! Every replica runs it. Each round it
//! 1. cancels the broadcasts whose `end_at` passed (what was left is counted as
//!    skipped, `ended`), and completes the expanded ones whose every message is sent,
//!    failed or skipped; samples each running broadcast's rate (for its ETA);
//! 2. takes one broadcast that is due (`start_at` passed) and not fully expanded, on a
//!    lease (`runner_owner`, `runner_until`, renewed with every checkpoint; `FOR UPDATE
//!    SKIP LOCKED`: replicas share broadcasts, never one broadcast), and expands it: the
//!    audience by keyset pages of `chunk` subscribers (`id > cursor ORDER BY id`, an
//!    index range scan whatever the audience's size), each page published with
//!    publisher confirms, `pack` recipients to a `notification_batch.v1` message (as
//!    the tracker's relay packs case updates: the broker's work and the sender's
//!    deliveries are per message), then the checkpoint (`cursor`, `queued`) written.
//!
//! **Pipelined.** A page's confirms are awaited in a task of their own while the next
//! page is read, built and published: at most [`IN_FLIGHT`] pages are published and
//! not yet checkpointed. Pages are checkpointed in their order, each only once it and
//! every page before it are confirmed (the confirmed ones together, one statement), so
//! the checkpoint never passes a page the broker has not stored.
//!
//! **Exactly once, and why the checkpoint need not wait for the disk.** A process
//! killed between a confirm and its checkpoint republishes those pages (at most
//! [`IN_FLIGHT`]) once more; each message's notification id is derived from (tenant,
//! broadcast, subscriber), so the sender's claim sends each recipient once whatever
//! was republished. For the same reason the checkpoint is committed asynchronously
//! (`synchronous_commit = off` for its transaction alone; a commit waits 11–64 ms for
//! the disk on a busy host, once a page): a killed notifier loses nothing (the commit
//! is in PostgreSQL's WAL buffers, written within a fraction of a second); only a
//! PostgreSQL crash may lose the last checkpoints, and then the fan-out restarts from
//! an older cursor: it republishes pages whose recipients the sender's claims (written
//! with a synchronous commit) already know, and `queued` counts them once again from
//! the older value, so it ends equal to the audience.
//!
//! Memory is [`IN_FLIGHT`] pages whatever the audience. The fan-out stays at most a
//! few seconds of the tenant's rate ahead of the sender (messages published, confirmed
//! or not, but not yet taken), so the broadcast lane's queue stays short, and an
//! audience that opts out or a broadcast that is paused meanwhile has little in
//! flight. With no rate limit configured it publishes as fast as the broker confirms.
//! It expands nothing in the tenant's quiet hours (the sender's gate holds what is
//! already queued).

use super::{
    store::{self, Broadcast},
    targeting,
};
use crate::{clock::Clock, metrics};
use anyhow::Context;
use chrono::Utc;
use deadpool_postgres::Pool;
use loa_contracts::{
    notification::broadcast_notification_id, BroadcastRef, Envelope, Lane, NotificationBatch,
    NotificationKind, NotificationRequest, Recipient,
};
use loa_platform::{
    amqp::{consumer::H_TENANT, topology, OutgoingMessage, PublishError, Publisher},
    LiveTenants,
};
use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

/// How long a fan-out lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(15);
/// Seconds of the tenant's rate the fan-out may publish ahead of the sender.
const AHEAD_SECONDS: f64 = 5.0;
/// Longest one broadcast is expanded before the round looks at the others.
const SLICE: Duration = Duration::from_secs(5);
/// Sends per second of a tenant's rate for each recipient packed in a message (see
/// [`pack_for`]).
const PACK_RATE: f64 = 200.0;
/// Pages published and not yet checkpointed, at most: the fan-out reads and
/// publishes the next page while the broker confirms the ones before (memory: this
/// many pages' messages).
const IN_FLIGHT: usize = 3;
/// Who a message greets when the audience does not know their name (`{name}`).
pub(crate) const NO_NAME: &str = "Quý công dân";

/// The fan-out of one notifier process.
#[derive(Clone)]
pub(crate) struct Fanout {
    pub(crate) pool: Pool,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) tenants: LiveTenants,
    pub(crate) clock: Clock,
    /// This process's lease owner id.
    pub(crate) owner: i64,
    /// Subscribers per page (one publish with confirms, one checkpoint).
    pub(crate) chunk: usize,
    /// Recipients per published message (`notification_batch.v1`); 1 publishes each
    /// request alone.
    pub(crate) pack: usize,
    /// Pause between rounds.
    pub(crate) interval: Duration,
}

impl Fanout {
    /// Runs rounds until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.round(&cancel).await {
                tracing::warn!(error.message = %e, "Broadcast fan-out round failed; trying again.");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One round (see the module docs).
    pub(crate) async fn round(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        self.maintain().await?;
        let started = Instant::now();
        while !cancel.is_cancelled() && started.elapsed() < SLICE {
            let Some(broadcast) = self.take().await? else {
                break;
            };
            let more = self.expand(&broadcast, cancel).await;
            let _ = self.release(&broadcast.id).await;
            if !more? {
                break;
            }
        }
        Ok(())
    }

    /// Ends, completes and samples broadcasts; refreshes the active gauge.
    async fn maintain(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        let ended = tx
            .query(
                "UPDATE notifier.broadcasts
                    SET state = 'cancelled', finished_at = now(), updated_at = now(),
                        left_out = CASE WHEN expanded_at IS NULL THEN GREATEST(0, audience - queued) ELSE 0 END,
                        left_out_reason = 'ended'
                  WHERE state IN ('scheduled', 'running', 'paused') AND end_at <= $1
                  RETURNING id",
                &[&now],
            )
            .await
            .context("Failed to end broadcasts")?;
        for row in &ended {
            store::skip_parked(&tx, row.get(0), "ended").await?;
        }
        // Settled: sent (or beyond), failed or skipped.
        tx.execute(
            "WITH progress AS (
                 SELECT b.id,
                        coalesce(sum(c.n) FILTER (WHERE c.key IN ('sent', 'delivered', 'seen')
                                                   OR c.key LIKE 'failed:%' OR c.key LIKE 'skipped:%'), 0) AS settled,
                        coalesce(sum(c.n) FILTER (WHERE c.key IN ('sent', 'delivered', 'seen')), 0) AS sent
                   FROM notifier.broadcasts b
                   LEFT JOIN notifier.broadcast_counts c ON c.broadcast_id = b.id
                  WHERE b.state = 'running'
                  GROUP BY b.id
             )
             UPDATE notifier.broadcasts b
                SET state = CASE WHEN b.expanded_at IS NOT NULL AND p.settled >= b.queued
                                 THEN 'completed' ELSE b.state END,
                    finished_at = CASE WHEN b.expanded_at IS NOT NULL AND p.settled >= b.queued
                                       THEN now() ELSE b.finished_at END,
                    rate_per_second = CASE WHEN b.rate_at IS NOT NULL
                        THEN (p.sent - b.rate_sent) / GREATEST(0.001, extract(epoch FROM now() - b.rate_at))
                        ELSE b.rate_per_second END,
                    rate_sent = p.sent, rate_at = now(), updated_at = now()
               FROM progress p
              WHERE b.id = p.id
                AND (b.rate_at IS NULL OR b.rate_at < now() - interval '2 seconds'
                     OR (b.expanded_at IS NOT NULL AND p.settled >= b.queued))",
            &[],
        )
        .await
        .context("Failed to complete broadcasts")?;
        let active = tx
            .query(
                "SELECT tenant, count(*) FROM notifier.broadcasts
                  WHERE state IN ('running', 'paused') GROUP BY tenant",
                &[],
            )
            .await
            .context("Failed to count active broadcasts")?;
        tx.commit()
            .await
            .context("Failed to commit broadcast upkeep")?;
        let tenants = self.tenants.current();
        for tenant in tenants.all() {
            let n = active
                .iter()
                .find(|r| r.get::<_, &str>(0) == tenant.id)
                .map_or(0, |r| r.get::<_, i64>(1));
            metrics::broadcasts_active(&tenant.id, n);
        }
        Ok(())
    }

    /// Takes one due, unexpanded broadcast on a lease (it becomes `running`).
    async fn take(&self) -> anyhow::Result<Option<Broadcast>> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let row = client
            .query_opt(
                "UPDATE notifier.broadcasts
                    SET state = 'running', runner_owner = $1,
                        runner_until = now() + make_interval(secs => $3), updated_at = now()
                  WHERE id = (
                        SELECT id FROM notifier.broadcasts
                         WHERE state IN ('scheduled', 'running') AND expanded_at IS NULL
                           AND start_at <= $2
                           AND (runner_until IS NULL OR runner_until < now() OR runner_owner = $1)
                         ORDER BY start_at, id
                         LIMIT 1
                           FOR UPDATE SKIP LOCKED)
                  RETURNING id, tenant",
                &[&self.owner, &self.clock.now(), &LEASE.as_secs_f64()],
            )
            .await
            .context("Failed to take a broadcast to expand")?;
        let Some(row) = row else { return Ok(None) };
        store::get(&self.pool, row.get(1), row.get(0)).await
    }

    /// Gives the lease up (another replica may go on at once).
    async fn release(&self, id: &str) -> anyhow::Result<()> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        client
            .execute(
                "UPDATE notifier.broadcasts SET runner_owner = NULL, runner_until = NULL
                  WHERE id = $1 AND runner_owner = $2",
                &[&id, &self.owner],
            )
            .await
            .context("Failed to release a broadcast")?;
        Ok(())
    }

    /// Expands `broadcast` from its checkpoint for up to one slice. Returns whether
    /// the round may take another broadcast (this one is done, or waits).
    ///
    /// Pipelined: page N's confirms are awaited (in a task of their own) while page
    /// N+1 is read, built and published, with at most [`IN_FLIGHT`] pages published
    /// and not yet checkpointed; pages are checkpointed in order, each once every
    /// page before it and itself are confirmed (several confirmed pages in one
    /// checkpoint).
    async fn expand(
        &self,
        broadcast: &Broadcast,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let tenants = self.tenants.current();
        let Some(tenant) = tenants.get(&broadcast.tenant) else {
            return Ok(true);
        };
        if tenant.broadcasts.quiet_hours.contains(self.clock.now()) {
            return Ok(true);
        }
        let expr = match broadcast.audience_tags.as_deref().map(targeting::parse) {
            None => None,
            Some(Ok(expr)) => Some(expr),
            Some(Err(e)) => anyhow::bail!(
                "broadcast {} has a bad stored expression: {e}",
                broadcast.id
            ),
        };
        let mut tags: Vec<String> = Vec::new();
        let condition = expr
            .as_ref()
            .map_or_else(|| "true".to_owned(), |e| e.to_sql(4, &mut tags));
        let page_sql = format!(
            "SELECT id, phone, zalo_user_id, name FROM notifier.subscribers
              WHERE tenant = $1 AND id > $2 AND announcements AND opted_out_at IS NULL
                AND following IS DISTINCT FROM false AND ({condition})
              ORDER BY id LIMIT $3"
        );
        let rate = tenant.zalo.rate_per_second;
        let ahead_limit = if rate.is_finite() && rate > 0.0 {
            Some(((rate * AHEAD_SECONDS) as i64).max(self.chunk as i64))
        } else {
            None
        };
        let pack = pack_for(self.pack, rate);
        let started = Instant::now();
        let chunk = i64::try_from(self.chunk.max(1)).unwrap_or(1000);
        // One connection for the slice: the page's statement is prepared once.
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let page = client
            .prepare(&page_sql)
            .await
            .context("Failed to prepare the audience's page")?;
        let mut flight = Flight::new(broadcast.cursor, broadcast.queued);
        while !cancel.is_cancelled() && started.elapsed() < SLICE {
            if let Some(limit) = ahead_limit {
                let taken = self.taken(&broadcast.id).await?;
                if flight.published - taken >= limit {
                    // The sender has enough; look again next round.
                    return self.settle(broadcast, &mut flight, 0).await.map(|_| true);
                }
            }
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&broadcast.tenant, &flight.read, &chunk];
            for t in &tags {
                params.push(t);
            }
            let rows = client
                .query(&page, &params)
                .await
                .context("Failed to read a page of the audience")?;
            let last = rows.last().map_or(flight.read, |r| r.get::<_, i64>(0));
            let requests: Vec<NotificationRequest> = rows
                .iter()
                .map(|r| {
                    request(
                        broadcast,
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get::<_, Option<&str>>(3),
                    )
                })
                .collect();
            drop(rows);
            let n = requests.len() as i64;
            let messages = pack_messages(&broadcast.tenant, requests, pack);
            let publisher = self.publisher.clone();
            let confirms = tokio::spawn(async move {
                if messages.is_empty() {
                    return Ok(());
                }
                publisher.publish_all(&messages).await
            });
            let done = n < chunk;
            flight.push(Page {
                confirms,
                cursor: last,
                n,
                done,
            });
            let keep = if done { 0 } else { IN_FLIGHT - 1 };
            match self.settle(broadcast, &mut flight, keep).await? {
                Settled::Running => {}
                // Paused, cancelled or taken over meanwhile.
                Settled::Stopped => return Ok(true),
                Settled::Expanded => {
                    tracing::info!(broadcast = %broadcast.id, tenant = %broadcast.tenant, queued = flight.queued, "Broadcast expanded.");
                    return Ok(true);
                }
            }
        }
        self.settle(broadcast, &mut flight, 0).await?;
        Ok(false)
    }

    /// Awaits the confirms of the oldest pages in flight until at most `keep` are
    /// left, and checkpoints the confirmed ones (together, with one statement).
    async fn settle(
        &self,
        broadcast: &Broadcast,
        flight: &mut Flight,
        keep: usize,
    ) -> anyhow::Result<Settled> {
        let mut confirmed: Option<(i64, i64, bool)> = None;
        loop {
            let len = flight.pages.len();
            let Some(front) = flight.pages.front_mut() else {
                break;
            };
            if len <= keep && !front.confirms.is_finished() {
                break;
            }
            (&mut front.confirms)
                .await
                .context("A broadcast page's publish task failed")?
                .context("Failed to publish a page of a broadcast")?;
            let page = flight.pages.pop_front().expect("the front page");
            let n = confirmed.map_or(0, |(_, n, _)| n) + page.n;
            confirmed = Some((page.cursor, n, page.done));
        }
        let Some((cursor, n, done)) = confirmed else {
            return Ok(Settled::Running);
        };
        if !self.checkpoint(&broadcast.id, cursor, n, done).await? {
            return Ok(Settled::Stopped);
        }
        metrics::broadcast_recipients(&broadcast.tenant, "queued", n as u64);
        flight.queued += n;
        Ok(if done {
            Settled::Expanded
        } else {
            Settled::Running
        })
    }

    /// Messages of the broadcast the sender has claimed so far.
    async fn taken(&self, id: &str) -> anyhow::Result<i64> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let row = client
            .query_one(
                "SELECT coalesce(sum(n), 0)::int8 FROM notifier.broadcast_counts WHERE broadcast_id = $1",
                &[&id],
            )
            .await
            .context("Failed to read a broadcast's progress")?;
        Ok(row.get(0))
    }

    /// Writes the checkpoint after confirmed pages, committed asynchronously (see
    /// the module docs); `done`: the audience is
    /// exhausted (the audience becomes the number published). False when the
    /// broadcast is no longer this process's to expand.
    async fn checkpoint(&self, id: &str, cursor: i64, n: i64, done: bool) -> anyhow::Result<bool> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        // `synchronous_commit` off for this transaction alone (see the module docs):
        // `set_config(…, true)` lasts until its end, and the commit reads it.
        let updated = client
            .execute(
                "UPDATE notifier.broadcasts
                    SET cursor = $2, queued = queued + $3,
                        expanded_at = CASE WHEN $4 THEN now() END,
                        audience = CASE WHEN $4 THEN queued + $3 ELSE audience END,
                        runner_until = now() + make_interval(secs => $6), updated_at = now()
                   FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous
                  WHERE id = $1 AND runner_owner = $5 AND state = 'running'",
                &[&id, &cursor, &n, &done, &self.owner, &LEASE.as_secs_f64()],
            )
            .await
            .context("Failed to write a broadcast's checkpoint")?;
        Ok(updated == 1)
    }
}

/// A page published and waiting for its confirms.
struct Page {
    /// The publish, confirms awaited.
    confirms: JoinHandle<Result<(), PublishError>>,
    /// Its last subscriber id (the checkpoint's cursor once it is confirmed).
    cursor: i64,
    /// Its recipients.
    n: i64,
    /// Whether it was the audience's last page.
    done: bool,
}

/// Where one expansion stands: what is checkpointed, what is read, what is in flight.
struct Flight {
    /// The cursor the next page is read from (the last page read).
    read: i64,
    /// Recipients checkpointed.
    queued: i64,
    /// Recipients published, confirmed or not (the lead over the sender counts them).
    published: i64,
    /// Pages published and not yet checkpointed, oldest first.
    pages: VecDeque<Page>,
}

impl Flight {
    fn new(cursor: i64, queued: i64) -> Self {
        Self {
            read: cursor,
            queued,
            published: queued,
            pages: VecDeque::with_capacity(IN_FLIGHT),
        }
    }

    fn push(&mut self, page: Page) {
        self.read = page.cursor;
        self.published += page.n;
        self.pages.push_back(page);
    }
}

/// What a checkpoint found.
enum Settled {
    /// The broadcast goes on.
    Running,
    /// It is no longer this process's to expand (paused, cancelled, taken over).
    Stopped,
    /// Its last page is checkpointed.
    Expanded,
}

/// Recipients per message for a tenant sending `rate` messages a second: `pack`, but
/// at most one per [`PACK_RATE`] of the rate (at least 1): a rate-limited tenant gains
/// nothing from packing (the rate, not the broker, bounds it), and its sender's
/// batches stay small (with 16 a message, the 20,000-recipient test at 250/s met
/// Zalo's `-32` in 3 of 3 runs on a loaded machine; with one, in none of 1). An
/// unlimited tenant gets the full pack.
fn pack_for(pack: usize, rate: f64) -> usize {
    if rate.is_finite() && rate > 0.0 {
        pack.min((rate / PACK_RATE) as usize).max(1)
    } else {
        pack.max(1)
    }
}

/// A page's requests as messages: `pack` at a time in a `notification_batch.v1`
/// (routing key `broadcast.<tenant>.batch`, the relay's), or each alone when `pack`
/// is 1 or a group is left with one.
fn pack_messages(
    tenant: &str,
    requests: Vec<NotificationRequest>,
    pack: usize,
) -> Vec<OutgoingMessage> {
    let pack = pack.max(1);
    let mut messages = Vec::with_capacity(requests.len().div_ceil(pack));
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let group: Vec<NotificationRequest> = requests.by_ref().take(pack).collect();
        if group.len() == 1 {
            messages.extend(group.into_iter().map(message));
            continue;
        }
        messages.push(OutgoingMessage {
            exchange: topology::EX_NOTIFICATIONS.to_owned(),
            routing_key: format!("{}.{tenant}.batch", Lane::Broadcast),
            message_id: format!("batch:{}+{}", group[0].notification_id, group.len()),
            headers: vec![(H_TENANT.to_owned(), tenant.to_owned())],
            body: Envelope::NotificationBatchV1(NotificationBatch {
                tenant: tenant.to_owned(),
                requests: group,
            })
            .to_bytes(),
        });
    }
    messages
}

/// One request alone.
fn message(request: NotificationRequest) -> OutgoingMessage {
    OutgoingMessage {
        exchange: topology::EX_NOTIFICATIONS.to_owned(),
        routing_key: request.routing_key(),
        message_id: request.notification_id.clone(),
        headers: vec![(H_TENANT.to_owned(), request.tenant.clone())],
        body: Envelope::NotificationRequestV1(request).to_bytes(),
    }
}

/// One recipient's request: the broadcast's parameters with `{name}` filled in.
fn request(
    broadcast: &Broadcast,
    subscriber: i64,
    phone: Option<String>,
    zalo_user_id: Option<String>,
    name: Option<&str>,
) -> NotificationRequest {
    let params: BTreeMap<String, String> = broadcast
        .params
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let text = v.as_str().unwrap_or_default();
                    // A long name may take `body` past what the template takes.
                    let text = text.replace("{name}", name.unwrap_or(NO_NAME));
                    (k.clone(), loa_contracts::templates::fit(k, &text))
                })
                .collect()
        })
        .unwrap_or_default();
    NotificationRequest {
        notification_id: broadcast_notification_id(&broadcast.tenant, &broadcast.id, subscriber),
        tenant: broadcast.tenant.clone(),
        kind: NotificationKind::Announcement,
        recipient: Recipient {
            phone,
            zalo_user_id,
        },
        params,
        lane: Lane::Broadcast,
        dossier_code: None,
        not_before: None,
        trace_context: None,
        event_accepted_at: None,
        created_at: Utc::now(),
        broadcast: Some(BroadcastRef {
            id: broadcast.id.clone(),
            subscriber,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(n: i64) -> Vec<NotificationRequest> {
        let broadcast = Broadcast {
            id: "b-1".into(),
            tenant: "an-giang".into(),
            title: "Lịch tiêm chủng".into(),
            audience_tags: None,
            template: "announcement".into(),
            params: serde_json::json!({"title": "Lịch tiêm chủng", "body": "{name} thân mến"}),
            state: store::BroadcastState::Running,
            start_at: Utc::now(),
            end_at: None,
            audience: n,
            cursor: 0,
            queued: 0,
            expanded_at: None,
            left_out: 0,
            left_out_reason: None,
            rate_per_second: None,
            created_at: Utc::now(),
            finished_at: None,
        };
        (1..=n)
            .map(|i| request(&broadcast, i, Some(format!("8490000{i:04}")), None, None))
            .collect()
    }

    #[test]
    fn a_page_travels_pack_requests_a_message_and_a_last_one_alone() {
        let messages = pack_messages("an-giang", requests(33), 16);

        let sizes: Vec<usize> = messages
            .iter()
            .map(|m| match Envelope::from_bytes(&m.body).unwrap() {
                Envelope::NotificationBatchV1(b) => b.requests.len(),
                Envelope::NotificationRequestV1(_) => 1,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [16, 16, 1]);
        assert_eq!(messages[0].routing_key, "broadcast.an-giang.batch");
        assert_eq!(messages[2].routing_key, "broadcast.an-giang.announcement");
        let ids: std::collections::HashSet<String> = messages
            .iter()
            .flat_map(|m| match Envelope::from_bytes(&m.body).unwrap() {
                Envelope::NotificationBatchV1(b) => b.requests,
                Envelope::NotificationRequestV1(r) => vec![r],
                other => panic!("{other:?}"),
            })
            .map(|r| r.notification_id)
            .collect();
        assert_eq!(ids.len(), 33, "each recipient once");
    }

    #[test]
    fn a_rate_limited_tenant_gets_smaller_packs_and_an_unlimited_one_the_whole_pack() {
        assert_eq!(pack_for(16, 250.0), 1);
        assert_eq!(pack_for(16, 1_000.0), 5);
        assert_eq!(pack_for(16, 1_000_000.0), 16);
        assert_eq!(pack_for(16, f64::INFINITY), 16);
        assert_eq!(pack_for(16, 0.0), 16);
        assert_eq!(pack_for(0, 1_000_000.0), 1);
    }

    #[test]
    fn a_pack_of_one_publishes_each_request_alone() {
        let messages = pack_messages("an-giang", requests(3), 1);

        assert_eq!(messages.len(), 3);
        assert!(messages
            .iter()
            .all(|m| m.routing_key == "broadcast.an-giang.announcement"));
    }
}
