//! Short leases, renewed while their sender lives.
//!
//! A claim ([`crate::deliveries::claim`]) reserves a request for one sender process
//! until `lease_until`. The lease is short (`lease_secs`, 5 s by default) and this
//! process's [`Leases::run_renewals`] extends every lease it holds a few times per
//! lease period, however long the sends wait for rate-limit slots. So a live sender
//! never loses a request to another replica, and a dead one (SIGKILL, a lost node)
//! lets go of its requests within one lease period: a crash costs seconds, not the
//! minute a lease sized for the slowest batch used to cost.
//!
//! A request leased by someone else is never waited for: the sender parks that copy
//! on the row and acks it ([`crate::deliveries::park_behind_lease`]); if the holder
//! records a result the parked copy is dropped with it, and if the holder dies the
//! scheduler republishes the copy once the lease has lapsed.
//!
//! Why not a lease sized for the batch's longest wait: a dead sender's requests then
//! stay locked that long, and every batch holding one of them (all of a restarted
//! sender's first batches, since the broker redelivers the dead one's messages to it)
//! waits too. Renewal costs one small statement per second per process.

use anyhow::Context;
use deadpool_postgres::Pool;
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// The leases this process holds, and how long each lasts unrenewed.
pub(crate) struct Leases {
    pool: Pool,
    owner: i64,
    period: Duration,
    held: Mutex<HashSet<String>>,
}

impl Leases {
    /// Leases of `period` for a new sender process (a random owner id).
    pub(crate) fn new(pool: Pool, period: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            owner: rand::random::<i64>(),
            period: period.max(Duration::from_secs(1)),
            held: Mutex::new(HashSet::new()),
        })
    }

    /// This process's owner id, stored with each lease it takes.
    pub(crate) fn owner(&self) -> i64 {
        self.owner
    }

    /// How long a lease lasts without renewal.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// How often the held leases are renewed: four times per period, so two missed
    /// renewals in a row (a slow database) still leave the lease alive.
    pub(crate) fn renew_every(&self) -> Duration {
        self.period / 4
    }

    /// Starts renewing the leases of `ids` (just claimed by this process).
    pub(crate) fn hold<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut held = self.held.lock().expect("lease registry lock");
        held.extend(ids.into_iter().map(str::to_owned));
    }

    /// Stops renewing the leases of `ids` (recorded, or given back).
    pub(crate) fn release<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut held = self.held.lock().expect("lease registry lock");
        for id in ids {
            held.remove(id);
        }
    }

    /// Extends every held lease that is still this process's by one period. Returns
    /// how many were extended.
    pub(crate) async fn renew(&self) -> anyhow::Result<u64> {
        let ids: Vec<String> = {
            let held = self.held.lock().expect("lease registry lock");
            held.iter().cloned().collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        client
            .execute(
                "UPDATE notifier.deliveries
                    SET lease_until = now() + make_interval(secs => $3::float8)
                  WHERE notification_id = ANY($1) AND lease_owner = $2
                    AND status = 'sending' AND lease_until IS NOT NULL
                    -- Only leases past half their period: a request claimed moments
                    -- ago (most of them, under load) costs no row version here.
                    -- ($3 typed: `$3 / 2` alone made PostgreSQL infer an integer.)
                    AND lease_until < now() + make_interval(secs => $3::float8 / 2)",
                &[&ids, &self.owner, &self.period.as_secs_f64()],
            )
            .await
            .context("Failed to renew delivery leases")
    }

    /// Renews the held leases until `cancel` fires.
    pub(crate) async fn run_renewals(self: Arc<Self>, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.renew_every()) => {}
            }
            match self.renew().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // 1st, 2nd, 4th, 8th… failure: an outage must not flood the log.
                    if failures.is_power_of_two() {
                        tracing::warn!(failures, error.cause_chain = ?e, error.message = %e, "Failed to renew delivery leases; another replica may take them over.");
                    }
                }
            }
        }
    }
}
