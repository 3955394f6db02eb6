//! The lifecycle rules through the store and the consumer: an impossible transition is
//! kept, flagged, counted and silent; any order, batching and repeats of a dossier's
//! events end in the state of the ordered stream.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use loa_contracts::{DossierEvent, DossierStatus, NotificationKind};
use loa_platform::testing::TestEnv;
use loa_tracker::{
    lifecycle::fold,
    metrics::EventOutcome,
    store::{apply_batch, dossier_by_code},
};
use proptest::{prelude::*, test_runner::TestRunner};

/// `(event id, invalid_transition)` of a dossier's history rows, by event id.
async fn flags(pool: &deadpool_postgres::Pool, code: &str) -> Vec<(String, bool)> {
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT event_id, invalid_transition FROM tracker.dossier_events
              WHERE dossier_code = $1 ORDER BY event_id",
            &[&code],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn an_impossible_transition_is_kept_flagged_and_counted_but_neither_applied_nor_notified() {
    // Arrange
    let direct = Direct::new().await;
    let code = dossier_code("0701");
    let returned = [
        event("l-2", &code, 2, "2026-11-28T09:30:00+07:00"),
        event("l-10", &code, 10, "2026-12-02T10:00:00+07:00"),
    ];
    direct.apply(&returned).await;

    // Act: "refused at intake" after the result was returned, with a new appointment.
    let impossible = event_with("l-3", &code, 3, "2026-12-03T10:00:00+07:00", |v| {
        v["due_at"] = serde_json::json!("2026-12-20T17:00:00+07:00");
        v["reason"] = serde_json::json!("Thiếu giấy tờ");
    });
    let outcome = direct.apply(&[impossible]).await;

    // Assert
    assert_eq!(outcome.outcomes, [EventOutcome::InvalidTransition]);
    assert!(outcome.planned.is_empty(), "{:?}", outcome.planned);
    let state = dossier_by_code(&direct.pool, "demo", &code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, DossierStatus::ResultReturned);
    assert_eq!(
        state.due_at.unwrap(),
        DateTime::parse_from_rfc3339("2026-12-03T17:00:00+07:00").unwrap()
    );
    assert_eq!(
        flags(&direct.pool, &code).await,
        [
            ("l-10".to_owned(), false),
            ("l-2".to_owned(), false),
            ("l-3".to_owned(), true)
        ]
    );
}

#[tokio::test]
async fn a_late_event_that_makes_a_transition_possible_unflags_it_and_applies_it() {
    // Arrange: 2, then 3 "refused at intake" (impossible after a reception)…
    let direct = Direct::new().await;
    let code = dossier_code("0702");
    let first = direct
        .apply(&[
            event("m-2", &code, 2, "2026-11-28T09:30:00+07:00"),
            event("m-3", &code, 3, "2026-12-05T10:00:00+07:00"),
        ])
        .await;
    assert_eq!(
        first.outcomes,
        [EventOutcome::Applied, EventOutcome::InvalidTransition]
    );

    // Act: …until the supplement request between them arrives late: the citizen never
    // brought the documents, so the refusal is legal after all.
    let late = direct
        .apply(&[event("m-5", &code, 5, "2026-11-30T10:00:00+07:00")])
        .await;

    // Assert
    assert_eq!(late.outcomes, [EventOutcome::Stale]);
    assert!(late.planned.is_empty(), "a late event is history, not news");
    let state = dossier_by_code(&direct.pool, "demo", &code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, DossierStatus::Refused);
    assert!(flags(&direct.pool, &code)
        .await
        .iter()
        .all(|(_, invalid)| !invalid));
}

#[tokio::test]
async fn a_verdict_overturned_later_in_the_same_batch_is_the_one_kept() {
    // Arrange
    let direct = Direct::new().await;
    let code = dossier_code("0704");

    // Act: the refusal is impossible after the reception, until the late supplement
    // request in the same batch makes it legal.
    let outcome = direct
        .apply(&[
            event("n-2", &code, 2, "2026-11-28T09:30:00+07:00"),
            event("n-3", &code, 3, "2026-12-05T10:00:00+07:00"),
            event("n-5", &code, 5, "2026-11-30T10:00:00+07:00"),
        ])
        .await;

    // Assert
    assert_eq!(
        outcome.outcomes,
        [
            EventOutcome::Applied,
            EventOutcome::InvalidTransition,
            EventOutcome::Stale
        ]
    );
    let state = dossier_by_code(&direct.pool, "demo", &code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, DossierStatus::Refused);
    assert_eq!(
        flags(&direct.pool, &code).await,
        [
            ("n-2".to_owned(), false),
            ("n-3".to_owned(), false),
            ("n-5".to_owned(), false)
        ]
    );
}

#[tokio::test]
async fn the_consumer_counts_an_impossible_transition_and_plans_nothing_for_it() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0703");
    let invalid = r#"loa_tracker_events_total{outcome="invalid_transition",tenant="demo"}"#;
    broker
        .publish(&event("c-2", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event("c-7", &code, 7, "2026-11-29T09:30:00+07:00"))
        .await;
    app.wait_applied(&["c-2", "c-7"]).await;
    app.wait_relayed().await;
    let kinds: Vec<NotificationKind> = broker
        .notifications()
        .await
        .into_iter()
        .map(|o| o.request.kind)
        .collect();
    assert_eq!(
        kinds,
        [NotificationKind::Receipt, NotificationKind::Withdrawn]
    );
    let before = app.metric(invalid).await.unwrap();

    // Act: a result for a withdrawn dossier.
    broker
        .publish(&event("c-9", &code, 9, "2026-11-30T09:30:00+07:00"))
        .await;
    app.wait_applied(&["c-9"]).await;
    app.wait_relayed().await;

    // Assert
    assert_eq!(app.metric(invalid).await, Some(before + 1.0));
    assert!(broker.notifications().await.is_empty());
    assert_eq!(app.status_of(&code).await, Some(7));
    let dossier = app.admin_get(&format!("/v1/dossiers/{code}")).await;
    let history = dossier["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[2]["event_id"], "c-9");
    assert_eq!(history[2]["invalid_transition"], true);
    assert!(history[1].get("invalid_transition").is_none());
    app.stop().await;
}

/// A dossier's event stream (random statuses, times that never decrease but may
/// repeat, appointments now and then, sequences or none), its arrival order with
/// repeats, and how the arrivals are cut into batches.
fn stream(code: String) -> impl Strategy<Value = (Vec<DossierEvent>, Vec<usize>, Vec<usize>)> {
    let step = (1u8..=10, 0i64..4, proptest::option::of(1i64..30));
    (proptest::collection::vec(step, 1..8), any::<bool>()).prop_flat_map(
        move |(steps, sequenced)| {
            let base = DateTime::parse_from_rfc3339("2026-11-28T09:00:00+07:00")
                .unwrap()
                .with_timezone(&Utc);
            let mut hours = 0;
            let events: Vec<DossierEvent> = steps
                .iter()
                .enumerate()
                .map(|(i, (status, gap, due_days))| {
                    hours += gap;
                    let occurred = (base + Duration::hours(hours)).to_rfc3339();
                    event_with(&format!("p-{i}"), &code, *status, &occurred, |v| {
                        match due_days {
                            Some(d) => {
                                v["due_at"] =
                                    serde_json::json!((base + Duration::days(*d)).to_rfc3339())
                            }
                            None => {
                                v.as_object_mut().unwrap().remove("due_at");
                            }
                        }
                        v.as_object_mut().unwrap().remove("received_at");
                        if sequenced {
                            v["sequence"] = serde_json::json!(i + 1);
                        }
                    })
                })
                .collect();
            let n = events.len();
            let arrivals = proptest::collection::vec(0..n, 0..n).prop_flat_map(move |extra| {
                Just((0..n).chain(extra).collect::<Vec<_>>()).prop_shuffle()
            });
            let cuts = proptest::collection::vec(1usize..4, 1..8);
            (Just(events), arrivals, cuts)
        },
    )
}

#[test]
fn any_order_batching_and_repeats_of_a_dossiers_events_end_in_the_ordered_streams_state() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let direct = runtime.block_on(Direct::new());
    let mut runner = TestRunner::new(ProptestConfig::with_cases(24));
    let case = std::cell::Cell::new(0);
    runner
        .run(
            &stream(dossier_code("P0000")),
            |(events, arrivals, cuts)| {
                // Each case (and each shrinking step) gets a dossier of its own.
                case.set(case.get() + 1);
                let code = dossier_code(&format!("P{:04}", case.get()));
                let events: Vec<DossierEvent> = events
                    .into_iter()
                    .map(|mut e| {
                        e.event_id = format!("{}-{}", case.get(), e.event_id);
                        e.dossier_code = code.clone();
                        e
                    })
                    .collect();
                runtime.block_on(async {
                    let context = direct.context_at(
                        DateTime::parse_from_rfc3339("2026-12-10T00:00:00Z")
                            .unwrap()
                            .with_timezone(&Utc),
                    );
                    let delivered: Vec<DossierEvent> =
                        arrivals.iter().map(|&i| events[i].clone()).collect();
                    let mut rest = delivered.as_slice();
                    for cut in cuts.iter().cycle() {
                        if rest.is_empty() {
                            break;
                        }
                        let (batch, after) = rest.split_at((*cut).min(rest.len()));
                        apply_batch(&direct.pool, &context, &incoming(batch))
                            .await
                            .unwrap();
                        rest = after;
                    }
                    let stored = dossier_by_code(&direct.pool, "demo", &code)
                        .await
                        .unwrap()
                        .unwrap();
                    let ordered = fold(&events, &stored.lookup_token, context.now).unwrap();
                    let mut expected = ordered.state.clone();
                    expected.updated_at = stored.updated_at;
                    prop_assert_eq!(&stored, &expected);
                    let mut verdicts: Vec<(String, bool)> = ordered
                        .verdicts
                        .iter()
                        .map(|(id, v)| (id.clone(), !v.is_applied()))
                        .collect();
                    verdicts.sort();
                    prop_assert_eq!(flags(&direct.pool, &code).await, verdicts);
                    Ok(())
                })
            },
        )
        .unwrap();
}
