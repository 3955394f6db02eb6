//! What the run remembers across the lifetimes of the processes it kills: the
//! messages each sandbox process accepted (its memory dies with it), the ambiguous
//! resends each notifier process counted (its counters die with it), which services
//! are down on purpose, and the log of what was done when.
//!
//! Shared by the fault executor, the watcher and the audit; every critical section is
//! short and never held across an await.

use crate::bench::load::SandboxMessage;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// One line of the chaos log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Seconds from the start of the load.
    pub at_secs: f64,
    /// What was done.
    pub action: String,
    /// How it went (`restarted, ready after 2.1 s`, `14 backends`, …).
    pub outcome: String,
    /// Whether it was carried out as planned.
    pub done: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Messages of sandbox processes that were killed, as each last listed them.
    archived_messages: Vec<SandboxMessage>,
    /// Bumped each time a sandbox process is killed.
    sandbox_generation: u64,
    /// Ambiguous resends counted by notifier processes that were killed, per tenant.
    resends_of_the_dead: BTreeMap<String, f64>,
    /// The highest count the live notifier process reported, per tenant.
    resends_live: BTreeMap<String, f64>,
    /// Bumped each time a notifier process is killed.
    notifier_generation: u64,
    /// Scrapes that failed right before a kill (the count may then be short).
    missed_final_scrapes: u32,
    /// Services killed and not yet started again.
    down: BTreeSet<&'static str>,
    log: Vec<Entry>,
}

/// The run's shared memory.
#[derive(Debug, Default)]
pub struct Record {
    inner: Mutex<Inner>,
}

impl Record {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a line to the chaos log.
    pub fn log(
        &self,
        at: Duration,
        action: impl Into<String>,
        outcome: impl Into<String>,
        done: bool,
    ) {
        self.lock().log.push(Entry {
            at_secs: at.as_secs_f64(),
            action: action.into(),
            outcome: outcome.into(),
            done,
        });
    }

    /// The chaos log, in time order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut log = self.lock().log.clone();
        log.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        log
    }

    /// A service is being killed on purpose.
    pub fn going_down(&self, target: &'static str) {
        self.lock().down.insert(target);
    }

    /// A killed service was started again.
    pub fn back_up(&self, target: &str) {
        self.lock().down.remove(target);
    }

    /// Whether a service is down on purpose.
    pub fn is_down(&self, target: &str) -> bool {
        self.lock().down.contains(target)
    }

    /// The messages of a sandbox process about to be killed; later lifetimes start
    /// counting from zero.
    pub fn archive_sandbox(&self, messages: Vec<SandboxMessage>) {
        let mut inner = self.lock();
        inner.archived_messages.extend(messages);
        inner.sandbox_generation += 1;
    }

    /// Which sandbox process is the live one (bumped by every kill).
    pub fn sandbox_generation(&self) -> u64 {
        self.lock().sandbox_generation
    }

    /// Every archived message plus `live` (the last process's list).
    pub fn all_messages(&self, live: Vec<SandboxMessage>) -> Vec<SandboxMessage> {
        let mut all = self.lock().archived_messages.clone();
        all.extend(live);
        all
    }

    /// Which notifier process is the live one (bumped by every kill).
    pub fn notifier_generation(&self) -> u64 {
        self.lock().notifier_generation
    }

    /// A scrape of the live notifier's `loa_notifier_ambiguous_resends_total`, taken
    /// while `generation` was live: ignored if that process has died since (its final
    /// count is already booked), otherwise kept per tenant as the highest seen
    /// (counters only grow within a process).
    pub fn observe_resends(&self, generation: u64, per_tenant: BTreeMap<String, f64>) {
        let mut inner = self.lock();
        if inner.notifier_generation != generation {
            return;
        }
        for (tenant, n) in per_tenant {
            let seen = inner.resends_live.entry(tenant).or_default();
            *seen = seen.max(n);
        }
    }

    /// The live notifier process was killed: its last count is booked for good.
    /// `final_scrape_missed` says the scrape right before the kill failed.
    pub fn notifier_killed(&self, final_scrape_missed: bool) {
        let mut inner = self.lock();
        let live = std::mem::take(&mut inner.resends_live);
        for (tenant, n) in live {
            *inner.resends_of_the_dead.entry(tenant).or_default() += n;
        }
        inner.notifier_generation += 1;
        if final_scrape_missed {
            inner.missed_final_scrapes += 1;
        }
    }

    /// Ambiguous resends over every notifier process's lifetime, per tenant, and how
    /// many final scrapes were missed.
    pub fn resends(&self) -> (BTreeMap<String, f64>, u32) {
        let inner = self.lock();
        let mut total = inner.resends_of_the_dead.clone();
        for (tenant, n) in &inner.resends_live {
            *total.entry(tenant.clone()).or_default() += n;
        }
        (total, inner.missed_final_scrapes)
    }
}

/// The series of a counter in a Prometheus exposition, by their `tenant` label (the
/// whole sum under `""` for series without one).
pub fn counter_by_tenant(exposition: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with(['{', ' ']) {
            continue;
        }
        let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let tenant = rest
            .split_once("tenant=\"")
            .and_then(|(_, t)| t.split_once('"'))
            .map_or("", |(t, _)| t);
        *out.entry(tenant.to_owned()).or_default() += value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_read_per_tenant_and_other_metrics_are_ignored() {
        let text = "# HELP loa_notifier_ambiguous_resends_total x\n\
                    # TYPE loa_notifier_ambiguous_resends_total counter\n\
                    loa_notifier_ambiguous_resends_total{tenant=\"bench-01\"} 2\n\
                    loa_notifier_ambiguous_resends_total{tenant=\"bench-02\"} 0\n\
                    loa_notifier_ambiguous_resends_totally{tenant=\"bench-01\"} 9\n\
                    loa_notifier_ambiguous_sends_total{tenant=\"bench-01\",cause=\"timeout\"} 5\n";
        let got = counter_by_tenant(text, "loa_notifier_ambiguous_resends_total");
        assert_eq!(got.get("bench-01"), Some(&2.0));
        assert_eq!(got.get("bench-02"), Some(&0.0));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn resends_add_up_over_notifier_lifetimes_and_a_late_scrape_of_a_dead_one_is_ignored() {
        let record = Record::default();
        let one = |n: f64| BTreeMap::from([("t".to_owned(), n)]);
        let first = record.notifier_generation();
        record.observe_resends(first, one(2.0));
        record.observe_resends(first, one(1.0)); // an older scrape arriving late
        record.notifier_killed(false);
        record.observe_resends(first, one(5.0)); // the dead process, scraped before it died
        let second = record.notifier_generation();
        record.observe_resends(second, one(3.0));
        let (total, missed) = record.resends();
        assert_eq!(total.get("t"), Some(&5.0));
        assert_eq!(missed, 0);
    }
}
