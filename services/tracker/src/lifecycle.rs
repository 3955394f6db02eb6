//! The dossier lifecycle: which national status may follow which, and the one state a
//! dossier's events fold into, whatever order they arrive in.
//!
//! # Transitions
//!
//! The rules follow the lifecycle provinces run (domain notes §1.5), lenient where a
//! one-stop system may not report every step (counter intake starts at 2, some systems
//! never report 4 or 9), strict where the step is impossible:
//!
//! | from | may go to | never to |
//! |---|---|---|
//! | 1 Mới đăng ký | any status | |
//! | 2 Được tiếp nhận | 2, 4, 5, 6, 7, 8, 9, 10 | 1, 3 (after reception a refusal is 8) |
//! | 4 Đang xử lý | 4, 5, 6, 7, 8, 9, 10 | 1, 2, 3 |
//! | 5 Yêu cầu bổ sung | 2, 3 (supplement deadline passed), 4, 5, 6, 7, 8, 9, 10 | 1 |
//! | 6 Nghĩa vụ tài chính | 2, 4, 5, 6, 7, 8, 9, 10 | 1, 3 |
//! | 9 Đã xử lý xong | 6 (fees collected at the return), 7, 9, 10 | 1, 2, 3, 4, 5, 8 |
//! | 3, 7, 8, 10 (closed) | nothing | everything |
//!
//! An event whose status the rules do not allow after the dossier's status is an
//! **invalid transition**: it is recorded in the history (flagged), counted and logged
//! by the store, but it does not change the dossier's state and notifies nobody. The
//! source of record may be wrong, or Loa may have missed a reopening; either way Loa
//! does not tell a citizen something that contradicts what it told them before.
//!
//! # One state, whatever the order
//!
//! A dossier's state is the fold of its events in their order ([`sort_events`]): by
//! `sequence` when every event of the dossier carries one, otherwise by occurrence
//! time; then by lifecycle stage, then by event id, so the order is total. An event
//! that comes after every event already recorded is applied to the stored state
//! ([`DossierState::advance`], the usual case, no history read); any other event (late,
//! or one that changes how the dossier's events are ordered) makes the store fold the
//! whole history again ([`fold`]). Both paths take the same steps, so random orders,
//! repeats and batchings of a dossier's events end in the state of the ordered stream
//! (property tests below and in the tracker's integration tests). Only the first path
//! plans notifications: a late event is history, not news.

use crate::domain::{is_completion, mask_name, OrderingKey};
use chrono::{DateTime, Utc};
use loa_contracts::{ApplicantKind, DossierEvent, DossierStatus};
use std::cmp::Ordering;

/// Whether a dossier in status `from` may move to `to` (see the module's table).
pub fn allows(from: DossierStatus, to: DossierStatus) -> bool {
    use DossierStatus::*;
    match from {
        Refused | Withdrawn | Stopped | ResultReturned => false,
        Submitted => true,
        Received => !matches!(to, Submitted | Refused),
        Processing => !matches!(to, Submitted | Received | Refused),
        SupplementRequested => to != Submitted,
        PaymentRequested => !matches!(to, Submitted | Refused),
        ResultReady => matches!(
            to,
            PaymentRequested | Withdrawn | ResultReady | ResultReturned
        ),
    }
}

/// What the rules made of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It became the dossier's state.
    Applied,
    /// The rules do not allow its status after `from`: recorded, not applied.
    Invalid {
        /// The dossier's status it could not follow.
        from: DossierStatus,
    },
}

impl Verdict {
    /// Whether the event changed the state.
    pub fn is_applied(self) -> bool {
        self == Self::Applied
    }
}

/// A dossier's current state, as stored in `tracker.dossiers`.
#[derive(Debug, Clone, PartialEq)]
pub struct DossierState {
    /// Tenant id.
    pub tenant: String,
    /// The code printed on the receipt.
    pub dossier_code: String,
    /// Current status (of the newest event the rules allowed).
    pub status: DossierStatus,
    /// Procedure code (mã TTHC).
    pub procedure_code: String,
    /// Procedure name.
    pub procedure_name: String,
    /// Agency code.
    pub agency_code: String,
    /// Agency name.
    pub agency_name: String,
    /// The owner's masked name (`Trần T. B.`), the only form the public page shows.
    pub applicant_masked: String,
    /// When the desk received the dossier.
    pub received_at: Option<DateTime<Utc>>,
    /// The appointment date.
    pub due_at: Option<DateTime<Utc>>,
    /// The ordering key of the newest applied event that carried the appointment date.
    pub due_ordering: Option<OrderingKey>,
    /// When the result became ready (9), or was returned (10) without a 9 seen first.
    pub completed_at: Option<DateTime<Utc>>,
    /// The token of the public lookup link.
    pub lookup_token: String,
    /// The newest event recorded (applied or not): with `ordering`, what a new event
    /// must come after to be applied without reading the history.
    pub last_event_id: String,
    /// That event's ordering key.
    pub ordering: OrderingKey,
    /// Whether every event recorded for the dossier carries a `sequence` (then events
    /// are ordered by it).
    pub all_sequenced: bool,
    /// Seconds the dossier waited for the citizen (status 5, supplement requested)
    /// before its current status: the processing clock does not run meanwhile.
    pub paused_secs: i64,
    /// Since when it waits for the citizen, while it is in status 5.
    pub paused_since: Option<DateTime<Utc>>,
    /// The part of `paused_secs` after the appointment was last set: how far the
    /// appointment moves when the source did not set a new one (see [`Self::effective_due`]).
    pub paused_after_due_secs: i64,
    /// When the overdue sweep found the dossier past its appointment while being
    /// processed (kept once it closes; cleared if it stops being overdue while open).
    /// Written only by the sweep ([`crate::overdue`]).
    pub overdue_since: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub updated_at: DateTime<Utc>,
}

impl DossierState {
    /// A dossier's state from its first event (always applied: Loa may start following
    /// a dossier at any point of its life).
    pub fn start(event: &DossierEvent, lookup_token: String, now: DateTime<Utc>) -> Self {
        let mut state = Self {
            tenant: event.tenant.clone(),
            dossier_code: event.dossier_code.clone(),
            status: event.status,
            procedure_code: String::new(),
            procedure_name: String::new(),
            agency_code: String::new(),
            agency_name: String::new(),
            applicant_masked: String::new(),
            received_at: None,
            due_at: None,
            due_ordering: None,
            completed_at: None,
            lookup_token,
            last_event_id: event.event_id.clone(),
            ordering: OrderingKey::of(event),
            all_sequenced: event.sequence.is_some(),
            paused_secs: 0,
            paused_since: None,
            paused_after_due_secs: 0,
            overdue_since: None,
            updated_at: now,
        };
        state.apply(None, event);
        state
    }

    /// Records `event`, which comes after every event recorded so far (see
    /// [`Newest::follows`]), as the newest, and applies it if the rules allow its
    /// status after the current one.
    pub fn advance(&mut self, event: &DossierEvent, now: DateTime<Utc>) -> Verdict {
        self.last_event_id = event.event_id.clone();
        self.ordering = OrderingKey::of(event);
        self.all_sequenced &= event.sequence.is_some();
        self.updated_at = now;
        if !allows(self.status, event.status) {
            return Verdict::Invalid { from: self.status };
        }
        let previous = self.status;
        self.apply(Some(previous), event);
        Verdict::Applied
    }

    /// Takes an allowed event's data: status, names, and the dates it carries, keeping
    /// those it does not repeat.
    fn apply(&mut self, previous: Option<DossierStatus>, event: &DossierEvent) {
        let occurred_at = event.occurred_at.with_timezone(&Utc);
        self.status = event.status;
        self.procedure_code = event.procedure.code.clone();
        self.procedure_name = event.procedure.name.clone();
        self.agency_code = event.agency.code.clone();
        self.agency_name = event.agency.name.clone();
        // An organisation's name is public: shown as it is, not cut to initials.
        self.applicant_masked = match event.applicant.kind {
            ApplicantKind::Person => mask_name(&event.applicant.name),
            ApplicantKind::Organisation => event.applicant.name.trim().to_owned(),
        };
        // A receipt is issued when the desk receives the dossier: without an explicit
        // reception time, a `received` event's own time is it.
        self.received_at = event
            .received_at
            .map(|d| d.with_timezone(&Utc))
            .or(self.received_at)
            .or_else(|| (event.status == DossierStatus::Received).then_some(occurred_at));
        self.count_pause(previous, event.status, occurred_at);
        if let Some(due) = event.due_at {
            self.due_at = Some(due.with_timezone(&Utc));
            self.due_ordering = Some(OrderingKey::of(event));
            // A new appointment already allows for the waiting so far.
            self.paused_after_due_secs = 0;
        }
        self.completed_at = if is_completion(event.status) {
            previous
                .filter(|p| is_completion(*p))
                .and(self.completed_at)
                .or(Some(occurred_at))
        } else {
            None
        };
    }

    /// Stops the processing clock when the dossier starts waiting for the citizen (it
    /// enters 5) and starts it again when it leaves 5, as provinces count processing
    /// time: the wait is added to `paused_secs`, and its part after the appointment was
    /// set to `paused_after_due_secs`.
    fn count_pause(
        &mut self,
        previous: Option<DossierStatus>,
        status: DossierStatus,
        at: DateTime<Utc>,
    ) {
        let waiting = |s: Option<DossierStatus>| s == Some(DossierStatus::SupplementRequested);
        match (waiting(previous), waiting(Some(status))) {
            (false, true) => self.paused_since = Some(at),
            (true, false) => {
                if let Some(since) = self.paused_since.take() {
                    self.paused_secs += (at - since).num_seconds().max(0);
                    if self.due_at.is_some() {
                        let due_set = self.due_ordering.map(|k| k.occurred_at);
                        let from = due_set.map_or(since, |set| set.max(since));
                        self.paused_after_due_secs += (at - from).num_seconds().max(0);
                    }
                }
            }
            _ => {}
        }
    }

    /// The appointment as the processing clock sees it: moved by the time the dossier
    /// waited for the citizen since the appointment was set (a source that sets a new
    /// appointment after a supplement makes this the new one). `None` without an
    /// appointment.
    pub fn effective_due(&self) -> Option<DateTime<Utc>> {
        self.due_at
            .map(|due| due + chrono::Duration::seconds(self.paused_after_due_secs))
    }

    /// How long processing took, without the time spent waiting for the citizen: from
    /// the reception to the result. `None` before a result or without a reception date.
    pub fn processing_time(&self) -> Option<chrono::Duration> {
        let (received, done) = (self.received_at?, self.completed_at?);
        Some(
            (done - received - chrono::Duration::seconds(self.paused_secs))
                .max(chrono::Duration::zero()),
        )
    }

    /// The dossier's timeliness on `today` (a Vietnamese day): see
    /// [`crate::domain::timeliness`].
    pub fn timeliness(&self, today: chrono::NaiveDate) -> Option<crate::Timeliness> {
        crate::domain::timeliness(self.status, self.effective_due(), self.completed_at, today)
    }

    /// The newest event recorded, as [`Newest`].
    pub fn newest(&self) -> Newest {
        Newest {
            key: self.ordering,
            event_id: self.last_event_id.clone(),
            all_sequenced: self.all_sequenced,
        }
    }
}

/// The newest event recorded for a dossier, and whether all of them carry a sequence:
/// what decides whether a new event can be applied without the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// Its ordering key.
    pub key: OrderingKey,
    /// Its id (the last tie-breaker).
    pub event_id: String,
    /// Whether every recorded event carries a sequence.
    pub all_sequenced: bool,
}

impl Newest {
    /// The newest of a dossier whose only event is `event`.
    pub fn of(event: &DossierEvent) -> Self {
        Self {
            key: OrderingKey::of(event),
            event_id: event.event_id.clone(),
            all_sequenced: event.sequence.is_some(),
        }
    }

    /// Whether `event` comes after every recorded event, in the order a fold of the
    /// history would use. Only said when it can be told from the newest alone: when
    /// the dossier's events and this one all carry a sequence, or none of this one's
    /// kind does; an event that would change how the history is ordered (the first
    /// without a sequence after sequenced ones, or the reverse) does not follow.
    pub fn follows(&self, event: &DossierEvent) -> bool {
        let by_sequence = match (self.all_sequenced, event.sequence.is_some()) {
            (true, true) => true,
            (false, false) => false,
            _ => return false,
        };
        compare(
            (&OrderingKey::of(event), event.event_id.as_str()),
            (&self.key, self.event_id.as_str()),
            by_sequence,
        ) == Ordering::Greater
    }

    /// Takes `event` into account as recorded (without knowing whether it applies).
    /// Exact when `event` follows; otherwise a best guess (a fold decides), used only
    /// to predict which histories a batch will need.
    pub fn record(&mut self, event: &DossierEvent) {
        if self.follows(event) {
            *self = Self {
                all_sequenced: self.all_sequenced,
                ..Self::of(event)
            };
        }
        self.all_sequenced &= event.sequence.is_some();
    }
}

/// Orders two events (key and id): by sequence first when `by_sequence`, then by
/// occurrence time, lifecycle stage and event id.
fn compare(a: (&OrderingKey, &str), b: (&OrderingKey, &str), by_sequence: bool) -> Ordering {
    let sequence = if by_sequence {
        a.0.sequence.cmp(&b.0.sequence)
    } else {
        Ordering::Equal
    };
    sequence
        .then(a.0.occurred_at.cmp(&b.0.occurred_at))
        .then(a.0.stage.cmp(&b.0.stage))
        .then(a.1.cmp(b.1))
}

/// Sorts a dossier's events into the order its state folds them in: by sequence when
/// every one carries one, then by occurrence time, stage and event id.
pub fn sort_events(events: &mut [DossierEvent]) {
    let by_sequence = events.iter().all(|e| e.sequence.is_some());
    events.sort_by(|a, b| {
        compare(
            (&OrderingKey::of(a), a.event_id.as_str()),
            (&OrderingKey::of(b), b.event_id.as_str()),
            by_sequence,
        )
    });
}

/// A dossier's history folded into its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The state.
    pub state: DossierState,
    /// Each event's verdict, in fold order.
    pub verdicts: Vec<(String, Verdict)>,
}

/// Folds every event of one dossier (in any order, each id once) into its state. `None`
/// when there is no event.
pub fn fold(events: &[DossierEvent], lookup_token: &str, now: DateTime<Utc>) -> Option<Folded> {
    let mut sorted = events.to_vec();
    sort_events(&mut sorted);
    let (first, rest) = sorted.split_first()?;
    let mut state = DossierState::start(first, lookup_token.to_owned(), now);
    let mut verdicts = Vec::with_capacity(sorted.len());
    verdicts.push((first.event_id.clone(), Verdict::Applied));
    for event in rest {
        verdicts.push((event.event_id.clone(), state.advance(event, now)));
    }
    // Ordered by sequence only if every event carries one.
    state.all_sequenced = sorted.iter().all(|e| e.sequence.is_some());
    Some(Folded { state, verdicts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashSet;
    use DossierStatus::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// An event of dossier `D1`, with `due_at` only when given.
    fn event(id: &str, status: u8, occurred_at: &str, due_at: Option<&str>) -> DossierEvent {
        let mut v = json!({
            "event_id": id, "tenant": "demo", "dossier_code": "D1", "status": status,
            "occurred_at": occurred_at,
            "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
            "agency": {"code": "H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "0903123456"}
        });
        if let Some(d) = due_at {
            v["due_at"] = json!(d);
        }
        DossierEvent::from_json(&v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        at("2026-12-04T10:00:00Z")
    }

    #[test]
    fn an_organisation_keeps_its_name_where_a_person_is_masked() {
        let person = DossierState::start(
            &event("p", 2, "2026-11-28T09:30:00+07:00", None),
            "t".into(),
            now(),
        );
        assert_eq!(person.applicant_masked, "Trần T. B.");
        let mut e = event("o", 2, "2026-11-28T09:30:00+07:00", None);
        e.applicant.name = "Công ty TNHH Thương mại Việt Tiến".into();
        e.applicant.kind = ApplicantKind::Organisation;
        let organisation = DossierState::start(&e, "t".into(), now());
        assert_eq!(
            organisation.applicant_masked,
            "Công ty TNHH Thương mại Việt Tiến"
        );
    }

    #[test]
    fn closed_dossiers_accept_no_further_status() {
        for closed in [Refused, Withdrawn, Stopped, ResultReturned] {
            for to in DossierStatus::ALL {
                assert!(!allows(closed, to), "{closed:?} → {to:?}");
            }
        }
    }

    #[test]
    fn nothing_goes_back_to_a_new_online_submission() {
        for from in DossierStatus::ALL {
            assert_eq!(allows(from, Submitted), from == Submitted, "{from:?}");
        }
    }

    #[test]
    fn a_refusal_at_intake_follows_only_a_submission_or_an_unanswered_supplement() {
        let from: Vec<DossierStatus> = DossierStatus::ALL
            .into_iter()
            .filter(|s| allows(*s, Refused))
            .collect();
        assert_eq!(from, [Submitted, SupplementRequested]);
    }

    #[test]
    fn a_ready_result_is_only_returned_withdrawn_charged_or_announced_again() {
        let to: Vec<DossierStatus> = DossierStatus::ALL
            .into_iter()
            .filter(|s| allows(ResultReady, *s))
            .collect();
        assert_eq!(
            to,
            [PaymentRequested, Withdrawn, ResultReady, ResultReturned]
        );
    }

    #[test]
    fn open_dossiers_may_skip_unreported_steps_forward() {
        for (from, to) in [
            (Submitted, ResultReady),
            (Received, ResultReturned),
            (Received, ResultReady),
            (Processing, ResultReturned),
            (PaymentRequested, ResultReturned),
            (SupplementRequested, Received),
            (PaymentRequested, Received),
        ] {
            assert!(allows(from, to), "{from:?} → {to:?}");
        }
        for (from, to) in [(Processing, Received), (ResultReady, Processing)] {
            assert!(!allows(from, to), "{from:?} → {to:?}");
        }
    }

    #[test]
    fn an_invalid_transition_is_recorded_as_newest_but_changes_nothing_else() {
        let returned = event("e10", 10, "2026-12-05T10:00:00+07:00", None);
        let mut state = DossierState::start(&returned, "t".into(), now());
        let before = state.clone();

        let reopened = event(
            "e4",
            4,
            "2026-12-06T10:00:00+07:00",
            Some("2026-12-20T17:00:00+07:00"),
        );
        let verdict = state.advance(&reopened, now());

        assert_eq!(
            verdict,
            Verdict::Invalid {
                from: ResultReturned
            }
        );
        assert_eq!(state.status, ResultReturned);
        assert_eq!(state.due_at, before.due_at);
        assert_eq!(state.completed_at, before.completed_at);
        assert_eq!(state.last_event_id, "e4");
        assert!(state.newest().key.occurred_at > before.ordering.occurred_at);
    }

    #[test]
    fn waiting_for_the_citizen_stops_the_clock_and_moves_the_appointment() {
        let mut state = DossierState::start(
            &event(
                "r",
                2,
                "2026-11-28T09:30:00+07:00",
                Some("2026-12-03T17:00:00+07:00"),
            ),
            "t".into(),
            now(),
        );
        state.advance(&event("s", 5, "2026-12-01T10:00:00+07:00", None), now());
        assert_eq!(state.paused_since, Some(at("2026-12-01T10:00:00+07:00")));
        assert_eq!(
            state.timeliness(at("2026-12-20T00:00:00Z").date_naive()),
            Some(crate::Timeliness::Paused)
        );

        state.advance(&event("p", 4, "2026-12-03T10:00:00+07:00", None), now());

        assert_eq!(state.paused_since, None);
        assert_eq!(state.paused_secs, 2 * 86_400);
        assert_eq!(state.effective_due(), Some(at("2026-12-05T17:00:00+07:00")));
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            state.timeliness(day("2026-12-05")),
            Some(crate::Timeliness::InProgress)
        );
        assert_eq!(
            state.timeliness(day("2026-12-06")),
            Some(crate::Timeliness::Overdue)
        );
        state.advance(&event("k", 9, "2026-12-06T10:00:00+07:00", None), now());
        assert_eq!(
            state.processing_time(),
            Some(chrono::Duration::days(6) + chrono::Duration::minutes(30))
        );
    }

    #[test]
    fn a_new_appointment_after_the_supplement_replaces_the_moved_one() {
        let mut state = DossierState::start(
            &event(
                "r",
                2,
                "2026-11-28T09:30:00+07:00",
                Some("2026-12-03T17:00:00+07:00"),
            ),
            "t".into(),
            now(),
        );
        state.advance(&event("s", 5, "2026-12-01T10:00:00+07:00", None), now());
        state.advance(
            &event(
                "p",
                4,
                "2026-12-03T10:00:00+07:00",
                Some("2026-12-10T17:00:00+07:00"),
            ),
            now(),
        );
        assert_eq!(
            state.paused_secs,
            2 * 86_400,
            "the wait still counts as waiting"
        );
        assert_eq!(state.effective_due(), Some(at("2026-12-10T17:00:00+07:00")));
    }

    #[test]
    fn only_the_wait_after_the_appointment_was_set_moves_it() {
        // The appointment comes with the supplement request itself, a day into the wait.
        let mut state = DossierState::start(
            &event("r", 2, "2026-11-28T09:30:00+07:00", None),
            "t".into(),
            now(),
        );
        state.advance(&event("s", 5, "2026-12-01T10:00:00+07:00", None), now());
        state.advance(
            &event(
                "s2",
                5,
                "2026-12-02T10:00:00+07:00",
                Some("2026-12-08T17:00:00+07:00"),
            ),
            now(),
        );
        state.advance(&event("p", 4, "2026-12-04T10:00:00+07:00", None), now());
        assert_eq!(state.paused_secs, 3 * 86_400);
        assert_eq!(state.paused_after_due_secs, 2 * 86_400);
        assert_eq!(state.effective_due(), Some(at("2026-12-10T17:00:00+07:00")));
    }

    #[test]
    fn the_fold_applies_only_allowed_transitions_in_order() {
        let folded = fold(
            &[
                event("c", 9, "2026-12-01T10:00:00+07:00", None),
                event("a", 2, "2026-11-28T09:30:00+07:00", None),
                event("d", 4, "2026-12-02T10:00:00+07:00", None),
                event("b", 4, "2026-11-29T09:30:00+07:00", None),
            ],
            "t",
            now(),
        )
        .unwrap();
        let verdicts: Vec<(&str, Verdict)> = folded
            .verdicts
            .iter()
            .map(|(id, v)| (id.as_str(), *v))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("a", Verdict::Applied),
                ("b", Verdict::Applied),
                ("c", Verdict::Applied),
                ("d", Verdict::Invalid { from: ResultReady }),
            ]
        );
        assert_eq!(folded.state.status, ResultReady);
        assert_eq!(folded.state.last_event_id, "d");
    }

    #[test]
    fn events_are_ordered_by_sequence_only_when_every_one_carries_one() {
        let mut with = event("x", 4, "2026-11-29T09:00:00+07:00", None);
        with.sequence = Some(2);
        let mut earlier_seq_later_time = event("y", 9, "2026-11-30T09:00:00+07:00", None);
        earlier_seq_later_time.sequence = Some(1);
        let mut events = vec![with.clone(), earlier_seq_later_time.clone()];
        sort_events(&mut events);
        assert_eq!(events[0].event_id, "y", "by sequence");

        earlier_seq_later_time.sequence = None;
        let mut events = vec![earlier_seq_later_time, with];
        sort_events(&mut events);
        assert_eq!(events[0].event_id, "x", "by time once one lacks a sequence");
    }

    #[test]
    fn unsequenced_events_follow_by_time_then_stage_then_id() {
        let received = Newest::of(&event("b", 2, "2026-11-28T09:00:00+07:00", None));
        assert!(received.follows(&event("c", 9, "2026-11-29T09:00:00+07:00", None)));
        assert!(!received.follows(&event("a", 9, "2026-11-27T09:00:00+07:00", None)));
        assert!(
            received.follows(&event("a", 4, "2026-11-28T09:00:00+07:00", None)),
            "a later stage at the same instant"
        );
        assert!(
            !received.follows(&event("a", 2, "2026-11-28T09:00:00+07:00", None)),
            "the same instant and stage: the smaller id comes first"
        );
        assert!(received.follows(&event("c", 2, "2026-11-28T09:00:00+07:00", None)));
    }

    #[test]
    fn an_event_that_would_reorder_the_history_does_not_follow() {
        let mut first = event("a", 2, "2026-11-28T09:00:00+07:00", None);
        first.sequence = Some(1);
        let newest = Newest::of(&first);
        let unsequenced = event("b", 4, "2026-11-29T09:00:00+07:00", None);
        assert!(!newest.follows(&unsequenced));
        let mut next = unsequenced.clone();
        next.sequence = Some(2);
        assert!(newest.follows(&next));
        assert!(!newest.follows(&first), "an event does not follow itself");
    }

    /// An event stream of one dossier: statuses, times and appointments chosen at
    /// random, with or without sequences, then delivered in a random order with
    /// repeats.
    fn stream() -> impl Strategy<Value = (Vec<DossierEvent>, Vec<usize>)> {
        let step = (1u8..=10, 0i64..6, proptest::option::of(0i64..20));
        (proptest::collection::vec(step, 1..9), any::<bool>()).prop_flat_map(
            |(steps, sequenced)| {
                let events: Vec<DossierEvent> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, (status, _, due_days))| {
                        // Times never decrease but may repeat (ties are broken by stage
                        // and id); sequences follow the stream.
                        let base = at("2026-11-28T02:00:00Z");
                        let offset: i64 = steps[..=i].iter().map(|s| s.1).sum();
                        let occurred = base + chrono::Duration::hours(offset);
                        let due =
                            due_days.map(|d| (base + chrono::Duration::days(d + 1)).to_rfc3339());
                        let mut e = event(
                            &format!("e{i}"),
                            *status,
                            &occurred.to_rfc3339(),
                            due.as_deref(),
                        );
                        e.sequence = sequenced.then_some(i as i64 + 1);
                        e
                    })
                    .collect();
                let n = events.len();
                let arrivals =
                    proptest::collection::vec(0..n, n..n * 3).prop_flat_map(move |extra| {
                        let all: Vec<usize> = (0..n).chain(extra).collect();
                        Just(all).prop_shuffle()
                    });
                (Just(events), arrivals)
            },
        )
    }

    /// What the store does with each arriving event: repeats have no effect; an event
    /// that follows the newest advances the state; any other is folded in with the
    /// history.
    fn deliver(events: &[DossierEvent], arrivals: &[usize]) -> DossierState {
        let mut seen = HashSet::new();
        let mut history: Vec<DossierEvent> = Vec::new();
        let mut state: Option<DossierState> = None;
        for &i in arrivals {
            let e = &events[i];
            if !seen.insert(e.event_id.clone()) {
                continue;
            }
            history.push(e.clone());
            state = Some(match state {
                None => DossierState::start(e, "t".into(), now()),
                Some(mut s) if s.newest().follows(e) => {
                    s.advance(e, now());
                    s
                }
                Some(_) => fold(&history, "t", now()).unwrap().state,
            });
        }
        state.unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_order_with_repeats_ends_in_the_state_of_the_ordered_stream(
            (events, arrivals) in stream()
        ) {
            let ordered = fold(&events, "t", now()).unwrap().state;
            prop_assert_eq!(deliver(&events, &arrivals), ordered);
        }

        #[test]
        fn the_ordered_stream_advances_without_ever_reading_the_history(
            (events, _) in stream()
        ) {
            let mut sorted = events.clone();
            sort_events(&mut sorted);
            let mut state = DossierState::start(&sorted[0], "t".into(), now());
            for e in &sorted[1..] {
                prop_assert!(state.newest().follows(e));
                state.advance(e, now());
            }
            prop_assert_eq!(state, fold(&events, "t", now()).unwrap().state);
        }
    }
}
