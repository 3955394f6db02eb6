//! The tracker's tables (schema `tracker`) and the one unit of work that changes them:
//! [`apply_batch`], which applies a whole consumed batch in one transaction.
//!
//! - `tracker.dossier_events`: every event ever received, unique by
//!   `(tenant, event_id)`, with the digest of its content
//!   ([`DossierEvent::content_digest`]); the insert is the idempotency check, and the
//!   digest tells a harmless repeat (same content: a duplicate) from an `event_id`
//!   reused for another event (a conflict, dead-lettered by the consumer).
//! - `tracker.dossiers`: each dossier's current state and the ordering key of the
//!   event that set it, so older events never move it backwards. A late (stale)
//!   event still fills in the facts the state lacks ([`absorb_stale`]).
//! - `tracker.outbox`: planned notifications, written in the same transaction as the
//!   state change, relayed to RabbitMQ afterwards and deleted once confirmed (see
//!   [`crate::relay`]).

pub use crate::lifecycle::DossierState;
use crate::{
    domain::{lookup_token, OrderingKey},
    lifecycle::{fold, Newest, Verdict},
    metrics::EventOutcome,
    planning::{plan, PlanContext},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_contracts::{
    ApplicantKind, DossierEvent, DossierStatus, Envelope, NotificationRequest, ResultDocument,
};
use loa_platform::{db::Migration, Secret};
use std::collections::{HashMap, HashSet};
use tokio_postgres::{types::Json, Row};

/// The Postgres schema the tracker owns.
pub const SCHEMA: &str = "tracker";

/// Advisory-lock namespace (first key) for per-dossier locks, so they cannot collide
/// with other users of advisory locks.
const DOSSIER_LOCK_SPACE: i32 = 7301;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "dossiers, history and outbox",
        sql: r#"
CREATE TABLE tracker.dossier_events (
    tenant        text        NOT NULL,
    event_id      text        NOT NULL,
    dossier_code  text        NOT NULL,
    status        smallint    NOT NULL,
    occurred_at   timestamptz NOT NULL,
    sequence      bigint,
    event         jsonb       NOT NULL,
    traceparent   text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX dossier_events_by_dossier ON tracker.dossier_events (tenant, dossier_code, occurred_at);

CREATE TABLE tracker.dossiers (
    tenant            text        NOT NULL,
    dossier_code      text        NOT NULL,
    status            smallint    NOT NULL,
    procedure_code    text        NOT NULL,
    procedure_name    text        NOT NULL,
    agency_code       text        NOT NULL,
    agency_name       text        NOT NULL,
    applicant_masked  text        NOT NULL,
    received_at       timestamptz,
    due_at            timestamptz,
    completed_at      timestamptz,
    lookup_token      text        NOT NULL UNIQUE,
    last_event_id     text        NOT NULL,
    last_sequence     bigint,
    last_occurred_at  timestamptz NOT NULL,
    last_stage        smallint    NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, dossier_code)
);

CREATE TABLE tracker.outbox (
    id               bigserial   PRIMARY KEY,
    notification_id  text        NOT NULL UNIQUE,
    tenant           text        NOT NULL,
    kind             text        NOT NULL,
    routing_key      text        NOT NULL,
    body             jsonb       NOT NULL,
    traceparent      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz
);
CREATE INDEX outbox_unpublished ON tracker.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON tracker.outbox (published_at) WHERE published_at IS NOT NULL;
"#,
    },
    Migration {
        version: 2,
        name: "relayed outbox rows are deleted, not marked",
        sql: r#"
DELETE FROM tracker.outbox WHERE published_at IS NOT NULL;
DROP INDEX tracker.outbox_unpublished;
DROP INDEX tracker.outbox_published_at;
ALTER TABLE tracker.outbox DROP COLUMN published_at;
"#,
    },
    Migration {
        version: 3,
        name: "event and outbox bodies stored as json text",
        sql: r#"
ALTER TABLE tracker.dossier_events ALTER COLUMN event TYPE json USING event::json;
ALTER TABLE tracker.outbox ALTER COLUMN body TYPE json USING body::json;
"#,
    },
    Migration {
        version: 4,
        name: "identifiers compare byte by byte",
        // Under a libc locale (C.UTF-8, vi_VN.UTF-8) every text comparison in an index
        // calls strcoll(); tenants, event ids, dossier codes, lookup tokens and
        // notification ids are ASCII and only matched or ordered as such. Changing the
        // collation rebuilds the indexes, not the tables.
        sql: r#"
ALTER TABLE tracker.dossier_events
    ALTER COLUMN tenant       TYPE text COLLATE "C",
    ALTER COLUMN event_id     TYPE text COLLATE "C",
    ALTER COLUMN dossier_code TYPE text COLLATE "C";
ALTER TABLE tracker.dossiers
    ALTER COLUMN tenant       TYPE text COLLATE "C",
    ALTER COLUMN dossier_code TYPE text COLLATE "C",
    ALTER COLUMN lookup_token TYPE text COLLATE "C";
ALTER TABLE tracker.outbox ALTER COLUMN notification_id TYPE text COLLATE "C";
"#,
    },
    Migration {
        version: 5,
        name: "dossier search: phone keys and indexes",
        // See `crate::search`: keyed hashes of phones (never the phones), and an index
        // for every filter of the console's search. The walk indexes avoid columns a
        // status update changes, so those updates stay HOT; the events' BRIN index
        // (today's count) costs next to nothing on an append-only table.
        sql: r#"
CREATE TABLE tracker.dossier_phones (
    tenant       text COLLATE "C" NOT NULL,
    phone_key    text COLLATE "C" NOT NULL,
    dossier_code text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, phone_key, dossier_code)
);
CREATE INDEX dossiers_newest ON tracker.dossiers (tenant, created_at, dossier_code);
CREATE INDEX dossiers_by_agency ON tracker.dossiers (tenant, agency_code, created_at, dossier_code);
CREATE INDEX dossiers_by_procedure ON tracker.dossiers (tenant, procedure_code, created_at, dossier_code);
CREATE INDEX dossiers_by_received ON tracker.dossiers (tenant, received_at, dossier_code);
CREATE INDEX dossiers_open_by_due ON tracker.dossiers (tenant, due_at) WHERE completed_at IS NULL;
CREATE INDEX dossier_events_recorded_brin ON tracker.dossier_events USING brin (recorded_at);
"#,
    },
    Migration {
        version: 6,
        name: "event content digests; the ordering key of the appointment's event",
        // Rows recorded before have no digest: a repeat of one is compared with the
        // digest of its stored event. A dossier's appointment without a recorded
        // source counts as set by its current event. Nothing is rewritten.
        sql: r#"
ALTER TABLE tracker.dossier_events ADD COLUMN content_digest bytea;
ALTER TABLE tracker.dossiers
    ADD COLUMN due_sequence     bigint,
    ADD COLUMN due_occurred_at  timestamptz,
    ADD COLUMN due_stage        smallint;
"#,
    },
    Migration {
        version: 7,
        name: "lifecycle rules: invalid transitions flagged, how a dossier's events are ordered",
        // `all_sequenced` says whether a dossier's events are ordered by sequence (see
        // `crate::lifecycle`); computed once from the history here.
        sql: r#"
ALTER TABLE tracker.dossier_events ADD COLUMN invalid_transition boolean NOT NULL DEFAULT false;
ALTER TABLE tracker.dossiers ADD COLUMN all_sequenced boolean NOT NULL DEFAULT false;
UPDATE tracker.dossiers AS d SET all_sequenced = true
 WHERE NOT EXISTS (SELECT 1 FROM tracker.dossier_events AS e
                    WHERE e.tenant = d.tenant AND e.dossier_code = d.dossier_code
                      AND e.sequence IS NULL);
"#,
    },
    Migration {
        version: 8,
        name: "timeliness: time waiting for the citizen, the overdue sweep's mark",
        // The partial index serves the sweep (open dossiers it marked) and stays
        // small: only dossiers once found overdue and still open are in it.
        sql: r#"
ALTER TABLE tracker.dossiers
    ADD COLUMN paused_secs           bigint NOT NULL DEFAULT 0,
    ADD COLUMN paused_since          timestamptz,
    ADD COLUMN paused_after_due_secs bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_since         timestamptz;
CREATE INDEX dossiers_marked_overdue ON tracker.dossiers (tenant)
    WHERE overdue_since IS NOT NULL AND completed_at IS NULL;
"#,
    },
    Migration {
        version: 9,
        name: "personal data retention: when a dossier's personal data was erased",
        // See `crate::retention`. No index: the sweep runs hourly and an index on
        // `updated_at` would cost every status update its HOT path.
        sql: r#"
ALTER TABLE tracker.dossiers ADD COLUMN personal_data_erased_at timestamptz;
"#,
    },
    Migration {
        version: 10,
        name: "ratings: one per dossier; statistics by completion day",
        // See `crate::ratings` and `crate::stats`. `first_rated_at` starts the window in
        // which the rating may still be changed; the statistics read ratings by the day
        // they were last given and dossiers by their completion day.
        sql: r#"
CREATE TABLE tracker.ratings (
    tenant          text COLLATE "C" NOT NULL,
    dossier_code    text COLLATE "C" NOT NULL,
    level           text COLLATE "C" NOT NULL
                    CHECK (level IN ('very_satisfied', 'satisfied', 'dissatisfied')),
    comment         text NOT NULL DEFAULT '',
    source          text COLLATE "C" NOT NULL CHECK (source IN ('page', 'zalo')),
    zalo_msg_id     text COLLATE "C",
    first_rated_at  timestamptz NOT NULL,
    rated_at        timestamptz NOT NULL,
    changes         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, dossier_code)
);
CREATE INDEX ratings_by_rated_at ON tracker.ratings (tenant, rated_at);
CREATE INDEX dossiers_by_completed ON tracker.dossiers (tenant, completed_at)
    WHERE completed_at IS NOT NULL;
"#,
    },
    Migration {
        version: 11,
        name: "erasure requests' audit",
        // See `crate::erasure` and `loa_platform::erasure`: who asked, when, a hash of
        // the phone (never the phone), what was removed.
        sql: r#"
CREATE TABLE tracker.erasures (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text COLLATE "C" NOT NULL,
    phone_hash   text COLLATE "C" NOT NULL,
    requested_by text NOT NULL,
    credential   text NOT NULL,
    erased_at    timestamptz NOT NULL,
    removed      jsonb NOT NULL
);
CREATE INDEX erasures_by_phone_hash ON tracker.erasures (tenant, phone_hash);
"#,
    },
    Migration {
        version: 12,
        name: "electronic results: downloads through the lookup page",
        // The link itself stays in the result event (`dossier_events.event`): Loa keeps
        // the link, never the document. See `crate::routes::lookup::download_result`.
        sql: r#"
ALTER TABLE tracker.dossiers ADD COLUMN result_downloads bigint NOT NULL DEFAULT 0;
"#,
    },
    Migration {
        version: 15,
        name: "dossier search: indexes for the status and early filters, overdue count",
        // Without them a search for a rare status, or for the few dossiers completed
        // early, walks `dossiers_newest` through most of the tenant. The partial index's
        // predicate is written as `crate::search::statement` writes the early filter,
        // so the planner can use it. The open-by-due index carries what the overdue
        // rule reads besides the due date, so the overview counts open overdue dossiers
        // from the index alone (with 100,000 dossiers: 115 ms of heap visits before).
        sql: r#"
DROP INDEX tracker.dossiers_open_by_due;
CREATE INDEX dossiers_open_by_due ON tracker.dossiers (tenant, due_at)
    INCLUDE (status, paused_after_due_secs) WHERE completed_at IS NULL;
CREATE INDEX dossiers_by_status ON tracker.dossiers (tenant, status, created_at, dossier_code);
CREATE INDEX dossiers_completed_early ON tracker.dossiers (tenant, created_at, dossier_code)
    WHERE completed_at IS NOT NULL
      AND (completed_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date
        < ((due_at AT TIME ZONE 'Asia/Ho_Chi_Minh') + paused_after_due_secs * interval '1 second')::date;
"#,
    },
];

/// The tracker's migrations, in order (an upgrade test applies a prefix of them).
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// Creates or upgrades the `tracker` schema. Idempotent; safe with replicas starting
/// together (migrations run under an advisory lock).
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    loa_platform::db::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// A decoded event and the trace context it arrived with.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// The event, for a configured tenant.
    pub event: DossierEvent,
    /// The delivery's `traceparent` header, carried on to the notification.
    pub traceparent: Option<String>,
}

/// What applying a batch needs besides its events.
#[derive(Debug, Clone)]
pub struct ApplyContext<'a> {
    /// Key of the lookup tokens.
    pub lookup_secret: &'a Secret,
    /// Base of lookup links (`LOA_PUBLIC_BASE_URL`).
    pub public_base_url: &'a str,
    /// The processing instant.
    pub now: DateTime<Utc>,
}

/// What a committed batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// One outcome per input event, in order.
    pub outcomes: Vec<EventOutcome>,
    /// The notifications newly written to the outbox (a replanned one that was already
    /// there is not repeated).
    pub planned: Vec<NotificationRequest>,
    /// The events whose `event_id` another event with other content already holds
    /// (outcome [`EventOutcome::Conflict`]), in batch order.
    pub conflicts: Vec<EventConflict>,
}

/// One entry of a dossier's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The event's id.
    pub event_id: String,
    /// The status it reported.
    pub status: DossierStatus,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Upstream's sequence, if any.
    pub sequence: Option<i64>,
    /// The appointment the event carried, if any: every value the appointment had is
    /// in the history, so a moved date can be traced.
    pub due_at: Option<DateTime<Utc>>,
    /// What the event asked of the citizen or told them, for the lookup page.
    pub details: EventDetails,
    /// The lifecycle does not allow its status after the dossier's: recorded, not
    /// applied (see [`crate::lifecycle`]).
    pub invalid_transition: bool,
}

/// The details an event carried that a message may point the citizen to the lookup
/// page for: why it was refused or stopped, which documents to bring, what to pay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventDetails {
    /// The reason given, if any.
    pub reason: Option<String>,
    /// The documents to supplement.
    pub documents: Vec<String>,
    /// The amount due, in đồng.
    pub fee_vnd: Option<i64>,
    /// What the amount is for.
    pub fee_description: Option<String>,
    /// The electronic result a result event (9, 10) linked to: shown only through the
    /// lookup token, downloaded through `/tra-cuu/{token}/ket-qua`.
    pub result_document: Option<ResultDocument>,
    /// Whether the applicant the event named is a person or an organisation: how the
    /// page speaks to its reader.
    pub applicant_kind: ApplicantKind,
}

/// The public lookup link of a dossier.
pub fn lookup_url(public_base_url: &str, token: &str) -> String {
    format!("{}/tra-cuu/{token}", public_base_url.trim_end_matches('/'))
}

type DossierKey = (String, String);

/// An event of a batch whose `event_id` was already taken by an event with other
/// content (stored earlier, or earlier in the same batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConflict {
    /// Its index in the batch.
    pub index: usize,
    /// The top-level fields whose content differs from the kept event's (names only:
    /// never the values, which may be personal data). Empty if the kept event could
    /// not be read back.
    pub differing: Vec<String>,
}

/// Applies a batch of events in ONE transaction: records each new event in the
/// history with its content digest, makes it its dossier's current state when it is
/// newer than the stored one (events of one dossier are taken in batch order), lets an
/// older one fill in the facts the state lacks, and writes the notifications planned
/// for the events that became current to the outbox. Either all of it commits or
/// nothing does.
///
/// An `event_id` seen before (stored, or earlier in the batch) has no effect: with the
/// same content it is a [`EventOutcome::Duplicate`], with other content a
/// [`EventOutcome::Conflict`] listed in [`BatchOutcome::conflicts`]; the first event
/// keeps the id. Replicas inserting the same id wait for each other on its key, so
/// the later one reads the digest the earlier one committed.
#[tracing::instrument(skip_all, fields(events = events.len()))]
pub async fn apply_batch(
    pool: &Pool,
    context: &ApplyContext<'_>,
    events: &[IncomingEvent],
) -> anyhow::Result<BatchOutcome> {
    if events.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the batch transaction")?;

    // Serialise replicas working on the same dossiers; locks are taken in one order,
    // so two batches cannot deadlock.
    let (lock_tenants, lock_codes): (Vec<&str>, Vec<&str>) = events
        .iter()
        .map(|e| (e.event.tenant.as_str(), e.event.dossier_code.as_str()))
        .unzip();
    let lock = tx
        .prepare_cached(
            "SELECT count(pg_advisory_xact_lock($1, k)) FROM (
                 SELECT DISTINCT hashtext(t || chr(31) || c) AS k
                 FROM unnest($2::text[], $3::text[]) AS u(t, c)
                 ORDER BY 1
             ) AS ordered",
        )
        .await
        .context("Failed to prepare the dossier lock")?;

    let digests: Vec<[u8; 32]> = events.iter().map(|e| e.event.content_digest()).collect();
    // Each event id's first occurrence in the batch; a later one is a repeat of it.
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        first_of
            .entry((e.event.tenant.as_str(), e.event.event_id.as_str()))
            .or_insert(i);
    }
    let first = |i: usize| {
        first_of[&(
            events[i].event.tenant.as_str(),
            events[i].event.event_id.as_str(),
        )]
    };
    let firsts: Vec<usize> = (0..events.len()).filter(|&i| first(i) == i).collect();
    // Lock, record and read in one round trip: the three statements are pipelined on
    // the connection and PostgreSQL runs them in order, so the states are read only
    // once the locks are held. States are read for every first occurrence (a superset
    // of the fresh events, whose dossiers are all that is used).
    let locked = async {
        tx.query_one(&lock, &[&DOSSIER_LOCK_SPACE, &lock_tenants, &lock_codes])
            .await
            .context("Failed to lock the batch's dossiers")
    };
    let (_, inserted, mut states) = tokio::try_join!(
        locked,
        insert_history(&tx, events, &digests, &firsts),
        load_states(&tx, events, &firsts),
    )?;
    let is_fresh = |i: usize| {
        inserted.contains(&(
            events[i].event.tenant.clone(),
            events[i].event.event_id.clone(),
        ))
    };
    let (fresh, known): (Vec<usize>, Vec<usize>) = firsts.into_iter().partition(|&i| is_fresh(i));

    // The digest each event id keeps: the stored one, or its first occurrence's.
    let stored = stored_digests(&tx, events, &known).await?;
    let kept = |i: usize| {
        let e = &events[i].event;
        stored
            .get(&(e.tenant.clone(), e.event_id.clone()))
            .copied()
            .unwrap_or(digests[first(i)])
    };
    let kept: Vec<[u8; 32]> = (0..events.len()).map(kept).collect();
    let mut outcomes = vec![EventOutcome::Duplicate; events.len()];
    let mut conflicting = Vec::new();
    for i in 0..events.len() {
        if (first(i) != i || !is_fresh(i)) && digests[i] != kept[i] {
            outcomes[i] = EventOutcome::Conflict;
            conflicting.push(i);
        }
    }
    let firsts_of: Vec<usize> = (0..events.len()).map(first).collect();
    let conflicts =
        explain_conflicts(&tx, events, &digests, &kept, &firsts_of, &conflicting).await?;

    // Which dossiers' histories late events will need, predicted from the ordering
    // alone, so they are read in one statement (a wrong guess only costs one more).
    let mut newest: HashMap<DossierKey, Newest> = states
        .iter()
        .map(|(k, s)| (k.clone(), s.newest()))
        .collect();
    let mut wanted: HashSet<DossierKey> = HashSet::new();
    for &i in &fresh {
        let e = &events[i].event;
        let key = (e.tenant.clone(), e.dossier_code.clone());
        match newest.get_mut(&key) {
            Some(n) => {
                if !n.follows(e) {
                    wanted.insert(key);
                }
                n.record(e);
            }
            None => {
                newest.insert(key, Newest::of(e));
            }
        }
    }
    let fresh_ids: Vec<(&str, &str)> = fresh
        .iter()
        .map(|&i| {
            (
                events[i].event.tenant.as_str(),
                events[i].event.event_id.as_str(),
            )
        })
        .collect();
    let mut histories = load_histories(&tx, &wanted, &fresh_ids).await?;

    let mut changed: Vec<DossierKey> = Vec::new();
    let mut changed_keys: HashSet<DossierKey> = HashSet::new();
    let mut planned = Vec::new();
    // Events of this batch per dossier so far, for a history read mid-batch.
    let mut batch_events: HashMap<DossierKey, Vec<usize>> = HashMap::new();
    // Verdicts to write to the history, by (tenant, event id): the last one decided
    // (a refold later in the batch may overturn an earlier verdict) is the one kept,
    // so the update joins each row once.
    let mut flags: HashMap<(String, String), bool> = HashMap::new();
    for &i in &fresh {
        let IncomingEvent { event, traceparent } = &events[i];
        let key = (event.tenant.clone(), event.dossier_code.clone());
        batch_events.entry(key.clone()).or_default().push(i);
        if let Some(history) = histories.get_mut(&key) {
            history.push(event.clone());
        }
        let previous = states.get(&key);
        let state = match previous {
            Some(previous) if !previous.newest().follows(event) => {
                // A late event: the history decides.
                if !histories.contains_key(&key) {
                    let mut history =
                        load_histories(&tx, &HashSet::from([key.clone()]), &fresh_ids)
                            .await?
                            .remove(&key)
                            .unwrap_or_default();
                    history.extend(batch_events[&key].iter().map(|&j| events[j].event.clone()));
                    histories.insert(key.clone(), history);
                }
                let mut folded = fold(&histories[&key], &previous.lookup_token, context.now)
                    .context("a dossier's history is empty")?;
                folded.state.overdue_since = previous.overdue_since;
                for (event_id, verdict) in &folded.verdicts {
                    let invalid = !verdict.is_applied();
                    if *event_id == event.event_id {
                        outcomes[i] = if invalid {
                            invalid_transition(event, *verdict);
                            EventOutcome::InvalidTransition
                        } else {
                            EventOutcome::Stale
                        };
                    }
                    flags.insert((event.tenant.clone(), event_id.clone()), invalid);
                }
                folded.state
            }
            Some(previous) => {
                let mut state = previous.clone();
                let verdict = state.advance(event, context.now);
                if verdict.is_applied() {
                    outcomes[i] = EventOutcome::Applied;
                    planned.extend(plan_for(
                        &state,
                        Some(previous),
                        event,
                        traceparent.as_deref(),
                        context,
                    ));
                } else {
                    invalid_transition(event, verdict);
                    outcomes[i] = EventOutcome::InvalidTransition;
                    flags.insert((event.tenant.clone(), event.event_id.clone()), true);
                }
                state
            }
            None => {
                let token = lookup_token(context.lookup_secret, &event.tenant, &event.dossier_code);
                let state = DossierState::start(event, token, context.now);
                outcomes[i] = EventOutcome::Applied;
                planned.extend(plan_for(
                    &state,
                    None,
                    event,
                    traceparent.as_deref(),
                    context,
                ));
                state
            }
        };
        if changed_keys.insert(key.clone()) {
            changed.push(key.clone());
        }
        states.insert(key, state);
    }

    let changed: Vec<&DossierState> = changed.iter().filter_map(|k| states.get(k)).collect();
    // Independent tables: the statements go out in one round trip.
    let ((), written, (), ()) = tokio::try_join!(
        upsert_states(&tx, &changed),
        insert_outbox(&tx, &planned),
        crate::search::record_phones(&tx, context.lookup_secret, events, &fresh),
        flag_transitions(&tx, &flags),
    )?;
    tx.commit().await.context("Failed to commit the batch")?;

    let planned = planned
        .into_iter()
        .filter(|n| written.contains(&n.notification_id))
        .collect();
    Ok(BatchOutcome {
        outcomes,
        planned,
        conflicts,
    })
}

/// Plans the notifications of an event that became `state`, from `previous` (the
/// dossier before it, `None` for its first event).
fn plan_for(
    state: &DossierState,
    previous: Option<&DossierState>,
    event: &DossierEvent,
    traceparent: Option<&str>,
    context: &ApplyContext<'_>,
) -> Vec<NotificationRequest> {
    let url = lookup_url(context.public_base_url, &state.lookup_token);
    plan(
        event,
        &PlanContext {
            received_at: state.received_at,
            due_at: state.due_at,
            previous_due_at: previous.and_then(|p| p.due_at),
            previous_status: previous.map(|p| p.status),
            lookup_url: &url,
            trace_context: traceparent,
            now: context.now,
        },
    )
}

/// Logs an event whose status the lifecycle does not allow after its dossier's: the
/// tenant, event id and both statuses, never the dossier's code or anyone's data.
fn invalid_transition(event: &DossierEvent, verdict: Verdict) {
    if let Verdict::Invalid { from } = verdict {
        tracing::warn!(
            tenant = %event.tenant,
            event_id = %event.event_id,
            from = from.code(),
            to = event.status.code(),
            "An event's status cannot follow its dossier's; it is kept in the history \
             and neither applied nor notified."
        );
    }
}

/// Every recorded event of the given dossiers except `excluded` (this batch's new
/// events, which the caller adds in batch order).
async fn load_histories(
    tx: &deadpool_postgres::Transaction<'_>,
    dossiers: &HashSet<DossierKey>,
    excluded: &[(&str, &str)],
) -> anyhow::Result<HashMap<DossierKey, Vec<DossierEvent>>> {
    if dossiers.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, codes): (Vec<&str>, Vec<&str>) = dossiers
        .iter()
        .map(|(t, c)| (t.as_str(), c.as_str()))
        .unzip();
    let (ex_tenants, ex_ids): (Vec<&str>, Vec<&str>) = excluded.iter().copied().unzip();
    let rows = tx
        .query(
            "SELECT tenant, dossier_code, event::text FROM tracker.dossier_events
              WHERE (tenant, dossier_code) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                AND (tenant, event_id) NOT IN (SELECT * FROM unnest($3::text[], $4::text[]))",
            &[&tenants, &codes, &ex_tenants, &ex_ids],
        )
        .await
        .context("Failed to read the histories of late events' dossiers")?;
    let mut histories: HashMap<DossierKey, Vec<DossierEvent>> =
        dossiers.iter().map(|k| (k.clone(), Vec::new())).collect();
    for row in &rows {
        let event = stored_event(row.get::<_, Option<&str>>(2))?;
        histories
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(event);
    }
    Ok(histories)
}

/// Writes each event's verdict to its history row (only where it changes).
async fn flag_transitions(
    tx: &deadpool_postgres::Transaction<'_>,
    flags: &HashMap<(String, String), bool>,
) -> anyhow::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = flags.keys().map(|(t, _)| t.as_str()).collect();
    let ids: Vec<&str> = flags.keys().map(|(_, id)| id.as_str()).collect();
    let invalid: Vec<bool> = flags.values().copied().collect();
    tx.execute(
        "UPDATE tracker.dossier_events AS e SET invalid_transition = u.invalid
           FROM unnest($1::text[], $2::text[], $3::bool[]) AS u(tenant, event_id, invalid)
          WHERE e.tenant = u.tenant AND e.event_id = u.event_id
            AND e.invalid_transition IS DISTINCT FROM u.invalid",
        &[&tenants, &ids, &invalid],
    )
    .await
    .context("Failed to flag invalid transitions in the history")?;
    Ok(())
}

/// The tenants of the events at `indexes` and, in step, one more key of each (`key`):
/// the two arrays the `unnest($1::text[], $2::text[])` look-ups take.
fn key_columns<'a>(
    events: &'a [IncomingEvent],
    indexes: &[usize],
    key: impl Fn(&'a DossierEvent) -> &'a String,
) -> (Vec<&'a str>, Vec<&'a str>) {
    indexes
        .iter()
        .map(|&i| {
            (
                events[i].event.tenant.as_str(),
                key(&events[i].event).as_str(),
            )
        })
        .unzip()
}

/// The stored content digests of events recorded before this batch (`indexes`: their
/// first occurrences). A row recorded before digests were kept gets the digest of its
/// stored event.
async fn stored_digests(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[IncomingEvent],
    indexes: &[usize],
) -> anyhow::Result<HashMap<(String, String), [u8; 32]>> {
    if indexes.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, ids) = key_columns(events, indexes, |e| &e.event_id);
    let select = tx
        .prepare_cached(
            "SELECT tenant, event_id, content_digest,
                    CASE WHEN content_digest IS NULL THEN event::text END
               FROM tracker.dossier_events
              WHERE (tenant, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .await
        .context("Failed to prepare the digest query")?;
    let rows = tx
        .query(&select, &[&tenants, &ids])
        .await
        .context("Failed to read stored event digests")?;
    rows.iter()
        .map(|r| {
            let digest = match r.get::<_, Option<Vec<u8>>>(2) {
                Some(d) => <[u8; 32]>::try_from(d.as_slice())
                    .context("a stored content digest is not 32 bytes")?,
                None => stored_event(r.get::<_, Option<String>>(3).as_deref())?.content_digest(),
            };
            Ok(((r.get(0), r.get(1)), digest))
        })
        .collect()
}

/// What differs between each conflicting event and the event that keeps its id: its
/// first occurrence in the batch when that has the kept content (`kept[i]`), else the
/// stored event (read back only for these, which are rare).
async fn explain_conflicts(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[IncomingEvent],
    digests: &[[u8; 32]],
    kept: &[[u8; 32]],
    first: &[usize],
    conflicting: &[usize],
) -> anyhow::Result<Vec<EventConflict>> {
    let mut conflicts = Vec::with_capacity(conflicting.len());
    let mut to_read: Vec<usize> = Vec::new();
    for &i in conflicting {
        let f = first[i];
        if f != i && digests[f] == kept[i] {
            conflicts.push(EventConflict {
                index: i,
                differing: events[i].event.differing_fields(&events[f].event),
            });
        } else {
            to_read.push(i);
        }
    }
    if to_read.is_empty() {
        return Ok(conflicts);
    }
    let (tenants, ids) = key_columns(events, &to_read, |e| &e.event_id);
    let rows = tx
        .query(
            "SELECT tenant, event_id, event::text FROM tracker.dossier_events
              WHERE (tenant, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&tenants, &ids],
        )
        .await
        .context("Failed to read the events of reused ids")?;
    let kept: HashMap<(String, String), String> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    for i in to_read {
        let e = &events[i].event;
        let differing = kept
            .get(&(e.tenant.clone(), e.event_id.clone()))
            .and_then(|text| stored_event(Some(text)).ok())
            .map(|k| e.differing_fields(&k))
            .unwrap_or_default();
        conflicts.push(EventConflict {
            index: i,
            differing,
        });
    }
    conflicts.sort_by_key(|c| c.index);
    Ok(conflicts)
}

/// An event as stored in `tracker.dossier_events.event`.
fn stored_event(text: Option<&str>) -> anyhow::Result<DossierEvent> {
    let text = text.context("a stored event without its body")?;
    match serde_json::from_str(text) {
        Ok(event) => Ok(event),
        // Past its retention, an event's phones are masked ([`crate::retention`]).
        Err(e) => crate::retention::decode_erased(text)
            .ok_or(e)
            .context("a stored event does not decode"),
    }
}

async fn insert_history(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[IncomingEvent],
    digests: &[[u8; 32]],
    indexes: &[usize],
) -> anyhow::Result<HashSet<(String, String)>> {
    let mut tenants = Vec::with_capacity(indexes.len());
    let mut ids = Vec::with_capacity(indexes.len());
    let mut codes = Vec::with_capacity(indexes.len());
    let mut statuses = Vec::with_capacity(indexes.len());
    let mut occurred = Vec::with_capacity(indexes.len());
    let mut sequences = Vec::with_capacity(indexes.len());
    let mut bodies = Vec::with_capacity(indexes.len());
    let mut traces = Vec::with_capacity(indexes.len());
    let mut contents: Vec<&[u8]> = Vec::with_capacity(indexes.len());
    for &i in indexes {
        let IncomingEvent { event, traceparent } = &events[i];
        contents.push(&digests[i]);
        tenants.push(event.tenant.as_str());
        ids.push(event.event_id.as_str());
        codes.push(event.dossier_code.as_str());
        statuses.push(i16::from(event.status.code()));
        occurred.push(event.occurred_at.with_timezone(&Utc));
        sequences.push(event.sequence);
        bodies.push(Json(event));
        traces.push(traceparent.as_deref());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO tracker.dossier_events
                 (tenant, event_id, dossier_code, status, occurred_at, sequence, event, traceparent,
                  content_digest)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::timestamptz[],
                                  $6::int8[], $7::json[], $8::text[], $9::bytea[])
             ON CONFLICT (tenant, event_id) DO NOTHING
             RETURNING tenant, event_id",
        )
        .await
        .context("Failed to prepare the history insert")?;
    let rows = tx
        .query(
            &insert,
            &[
                &tenants, &ids, &codes, &statuses, &occurred, &sequences, &bodies, &traces,
                &contents,
            ],
        )
        .await
        .context("Failed to record events in tracker.dossier_events")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns [`upsert_states`] writes, in its order (a macro, so that
/// [`STATE_COLUMNS`] can extend the same literal).
macro_rules! written_columns {
    () => {
        "tenant, dossier_code, status, procedure_code, procedure_name, agency_code, \
         agency_name, applicant_masked, received_at, due_at, completed_at, lookup_token, last_event_id, \
         last_sequence, last_occurred_at, last_stage, updated_at, due_sequence, due_occurred_at, due_stage, \
         all_sequenced, paused_secs, paused_since, paused_after_due_secs"
    };
}

/// The columns [`upsert_states`] writes, in its order.
const WRITTEN_COLUMNS: &str = written_columns!();

/// The columns a [`DossierState`] is read from: those written, and the overdue mark
/// the overdue sweep sets.
pub(crate) const STATE_COLUMNS: &str = concat!(written_columns!(), ", overdue_since");

async fn load_states(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[IncomingEvent],
    indexes: &[usize],
) -> anyhow::Result<HashMap<DossierKey, DossierState>> {
    if indexes.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, codes) = key_columns(events, indexes, |e| &e.dossier_code);
    let select = tx
        .prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM tracker.dossiers
             WHERE (tenant, dossier_code) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        ))
        .await
        .context("Failed to prepare the state query")?;
    let rows = tx
        .query(&select, &[&tenants, &codes])
        .await
        .context("Failed to load dossier states")?;
    rows.iter()
        .map(|r| {
            let state = state_from_row(r)?;
            Ok(((state.tenant.clone(), state.dossier_code.clone()), state))
        })
        .collect()
}

pub(crate) fn state_from_row(row: &Row) -> anyhow::Result<DossierState> {
    let status: i16 = row.get("status");
    let stage: i16 = row.get("last_stage");
    let ordering = OrderingKey {
        sequence: row.get("last_sequence"),
        occurred_at: row.get("last_occurred_at"),
        stage: u8::try_from(stage).context("stored stage out of range")?,
    };
    let due_at: Option<DateTime<Utc>> = row.get("due_at");
    let due_ordering = match (
        row.get::<_, Option<DateTime<Utc>>>("due_occurred_at"),
        row.get::<_, Option<i16>>("due_stage"),
    ) {
        (Some(occurred_at), Some(stage)) => Some(OrderingKey {
            sequence: row.get("due_sequence"),
            occurred_at,
            stage: u8::try_from(stage).context("stored stage out of range")?,
        }),
        // Recorded before the appointment's source was kept: its current event's.
        _ => due_at.map(|_| ordering),
    };
    Ok(DossierState {
        tenant: row.get("tenant"),
        dossier_code: row.get("dossier_code"),
        status: status_from_db(status)?,
        procedure_code: row.get("procedure_code"),
        procedure_name: row.get("procedure_name"),
        agency_code: row.get("agency_code"),
        agency_name: row.get("agency_name"),
        applicant_masked: row.get("applicant_masked"),
        received_at: row.get("received_at"),
        due_at,
        due_ordering,
        completed_at: row.get("completed_at"),
        lookup_token: row.get("lookup_token"),
        last_event_id: row.get("last_event_id"),
        ordering,
        all_sequenced: row.get("all_sequenced"),
        paused_secs: row.get("paused_secs"),
        paused_since: row.get("paused_since"),
        paused_after_due_secs: row.get("paused_after_due_secs"),
        overdue_since: row.get("overdue_since"),
        updated_at: row.get("updated_at"),
    })
}

fn status_from_db(code: i16) -> anyhow::Result<DossierStatus> {
    DossierStatus::from_code(i64::from(code))
        .with_context(|| format!("stored status {code} is not a national code"))
}

async fn upsert_states(
    tx: &deadpool_postgres::Transaction<'_>,
    states: &[&DossierState],
) -> anyhow::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&DossierState) -> &str| states.iter().map(|s| f(s)).collect::<Vec<&str>>();
    let tenants = col(|s| &s.tenant);
    let codes = col(|s| &s.dossier_code);
    let procedure_codes = col(|s| &s.procedure_code);
    let procedure_names = col(|s| &s.procedure_name);
    let agency_codes = col(|s| &s.agency_code);
    let agency_names = col(|s| &s.agency_name);
    let masked = col(|s| &s.applicant_masked);
    let tokens = col(|s| &s.lookup_token);
    let last_ids = col(|s| &s.last_event_id);
    let statuses: Vec<i16> = states.iter().map(|s| i16::from(s.status.code())).collect();
    let received: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.received_at).collect();
    let due: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.due_at).collect();
    let completed: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.completed_at).collect();
    let sequences: Vec<Option<i64>> = states.iter().map(|s| s.ordering.sequence).collect();
    let occurred: Vec<DateTime<Utc>> = states.iter().map(|s| s.ordering.occurred_at).collect();
    let stages: Vec<i16> = states.iter().map(|s| i16::from(s.ordering.stage)).collect();
    let updated: Vec<DateTime<Utc>> = states.iter().map(|s| s.updated_at).collect();
    let due_sequences: Vec<Option<i64>> = states
        .iter()
        .map(|s| s.due_ordering.and_then(|k| k.sequence))
        .collect();
    let due_occurred: Vec<Option<DateTime<Utc>>> = states
        .iter()
        .map(|s| s.due_ordering.map(|k| k.occurred_at))
        .collect();
    let due_stages: Vec<Option<i16>> = states
        .iter()
        .map(|s| s.due_ordering.map(|k| i16::from(k.stage)))
        .collect();
    let all_sequenced: Vec<bool> = states.iter().map(|s| s.all_sequenced).collect();
    let paused: Vec<i64> = states.iter().map(|s| s.paused_secs).collect();
    let paused_since: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.paused_since).collect();
    let paused_after_due: Vec<i64> = states.iter().map(|s| s.paused_after_due_secs).collect();
    // Every column but `overdue_since`, which only the overdue sweep writes.
    let upsert = tx
        .prepare_cached(&format!(
            "INSERT INTO tracker.dossiers ({WRITTEN_COLUMNS})
             SELECT * FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[],
                                  $11::timestamptz[], $12::text[], $13::text[], $14::int8[],
                                  $15::timestamptz[], $16::int2[], $17::timestamptz[], $18::int8[],
                                  $19::timestamptz[], $20::int2[], $21::bool[], $22::int8[],
                                  $23::timestamptz[], $24::int8[])
             ON CONFLICT (tenant, dossier_code) DO UPDATE SET
                 status = excluded.status,
                 procedure_code = excluded.procedure_code,
                 procedure_name = excluded.procedure_name,
                 agency_code = excluded.agency_code,
                 agency_name = excluded.agency_name,
                 applicant_masked = excluded.applicant_masked,
                 received_at = excluded.received_at,
                 due_at = excluded.due_at,
                 completed_at = excluded.completed_at,
                 last_event_id = excluded.last_event_id,
                 last_sequence = excluded.last_sequence,
                 last_occurred_at = excluded.last_occurred_at,
                 last_stage = excluded.last_stage,
                 updated_at = excluded.updated_at,
                 due_sequence = excluded.due_sequence,
                 due_occurred_at = excluded.due_occurred_at,
                 due_stage = excluded.due_stage,
                 all_sequenced = excluded.all_sequenced,
                 paused_secs = excluded.paused_secs,
                 paused_since = excluded.paused_since,
                 paused_after_due_secs = excluded.paused_after_due_secs"
        ))
        .await
        .context("Failed to prepare the state upsert")?;
    tx.execute(
        &upsert,
        &[
            &tenants,
            &codes,
            &statuses,
            &procedure_codes,
            &procedure_names,
            &agency_codes,
            &agency_names,
            &masked,
            &received,
            &due,
            &completed,
            &tokens,
            &last_ids,
            &sequences,
            &occurred,
            &stages,
            &updated,
            &due_sequences,
            &due_occurred,
            &due_stages,
            &all_sequenced,
            &paused,
            &paused_since,
            &paused_after_due,
        ],
    )
    .await
    .context("Failed to store dossier states")?;
    Ok(())
}

/// The routing key of a notification on `loa.notifications`: its own lane's
/// (`transactional.…` or `broadcast.…`), so each lands in its lane's queue.
pub fn notification_routing_key(n: &NotificationRequest) -> String {
    n.routing_key()
}

/// Writes planned notifications to the outbox (a notification id already there is
/// skipped); returns the ids newly written.
pub(crate) async fn insert_outbox(
    tx: &deadpool_postgres::Transaction<'_>,
    planned: &[NotificationRequest],
) -> anyhow::Result<HashSet<String>> {
    if planned.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = planned.iter().map(|n| n.notification_id.as_str()).collect();
    let tenants: Vec<&str> = planned.iter().map(|n| n.tenant.as_str()).collect();
    let kinds: Vec<&str> = planned.iter().map(|n| n.kind.as_str()).collect();
    let keys: Vec<String> = planned.iter().map(notification_routing_key).collect();
    let bodies: Vec<Json<Envelope>> = planned
        .iter()
        .map(|n| Json(Envelope::NotificationRequestV1(n.clone())))
        .collect();
    let traces: Vec<Option<&str>> = planned.iter().map(|n| n.trace_context.as_deref()).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO tracker.outbox (notification_id, tenant, kind, routing_key, body, traceparent)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::json[], $6::text[])
             ON CONFLICT (notification_id) DO NOTHING
             RETURNING notification_id",
        )
        .await
        .context("Failed to prepare the outbox insert")?;
    let rows = tx
        .query(&insert, &[&ids, &tenants, &kinds, &keys, &bodies, &traces])
        .await
        .context("Failed to write the outbox")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A tenant's dossier by its code.
pub async fn dossier_by_code(
    pool: &Pool,
    tenant: &str,
    code: &str,
) -> anyhow::Result<Option<DossierState>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            &format!("SELECT {STATE_COLUMNS} FROM tracker.dossiers WHERE tenant = $1 AND dossier_code = $2"),
            &[&tenant, &code],
        )
        .await
        .context("Failed to read a dossier")?;
    row.as_ref().map(state_from_row).transpose()
}

/// A dossier by its lookup token (any tenant: the token is unguessable).
pub async fn dossier_by_token(pool: &Pool, token: &str) -> anyhow::Result<Option<DossierState>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            &format!("SELECT {STATE_COLUMNS} FROM tracker.dossiers WHERE lookup_token = $1"),
            &[&token],
        )
        .await
        .context("Failed to read a dossier")?;
    row.as_ref().map(state_from_row).transpose()
}

/// The electronic result a dossier's lookup page offers: the one carried by its newest
/// result event (9, 10) the lifecycle applied, if any.
pub fn result_document(history: &[HistoryEntry]) -> Option<&ResultDocument> {
    history
        .iter()
        .rev()
        .filter(|e| !e.invalid_transition)
        .find_map(|e| e.details.result_document.as_ref())
}

/// Counts one download of a dossier's electronic result; the new count.
pub async fn count_result_download(pool: &Pool, tenant: &str, code: &str) -> anyhow::Result<i64> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            "UPDATE tracker.dossiers SET result_downloads = result_downloads + 1
              WHERE tenant = $1 AND dossier_code = $2 RETURNING result_downloads",
            &[&tenant, &code],
        )
        .await
        .context("Failed to count a result download")?;
    Ok(row.get(0))
}

/// A dossier's full history, in order of occurrence.
pub async fn history(pool: &Pool, tenant: &str, code: &str) -> anyhow::Result<Vec<HistoryEntry>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT event_id, status, occurred_at, sequence, invalid_transition,
                    (event->>'due_at')::timestamptz, event->>'reason',
                    (event->'required_documents')::text,
                    (event->'fee'->>'amount_vnd')::bigint, event->'fee'->>'description',
                    event->'result_document'->>'name', event->'result_document'->>'url',
                    event->'applicant'->>'kind'
             FROM tracker.dossier_events
             WHERE tenant = $1 AND dossier_code = $2
             ORDER BY occurred_at, sequence NULLS LAST, status, recorded_at",
            &[&tenant, &code],
        )
        .await
        .context("Failed to read a dossier's history")?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                event_id: r.get(0),
                status: status_from_db(r.get(1))?,
                occurred_at: r.get(2),
                sequence: r.get(3),
                invalid_transition: r.get(4),
                due_at: r.get(5),
                details: EventDetails {
                    reason: r.get(6),
                    documents: r
                        .get::<_, Option<&str>>(7)
                        .and_then(|text| serde_json::from_str(text).ok())
                        .unwrap_or_default(),
                    fee_vnd: r.get(8),
                    fee_description: r.get(9),
                    result_document: match (r.get(10), r.get(11)) {
                        (Some(name), Some(url)) => Some(ResultDocument { name, url }),
                        _ => None,
                    },
                    applicant_kind: match r.get::<_, Option<&str>>(12) {
                        Some("organisation" | "organization") => ApplicantKind::Organisation,
                        _ => ApplicantKind::Person,
                    },
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// An event of dossier `D1`; `received_at` and `due_at` only when given.
    fn event(
        id: &str,
        status: u8,
        occurred_at: &str,
        received_at: Option<&str>,
        due_at: Option<&str>,
    ) -> DossierEvent {
        let mut v = json!({
            "event_id": id, "tenant": "demo", "dossier_code": "D1", "status": status,
            "occurred_at": occurred_at,
            "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
            "agency": {"code": "H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "0903123456"}
        });
        if let Some(r) = received_at {
            v["received_at"] = json!(r);
        }
        if let Some(d) = due_at {
            v["due_at"] = json!(d);
        }
        DossierEvent::from_json(&v).unwrap()
    }

    /// The state after receiving `events` in this order as the store does: one that
    /// follows the newest advances the state, any other refolds the history.
    fn replay(events: &[DossierEvent]) -> DossierState {
        let now = at("2026-12-04T10:00:00Z");
        let mut history: Vec<DossierEvent> = Vec::new();
        let mut state: Option<DossierState> = None;
        for e in events {
            history.push(e.clone());
            state = Some(match state {
                None => DossierState::start(e, "t".into(), now),
                Some(mut s) if s.newest().follows(e) => {
                    s.advance(e, now);
                    s
                }
                Some(_) => fold(&history, "t", now).unwrap().state,
            });
        }
        state.unwrap()
    }

    #[test]
    fn a_late_receipt_fills_in_the_reception_date_without_becoming_current() {
        // 4, then a late 2 (no explicit received_at), then 9.
        let state = replay(&[
            event("e4", 4, "2026-11-29T08:00:00+07:00", None, None),
            event(
                "e2",
                2,
                "2026-11-28T09:30:00+07:00",
                None,
                Some("2026-12-03T17:00:00+07:00"),
            ),
            event("e9", 9, "2026-12-01T10:00:00+07:00", None, None),
        ]);

        assert_eq!(state.status, DossierStatus::ResultReady);
        assert_eq!(state.received_at, Some(at("2026-11-28T09:30:00+07:00")));
        assert_eq!(state.due_at, Some(at("2026-12-03T17:00:00+07:00")));
        assert_eq!(state.last_event_id, "e9");
    }

    #[test]
    fn a_stale_event_never_overwrites_a_reception_date_already_known() {
        let state = replay(&[
            event(
                "e4",
                4,
                "2026-11-29T08:00:00+07:00",
                Some("2026-11-28T09:30:00+07:00"),
                None,
            ),
            event(
                "e2",
                2,
                "2026-11-28T10:00:00+07:00",
                Some("2026-11-28T10:00:00+07:00"),
                None,
            ),
        ]);

        assert_eq!(state.received_at, Some(at("2026-11-28T09:30:00+07:00")));
    }

    #[test]
    fn only_the_newest_event_carrying_an_appointment_sets_it() {
        // The supplement (5) moved the appointment to 10/12; the late receipt's 03/12
        // is older and must not move it back. A later 9 without one keeps 10/12.
        let moved = replay(&[
            event(
                "e5",
                5,
                "2026-12-01T09:00:00+07:00",
                None,
                Some("2026-12-10T17:00:00+07:00"),
            ),
            event(
                "e2",
                2,
                "2026-11-28T09:30:00+07:00",
                None,
                Some("2026-12-03T17:00:00+07:00"),
            ),
            event("e9", 9, "2026-12-08T10:00:00+07:00", None, None),
        ]);
        // A late event newer than the one that set the appointment does move it.
        let late_but_newer = replay(&[
            event(
                "e2",
                2,
                "2026-11-28T09:30:00+07:00",
                None,
                Some("2026-12-03T17:00:00+07:00"),
            ),
            event("e9", 9, "2026-12-08T10:00:00+07:00", None, None),
            event(
                "e5",
                5,
                "2026-12-01T09:00:00+07:00",
                None,
                Some("2026-12-10T17:00:00+07:00"),
            ),
        ]);

        assert_eq!(moved.due_at, Some(at("2026-12-10T17:00:00+07:00")));
        assert_eq!(late_but_newer.due_at, Some(at("2026-12-10T17:00:00+07:00")));
        assert_eq!(late_but_newer.status, DossierStatus::ResultReady);
    }

    #[test]
    fn a_late_result_ready_dates_the_completion_of_a_returned_dossier() {
        let state = replay(&[
            event("e10", 10, "2026-12-05T10:00:00+07:00", None, None),
            event("e9", 9, "2026-12-02T10:00:00+07:00", None, None),
        ]);

        assert_eq!(state.status, DossierStatus::ResultReturned);
        assert_eq!(state.completed_at, Some(at("2026-12-02T10:00:00+07:00")));
    }

    #[test]
    fn a_late_event_with_nothing_new_leaves_the_state_as_it_was() {
        let newer = event(
            "e4",
            4,
            "2026-11-29T08:00:00+07:00",
            Some("2026-11-28T09:30:00+07:00"),
            Some("2026-12-03T17:00:00+07:00"),
        );
        let alone = replay(std::slice::from_ref(&newer));

        let with_late = replay(&[
            newer,
            event("e1", 1, "2026-11-27T20:00:00+07:00", None, None),
        ]);

        assert_eq!(with_late, alone);
    }

    #[test]
    fn a_notification_is_routed_to_its_own_lane() {
        let mut request = NotificationRequest {
            notification_id: "n1".into(),
            tenant: "dong-nai".into(),
            kind: loa_contracts::NotificationKind::Receipt,
            recipient: loa_contracts::Recipient {
                phone: Some("84903123456".into()),
                zalo_user_id: None,
            },
            params: Default::default(),
            lane: loa_contracts::Lane::Transactional,
            dossier_code: None,
            not_before: None,
            trace_context: None,
            event_accepted_at: None,
            created_at: at("2026-12-04T10:00:00Z"),
            broadcast: None,
        };
        assert_eq!(
            notification_routing_key(&request),
            "transactional.dong-nai.receipt"
        );
        request.lane = loa_contracts::Lane::Broadcast;
        assert_eq!(
            notification_routing_key(&request),
            "broadcast.dong-nai.receipt"
        );
    }
}
