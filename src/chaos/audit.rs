//! The audit: what a chaos run must show, judged from the evidence alone. Pure, so
//! each rule is tested on hand-made evidence.
//!
//! - **Events**: every event intake accepted (`202`, alone or inside a `207`) is in
//!   `tracker.dossier_events`; no event it refused is; no valid event was refused.
//! - **What was planned** is the tracker's own planning ([`loa_tracker::plan`]) over
//!   the events it stored: the tracker deletes an outbox row once the broker confirmed
//!   it, so its history of events, not the outbox, is the lasting record of what it
//!   planned. The load makes every event a fresh dossier, so each stored event was its
//!   dossier's current state when it was planned (checked: one event per dossier).
//! - **Delivery**: every planned notification reached Zalo (a message at the sandbox
//!   carrying its id as `tracking_id`), or ended `failed` with its last error, or sits
//!   in a dead letter with a reason. Anything else is **lost**.
//! - **Duplicates**: a second copy at Zalo is allowed only as an ambiguous resend the
//!   notifier counted (`loa_notifier_ambiguous_resends_total`, summed over every
//!   notifier process), tenant by tenant.
//! - **Stalls**: the longest time Zalo accepted nothing while work waited stays under
//!   the limit.
//! - **The run itself**: every scheduled fault was carried out, and no service exited
//!   without being killed.

use super::{
    evidence::{Evidence, StoredEvent},
    load::{EventKey, Offered},
    record::Entry,
    watch::Watched,
};
use loa_contracts::DossierEvent;
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

/// Delivery statuses that end a delivery.
const ENDED: [&str; 4] = ["sent", "delivered", "seen", "failed"];
/// How many ids a failure message lists.
const SHOWN: usize = 10;

/// What the audit reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// What the load offered and intake answered.
    pub offered: &'a Offered,
    /// The services' tables and the sandbox's messages.
    pub evidence: &'a Evidence,
    /// Ambiguous resends over every notifier process, per tenant.
    pub resends: &'a BTreeMap<String, f64>,
    /// Kills before which the resend count could not be read.
    pub missed_scrapes: u32,
    /// The watcher's gaps and crashes.
    pub watched: &'a Watched,
    /// The chaos log.
    pub log: &'a [Entry],
    /// The longest gap in sending allowed while work waits.
    pub stall_limit: Duration,
    /// The fault kinds the schedule held (each must have been carried out).
    pub scheduled_kinds: &'a [String],
}

/// One line of the audit table.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub check: String,
    /// What the run measured.
    pub measured: String,
    /// What it must be (empty for a figure shown for context).
    pub required: String,
    /// `Some(true)` met, `Some(false)` failed, `None` a figure only.
    pub ok: Option<bool>,
}

/// The audit's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// The table, in order.
    pub checks: Vec<Check>,
    /// Why the run fails, one sentence each (empty: it passes).
    pub failures: Vec<String>,
    /// Notifications that did not reach Zalo but ended with a reason, by reason.
    pub undeliverable: BTreeMap<String, usize>,
    /// Notifications planned.
    pub planned: usize,
    /// Of them, at Zalo exactly once.
    pub exactly_once: usize,
    /// Of them, at Zalo more than once.
    pub repeated: usize,
    /// Copies beyond the first, over all notifications.
    pub extra_copies: usize,
    /// Ambiguous resends counted.
    pub resends: u64,
    /// Planned, not at Zalo, no reason.
    pub lost: usize,
    /// The longest gap, in seconds.
    pub longest_gap_secs: f64,
}

impl Audit {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn figure(&mut self, check: &str, measured: impl ToString) {
        self.checks.push(Check {
            check: check.to_owned(),
            measured: measured.to_string(),
            required: String::new(),
            ok: None,
        });
    }

    /// A checked line; `failure` is the sentence recorded when it is not met.
    fn require(
        &mut self,
        check: &str,
        measured: impl ToString,
        required: &str,
        ok: bool,
        failure: impl FnOnce() -> String,
    ) {
        self.checks.push(Check {
            check: check.to_owned(),
            measured: measured.to_string(),
            required: required.to_owned(),
            ok: Some(ok),
        });
        if !ok {
            self.failures.push(failure());
        }
    }
}

fn first<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    let mut ids: Vec<&String> = ids.into_iter().collect();
    ids.sort();
    let shown: Vec<&str> = ids.iter().take(SHOWN).map(|s| s.as_str()).collect();
    let more = ids.len().saturating_sub(SHOWN);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The notifications the tracker's planning gives for `events`, by id with their
/// tenant, and the events it could not read.
pub fn planned(events: &[StoredEvent]) -> (HashMap<String, String>, Vec<String>) {
    let mut ids = HashMap::new();
    let mut unreadable = Vec::new();
    for stored in events {
        let Ok(event) = serde_json::from_value::<DossierEvent>(stored.event.clone()) else {
            unreadable.push(stored.event_id.clone());
            continue;
        };
        let context = loa_tracker::PlanContext {
            received_at: event.received_at.map(|t| t.to_utc()),
            due_at: event.due_at.map(|t| t.to_utc()),
            // Every chaos event opens its own dossier: no appointment moves.
            previous_due_at: None,
            previous_status: None,
            lookup_url: "",
            trace_context: None,
            now: chrono::Utc::now(),
        };
        for request in loa_tracker::plan(&event, &context) {
            ids.insert(request.notification_id, request.tenant);
        }
    }
    (ids, unreadable)
}

/// Judges a run.
pub fn audit(inputs: &Inputs<'_>) -> Audit {
    let Inputs {
        offered,
        evidence,
        resends,
        missed_scrapes,
        watched,
        log,
        stall_limit,
        scheduled_kinds,
    } = *inputs;
    let mut a = Audit::default();

    // The run itself.
    let not_done: Vec<String> = log
        .iter()
        .filter(|e| !e.done)
        .map(|e| format!("{} at {:.1} s ({})", e.action, e.at_secs, e.outcome))
        .collect();
    a.require(
        "faults carried out as scheduled",
        format!("{} of {}", log.len() - not_done.len(), log.len()),
        "all",
        not_done.is_empty(),
        || format!("faults not carried out: {}", not_done.join("; ")),
    );
    let done_kinds: HashSet<String> = log
        .iter()
        .filter(|e| e.done)
        .map(|e| e.action.clone())
        .collect();
    let missing_kinds: Vec<&String> = scheduled_kinds
        .iter()
        .filter(|k| !done_kinds.contains(*k))
        .collect();
    a.require(
        "fault kinds that struck",
        format!(
            "{} of {}",
            scheduled_kinds.len() - missing_kinds.len(),
            scheduled_kinds.len()
        ),
        "all",
        missing_kinds.is_empty(),
        || {
            format!(
                "fault kinds that never struck: {}",
                first(missing_kinds.iter().copied())
            )
        },
    );
    let crashes: Vec<String> = watched
        .crashes
        .iter()
        .map(|(name, at)| format!("{name} at {at:.1} s"))
        .collect();
    a.require(
        "services that exited without being killed",
        crashes.len(),
        "0",
        crashes.is_empty(),
        || format!("services exited on their own: {}", crashes.join(", ")),
    );

    // Events.
    let stored: HashMap<(&str, &str), &StoredEvent> = evidence
        .events
        .iter()
        .map(|e| ((e.tenant.as_str(), e.event_id.as_str()), e))
        .collect();
    let in_tracker = |k: &EventKey| stored.contains_key(&(k.0.as_str(), k.1.as_str()));
    a.figure("events offered", offered.events);
    a.figure(
        "events intake accepted (202 per item)",
        offered.accepted.len(),
    );
    let retries: u64 = offered.retries.values().sum();
    a.figure(
        "batches retried by the load (503, refused or broken connections)",
        retries,
    );
    a.require(
        "events intake never answered for (load gave up after 120 s)",
        offered.unanswered.len(),
        "0",
        offered.unanswered.is_empty(),
        || {
            format!(
                "intake did not answer for {} events within 120 s",
                offered.unanswered.len()
            )
        },
    );
    let refused_invalid = offered
        .refused
        .iter()
        .filter(|r| offered.meant_invalid.contains(&r.key))
        .count();
    a.require(
        "events refused as invalid (422), of those made invalid",
        format!("{refused_invalid} of {}", offered.meant_invalid.len()),
        "all",
        refused_invalid == offered.meant_invalid.len(),
        || "intake accepted an event with an impossible time".to_owned(),
    );
    let valid_refused: Vec<String> = offered
        .refused
        .iter()
        .filter(|r| !offered.meant_invalid.contains(&r.key))
        .map(|r| format!("{} ({} {})", r.key.1, r.status, r.code))
        .collect();
    a.require(
        "valid events refused",
        valid_refused.len(),
        "0",
        valid_refused.is_empty(),
        || format!("intake refused valid events: {}", first(&valid_refused)),
    );
    let missing: Vec<String> = offered
        .accepted
        .iter()
        .filter(|k| !in_tracker(k))
        .map(|k| k.1.clone())
        .collect();
    a.require(
        "accepted events missing from the tracker",
        missing.len(),
        "0",
        missing.is_empty(),
        || {
            let dead: HashSet<&String> = evidence.dead_letters.iter().flat_map(|d| &d.ids).collect();
            let dead_lettered = missing.iter().filter(|id| dead.contains(id)).count();
            format!(
                "{} accepted events are not in tracker.dossier_events ({dead_lettered} of them dead-lettered): {}",
                missing.len(),
                first(&missing)
            )
        },
    );
    let refused_stored: Vec<String> = offered
        .refused
        .iter()
        .filter(|r| in_tracker(&r.key))
        .map(|r| r.key.1.clone())
        .collect();
    a.require(
        "refused events found in the tracker",
        refused_stored.len(),
        "0",
        refused_stored.is_empty(),
        || {
            format!(
                "events intake refused reached the tracker: {}",
                first(&refused_stored)
            )
        },
    );
    let accepted: HashSet<(&str, &str)> = offered
        .accepted
        .iter()
        .map(|k| (k.0.as_str(), k.1.as_str()))
        .collect();
    let unacknowledged = stored.keys().filter(|k| !accepted.contains(*k)).count();
    a.figure(
        "events in the tracker the load never saw accepted",
        unacknowledged,
    );
    let mut per_dossier: HashMap<(&str, &str), usize> = HashMap::new();
    for e in &evidence.events {
        *per_dossier.entry((&e.tenant, &e.dossier_code)).or_default() += 1;
    }
    let shared = per_dossier.values().filter(|n| **n > 1).count();
    a.require(
        "dossiers with more than one event (the plan assumes one)",
        shared,
        "0",
        shared == 0,
        || format!("{shared} dossiers have more than one event: the planned set cannot be derived"),
    );
    a.require(
        "tracker outbox rows never relayed",
        evidence.outbox_left,
        "0",
        evidence.outbox_left == 0,
        || format!("{} outbox rows were never relayed", evidence.outbox_left),
    );

    // What was planned, and where each ended.
    let (planned, unreadable) = planned(&evidence.events);
    a.require(
        "stored events the planning could not read",
        unreadable.len(),
        "0",
        unreadable.is_empty(),
        || format!("stored events that do not parse: {}", first(&unreadable)),
    );
    a.planned = planned.len();
    a.figure(
        "notifications planned (the tracker's plan over its events)",
        planned.len(),
    );
    let mut copies: HashMap<&str, usize> = HashMap::new();
    let mut unplanned: Vec<String> = Vec::new();
    let mut hung = 0;
    for m in &evidence.messages {
        hung += usize::from(m.hung);
        match m.tracking_id.as_deref() {
            Some(id) if planned.contains_key(id) => *copies.entry(id).or_default() += 1,
            other => unplanned.push(other.unwrap_or("(none)").to_owned()),
        }
    }
    a.figure(
        "messages Zalo accepted (every copy, every sandbox lifetime)",
        evidence.messages.len(),
    );
    a.figure("of them answered late by a hang fault", hung);
    a.exactly_once = copies.values().filter(|n| **n == 1).count();
    a.figure("notifications at Zalo exactly once", a.exactly_once);
    let mut extra_by_tenant: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, n) in &copies {
        if *n > 1 {
            *extra_by_tenant.entry(planned[*id].as_str()).or_default() += n - 1;
        }
    }
    a.extra_copies = extra_by_tenant.values().sum();
    a.repeated = copies.values().filter(|n| **n > 1).count();
    a.figure(
        "notifications at Zalo more than once (extra copies)",
        format!("{} ({})", a.repeated, a.extra_copies),
    );
    let mut lost: Vec<String> = Vec::new();
    let dead_reason: HashMap<&str, &str> = evidence
        .dead_letters
        .iter()
        .flat_map(|d| d.ids.iter().map(move |id| (id.as_str(), d.reason.as_str())))
        .collect();
    for id in planned.keys() {
        if copies.contains_key(id.as_str()) {
            continue;
        }
        let delivery = evidence.deliveries.get(id);
        let reason = match delivery {
            Some(d) if d.status == "failed" => Some(
                d.last_error
                    .clone()
                    .unwrap_or_else(|| "failed, no error recorded".to_owned()),
            ),
            _ => dead_reason
                .get(id.as_str())
                .map(|r| format!("dead letter: {r}")),
        };
        match reason {
            Some(r) => *a.undeliverable.entry(r).or_default() += 1,
            None => lost.push(format!(
                "{id} ({})",
                delivery.map_or("no delivery row", |d| d.status.as_str())
            )),
        }
    }
    let undeliverable: usize = a.undeliverable.values().sum();
    a.figure(
        "notifications dead-lettered or undeliverable, with a reason",
        undeliverable,
    );
    a.lost = lost.len();
    a.require(
        "notifications lost (planned, not at Zalo, no reason)",
        lost.len(),
        "0",
        lost.is_empty(),
        || {
            format!(
                "{} planned notifications never reached Zalo and have no reason: {}",
                lost.len(),
                first(&lost)
            )
        },
    );
    a.require(
        "messages at Zalo nobody planned",
        unplanned.len(),
        "0",
        unplanned.is_empty(),
        || format!("Zalo got messages nobody planned: {}", first(&unplanned)),
    );
    let unsettled: Vec<String> = evidence
        .deliveries
        .iter()
        .filter(|(_, d)| !ENDED.contains(&d.status.as_str()))
        .map(|(id, d)| format!("{id} ({}, {} attempts)", d.status, d.attempts))
        .collect();
    a.require(
        "deliveries left unsettled (sending, retrying, parked)",
        unsettled.len(),
        "0",
        unsettled.is_empty(),
        || format!("deliveries never settled: {}", first(&unsettled)),
    );
    let pauses: Vec<String> = evidence
        .pauses
        .iter()
        .map(|(t, r)| format!("{t}: {r}"))
        .collect();
    a.require(
        "tenants paused",
        pauses.len(),
        "0",
        pauses.is_empty(),
        || format!("tenants paused: {}", pauses.join("; ")),
    );

    // Duplicates against the counted resends, tenant by tenant.
    // Counters are whole numbers held as floats.
    a.resends = resends.values().map(|n| *n as u64).sum();
    a.figure(
        "ambiguous resends counted (every notifier process)",
        if missed_scrapes > 0 {
            format!("{} ({missed_scrapes} final counts unread)", a.resends)
        } else {
            a.resends.to_string()
        },
    );
    let unexplained: Vec<String> = extra_by_tenant
        .iter()
        .filter_map(|(tenant, extra)| {
            let counted = resends.get(*tenant).copied().unwrap_or(0.0);
            (*extra as f64 > counted)
                .then(|| format!("{tenant}: {extra} extra copies, {counted} resends counted"))
        })
        .collect();
    let beyond: u64 = extra_by_tenant
        .iter()
        .map(|(t, extra)| {
            (*extra as u64).saturating_sub(resends.get(*t).copied().unwrap_or(0.0) as u64)
        })
        .sum();
    a.require(
        "duplicates beyond the counted resends",
        beyond,
        "0",
        unexplained.is_empty(),
        || {
            let mut ids: Vec<String> = copies
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(id, n)| format!("{id} ×{n}"))
                .collect();
            ids.sort();
            format!(
                "unexplained duplicates: {} (ids: {})",
                unexplained.join("; "),
                first(&ids)
            )
        },
    );

    // Stalls.
    let longest = watched.longest.map_or(0.0, |g| g.length_secs);
    a.longest_gap_secs = longest;
    let limit = stall_limit.as_secs_f64();
    a.require(
        "longest gap in sending while work waited",
        match watched.longest {
            Some(g) => format!("{:.1} s (from {:.1} s)", g.length_secs, g.start_secs),
            None => "none".to_owned(),
        },
        &format!("≤ {limit:.0} s"),
        longest <= limit,
        || format!("sending stalled for {longest:.1} s while work waited (limit {limit:.0} s)"),
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bench::load::{event, SandboxMessage},
        chaos::{evidence::DeadLetter, evidence::Delivery, load::Refusal, watch::Gap},
    };

    /// `n` accepted events of tenant `t`, stored by the tracker, and their plan.
    fn world(n: usize) -> (Offered, Evidence, Vec<String>) {
        let now = chrono::Utc::now();
        let mut offered = Offered::default();
        let mut evidence = Evidence::default();
        let mut ids = Vec::new();
        for i in 0..n {
            let (value, id) = event("audit", "t", i, now);
            let parsed = DossierEvent::from_json(&value).unwrap();
            let key = ("t".to_owned(), parsed.event_id.clone());
            offered.events += 1;
            offered.accepted.push(key);
            evidence.events.push(StoredEvent {
                tenant: "t".into(),
                event_id: parsed.event_id.clone(),
                dossier_code: parsed.dossier_code.clone(),
                event: serde_json::to_value(&parsed).unwrap(),
            });
            evidence.deliveries.insert(
                id.clone(),
                Delivery {
                    tenant: "t".into(),
                    status: "delivered".into(),
                    attempts: 1,
                    last_error: None,
                },
            );
            ids.push(id);
        }
        (offered, evidence, ids)
    }

    fn at_zalo(evidence: &mut Evidence, id: &str) {
        evidence.messages.push(SandboxMessage {
            msg_id: format!("m{}", evidence.messages.len()),
            tracking_id: Some(id.to_owned()),
            received_at: chrono::Utc::now(),
            hung: false,
        });
    }

    fn judge(offered: &Offered, evidence: &Evidence, resends: f64, watched: &Watched) -> Audit {
        let resends = BTreeMap::from([("t".to_owned(), resends)]);
        let log = vec![Entry {
            at_secs: 1.0,
            action: "SIGKILL notifier, restart".into(),
            outcome: "ready".into(),
            done: true,
        }];
        audit(&Inputs {
            offered,
            evidence,
            resends: &resends,
            missed_scrapes: 0,
            watched,
            log: &log,
            stall_limit: Duration::from_secs(10),
            scheduled_kinds: &["SIGKILL notifier, restart".to_owned()],
        })
    }

    #[test]
    fn the_plan_is_the_trackers_own_one_notification_per_fresh_dossier_with_the_loads_ids() {
        let (_, evidence, ids) = world(30);
        let (planned, unreadable) = planned(&evidence.events);
        assert!(unreadable.is_empty());
        let mut got: Vec<&String> = planned.keys().collect();
        got.sort();
        let mut want: Vec<&String> = ids.iter().collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_run_where_everything_arrived_once_passes() {
        let (offered, mut evidence, ids) = world(20);
        for id in &ids {
            at_zalo(&mut evidence, id);
        }
        let a = judge(&offered, &evidence, 0.0, &Watched::default());
        assert!(a.passed(), "{:?}", a.failures);
        assert_eq!((a.planned, a.exactly_once, a.lost), (20, 20, 0));
    }

    #[test]
    fn a_notification_neither_at_zalo_nor_ended_with_a_reason_is_a_loss() {
        let (offered, mut evidence, ids) = world(10);
        for id in &ids[1..] {
            at_zalo(&mut evidence, id);
        }
        evidence.deliveries.get_mut(&ids[0]).unwrap().status = "sending".into();
        let a = judge(&offered, &evidence, 0.0, &Watched::default());
        assert_eq!(a.lost, 1);
        assert!(
            a.failures.iter().any(|f| f.contains(&ids[0])),
            "{:?}",
            a.failures
        );
    }

    #[test]
    fn a_failed_or_dead_lettered_notification_with_its_reason_is_no_loss() {
        let (offered, mut evidence, ids) = world(10);
        for id in &ids[2..] {
            at_zalo(&mut evidence, id);
        }
        let failed = evidence.deliveries.get_mut(&ids[0]).unwrap();
        failed.status = "failed".into();
        failed.last_error = Some("-100: gave up after 8 attempts".into());
        evidence.deliveries.remove(&ids[1]);
        evidence.dead_letters.push(DeadLetter {
            source_queue: "notifier.transactional".into(),
            reason: "delivery_limit".into(),
            ids: vec![ids[1].clone()],
        });
        let a = judge(&offered, &evidence, 0.0, &Watched::default());
        assert!(a.passed(), "{:?}", a.failures);
        assert_eq!(a.undeliverable.values().sum::<usize>(), 2);
    }

    #[test]
    fn duplicates_pass_up_to_the_counted_resends_and_fail_beyond() {
        let (offered, mut evidence, ids) = world(10);
        for id in &ids {
            at_zalo(&mut evidence, id);
        }
        at_zalo(&mut evidence, &ids[3]);
        at_zalo(&mut evidence, &ids[4]);
        assert!(judge(&offered, &evidence, 2.0, &Watched::default()).passed());
        let a = judge(&offered, &evidence, 1.0, &Watched::default());
        assert!(!a.passed());
        assert!(
            a.failures[0].contains("unexplained duplicates"),
            "{:?}",
            a.failures
        );
    }

    #[test]
    fn an_accepted_event_missing_from_the_tracker_and_a_refused_one_in_it_both_fail() {
        let (mut offered, mut evidence, ids) = world(5);
        for id in &ids {
            at_zalo(&mut evidence, id);
        }
        let gone = offered.accepted.pop().unwrap();
        offered.accepted.push(("t".into(), "never-stored".into()));
        offered.refused.push(Refusal {
            key: gone,
            status: 422,
            code: "time_in_future".into(),
        });
        let a = judge(&offered, &evidence, 0.0, &Watched::default());
        let text = a.failures.join("\n");
        assert!(text.contains("never-stored"), "{text}");
        assert!(text.contains("reached the tracker"), "{text}");
        assert!(text.contains("refused valid events"), "{text}");
    }

    #[test]
    fn a_gap_longer_than_the_limit_fails_the_run() {
        let (offered, mut evidence, ids) = world(3);
        for id in &ids {
            at_zalo(&mut evidence, id);
        }
        let watched = Watched {
            longest: Some(Gap {
                start_secs: 40.0,
                length_secs: 10.5,
            }),
            ..Watched::default()
        };
        let a = judge(&offered, &evidence, 0.0, &watched);
        assert!(!a.passed());
        assert!(
            a.failures[0].contains("stalled for 10.5 s"),
            "{:?}",
            a.failures
        );
    }
}
