//! The unit of work, called directly: one transaction per batch, each event classified.

use crate::helpers::*;
use chrono::Utc;
use loa_contracts::NotificationKind;
use loa_tracker::{metrics::EventOutcome, store::EventConflict};
use serde_json::json;

#[tokio::test]
async fn a_batch_applies_one_dossiers_events_in_order_and_classifies_each() {
    // Arrange
    let direct = Direct::new().await;
    loa_tracker::migrate(&direct.pool).await.unwrap(); // idempotent
    let code = dossier_code("0301");
    let batch = [
        event("b-2", &code, 2, "2026-11-28T09:30:00+07:00"),
        event("b-4", &code, 4, "2026-11-29T09:30:00+07:00"),
        event("b-2", &code, 2, "2026-11-28T09:30:00+07:00"),
        event("b-1", &code, 1, "2026-11-27T20:00:00+07:00"),
        event_with("b-9", &code, 9, "2026-12-01T10:00:00+07:00", |v| {
            v.as_object_mut().unwrap().remove("due_at");
        }),
    ];

    // Act
    let first = direct.apply(&batch).await;
    let again = direct.apply(&batch).await;

    // Assert
    use EventOutcome::*;
    assert_eq!(
        first.outcomes,
        vec![Applied, Applied, Duplicate, Stale, Applied]
    );
    let kinds: Vec<_> = first.planned.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::Receipt,
            NotificationKind::ResultReadyEarly
        ]
    );
    assert_eq!(again.outcomes, vec![Duplicate; 5]);
    assert!(again.planned.is_empty());
    let client = direct.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT status, last_event_id, due_at IS NOT NULL, completed_at IS NOT NULL, received_at IS NOT NULL
             FROM tracker.dossiers WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), 9);
    assert_eq!(row.get::<_, String>(1), "b-9");
    assert!(
        row.get::<_, bool>(2),
        "the due date is kept when an event omits it"
    );
    assert!(row.get::<_, bool>(3));
    assert!(row.get::<_, bool>(4));
    let history: i64 = client
        .query_one("SELECT count(*) FROM tracker.dossier_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 4);
}

#[tokio::test]
async fn concurrent_batches_touching_the_same_dossiers_neither_deadlock_nor_regress() {
    // Arrange: two replicas get events of the same two dossiers in opposite orders.
    let direct = Direct::new().await;
    let (a, b) = (dossier_code("0302"), dossier_code("0303"));
    let without_zalo = |id: String, code: &str, status, occurred_at| {
        event_with(&id, code, status, occurred_at, |v| {
            v["channels"]["zalo"] = json!(false)
        })
    };
    for round in 0..20 {
        let one = [
            without_zalo(format!("a2-{round}"), &a, 2, "2026-11-28T09:30:00+07:00"),
            without_zalo(format!("b9-{round}"), &b, 9, "2026-12-01T09:30:00+07:00"),
        ];
        let two = [
            without_zalo(format!("b2-{round}"), &b, 2, "2026-11-28T09:30:00+07:00"),
            without_zalo(format!("a9-{round}"), &a, 9, "2026-12-01T09:30:00+07:00"),
        ];

        // Act
        let both = tokio::join!(direct.apply(&one), direct.apply(&two));

        // Assert: neither batch failed or deadlocked (`apply` unwraps), each classified both.
        assert_eq!(both.0.outcomes.len(), 2);
        assert_eq!(both.1.outcomes.len(), 2);
    }
    let client = direct.pool.get().await.unwrap();
    let statuses: Vec<i16> = client
        .query(
            "SELECT status FROM tracker.dossiers ORDER BY dossier_code",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, vec![9, 9]);
}

#[tokio::test]
async fn a_reused_event_id_with_other_content_is_a_conflict_and_an_identical_repeat_a_duplicate() {
    // Arrange
    let direct = Direct::new().await;
    let code = dossier_code("0304");
    let original = event("dupm-1", &code, 2, "2026-11-28T09:30:00+07:00");
    // The same event written differently (another phone format, another zone, a
    // later acceptance stamp) is still the same event.
    let mut repeat = event_with("dupm-1", &code, 2, "2026-11-28T02:30:00Z", |v| {
        v["applicant"]["phone"] = json!("+84 903 123 456");
    });
    repeat.accepted_at = Some(Utc::now());
    let other_person = event_with("dupm-1", &code, 2, "2026-11-28T09:30:00+07:00", |v| {
        v["applicant"] = json!({"name": "Lê Văn Cường", "phone": "0912 345 678"});
    });
    let other_status = event("dupm-1", &code, 4, "2026-11-29T09:30:00+07:00");
    // A reused id inside one batch: the first occurrence keeps it.
    let first_in_batch = event(
        "dupm-2",
        &dossier_code("0305"),
        2,
        "2026-11-28T09:30:00+07:00",
    );
    let second_in_batch = event(
        "dupm-2",
        &dossier_code("0305"),
        10,
        "2026-12-05T09:30:00+07:00",
    );

    // Act
    let first = direct.apply(&[original]).await;
    let later = direct
        .apply(&[
            repeat,
            other_person,
            other_status,
            first_in_batch,
            second_in_batch,
        ])
        .await;

    // Assert
    use EventOutcome::*;
    assert_eq!(first.outcomes, vec![Applied]);
    assert_eq!(
        later.outcomes,
        vec![Duplicate, Conflict, Conflict, Applied, Conflict]
    );
    assert_eq!(
        later.conflicts,
        vec![
            EventConflict {
                index: 1,
                differing: vec!["applicant".into()]
            },
            EventConflict {
                index: 2,
                differing: vec!["occurred_at".into(), "status".into()]
            },
            EventConflict {
                index: 4,
                differing: vec!["occurred_at".into(), "status".into()]
            },
        ]
    );
    assert_eq!(later.planned.len(), 1, "only dupm-2's receipt is planned");
    let client = direct.pool.get().await.unwrap();
    let kept: Vec<(String, i16)> = client
        .query(
            "SELECT event_id, status FROM tracker.dossier_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(kept, [("dupm-1".into(), 2), ("dupm-2".into(), 2)]);
    assert_eq!(
        client
            .query_one(
                "SELECT status FROM tracker.dossiers WHERE dossier_code = $1",
                &[&code]
            )
            .await
            .unwrap()
            .get::<_, i16>(0),
        2,
        "the conflicting status 4 changed nothing"
    );
}

#[tokio::test]
async fn an_event_recorded_before_digests_were_kept_is_compared_by_its_stored_body() {
    // Arrange: an event recorded, then its digest erased as a row from before
    // migration 6 has none.
    let direct = Direct::new().await;
    let code = dossier_code("0306");
    let original = event("old-1", &code, 2, "2026-11-28T09:30:00+07:00");
    direct.apply(std::slice::from_ref(&original)).await;
    let client = direct.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE tracker.dossier_events SET content_digest = NULL",
            &[],
        )
        .await
        .unwrap();
    let changed = event_with("old-1", &code, 2, "2026-11-28T09:30:00+07:00", |v| {
        v["procedure"]["name"] = json!("Đăng ký khai tử");
    });

    // Act
    let outcome = direct.apply(&[original, changed]).await;

    // Assert
    assert_eq!(
        outcome.outcomes,
        vec![EventOutcome::Duplicate, EventOutcome::Conflict]
    );
    assert_eq!(outcome.conflicts[0].differing, ["procedure"]);
}

#[tokio::test]
async fn replicas_applying_one_event_id_with_different_contents_at_once_keep_exactly_one() {
    // Arrange: two replicas (two pools, two transactions) get the same id with other
    // content at the same moment, round after round.
    let direct = Direct::new().await;
    let other_pool = loa_platform::db::pool(&direct.env.database_url, 4).unwrap();
    for round in 0..10 {
        let id = format!("race-{round}");
        let code = dossier_code(&format!("04{round:02}"));
        let one = [event(&id, &code, 2, "2026-11-28T09:30:00+07:00")];
        let two = [event(&id, &code, 4, "2026-11-29T09:30:00+07:00")];

        // Act
        let (a, b) = tokio::join!(
            direct.apply_on(&direct.pool, &one),
            direct.apply_on(&other_pool, &two)
        );

        // Assert
        let mut outcomes = vec![a.outcomes[0], b.outcomes[0]];
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(
            outcomes,
            vec![EventOutcome::Applied, EventOutcome::Conflict],
            "round {round}"
        );
    }
}
