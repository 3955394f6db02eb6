use loa_notifier::deliveries::{self, Claim, NewDelivery, Outcome, Prior, Status};
use loa_platform::testing::TestEnv;
use std::time::Duration;

fn row(id: &str) -> NewDelivery {
    NewDelivery {
        notification_id: id.into(),
        tenant: "demo".into(),
        kind: "receipt".into(),
        lane: "transactional".into(),
        dossier_code: Some("HS-0301".into()),
        channel: "zns".into(),
        event_accepted_at: None,
        broadcast_id: None,
    }
}

fn outcome(id: &str, status: Status) -> Outcome {
    Outcome {
        notification_id: id.into(),
        status,
        channel: "zns".into(),
        zalo_msg_id: (status == Status::Sent).then(|| "msg".into()),
        error_code: (status != Status::Sent).then_some(-100),
        error: (status != Status::Sent).then(|| "zalo error -100: m".into()),
    }
}

#[tokio::test]
async fn a_claim_is_exclusive_until_recorded_and_a_sent_delivery_is_never_claimed_again() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let pool = loa_platform::db::pool(&env.database_url, 2).unwrap();
    loa_notifier::migrate(&pool).await.unwrap();
    loa_notifier::migrate(&pool).await.unwrap(); // idempotent
    let lease = Duration::from_secs(60);
    let (a, b) = (row("a"), row("b"));

    // Act / Assert: first claim, then a competing one while the lease lives.
    const OWNER: i64 = 7;
    let first = deliveries::claim(&pool, &[a.clone(), b.clone()], lease, OWNER)
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![
            Claim::Claimed {
                attempts: 1,
                prior: Prior::Known
            },
            Claim::Claimed {
                attempts: 1,
                prior: Prior::Known
            }
        ]
    );
    assert_eq!(
        deliveries::claim(&pool, std::slice::from_ref(&a), lease, 8)
            .await
            .unwrap(),
        vec![Claim::InFlight]
    );

    // A transient failure releases the claim; the next attempt is not "resumed".
    deliveries::record(
        &pool,
        &[outcome("a", Status::Pending), outcome("b", Status::Sent)],
    )
    .await
    .unwrap();
    assert_eq!(
        deliveries::claim(&pool, &[a.clone(), b.clone()], lease, OWNER)
            .await
            .unwrap(),
        vec![
            Claim::Claimed {
                attempts: 2,
                prior: Prior::Known
            },
            Claim::AlreadySent
        ]
    );

    // A sender that stopped before dispatching leaves a lapsed lease: nothing is in
    // doubt. One that stopped after the dispatch mark leaves a send that may have
    // reached Zalo: the next claim says so.
    deliveries::record(&pool, &[outcome("a", Status::Pending)])
        .await
        .unwrap();
    deliveries::claim(&pool, std::slice::from_ref(&a), Duration::ZERO, OWNER)
        .await
        .unwrap();
    assert_eq!(
        deliveries::claim(&pool, std::slice::from_ref(&a), Duration::ZERO, OWNER)
            .await
            .unwrap(),
        vec![Claim::Claimed {
            attempts: 4,
            prior: Prior::Known
        }]
    );
    deliveries::mark_dispatched(&pool, &["a"]).await.unwrap();
    assert_eq!(
        deliveries::claim(&pool, std::slice::from_ref(&a), lease, OWNER)
            .await
            .unwrap(),
        vec![Claim::Claimed {
            attempts: 5,
            prior: Prior::Interrupted
        }]
    );

    // A permanent failure may be claimed again (a replayed dead letter).
    deliveries::record(&pool, &[outcome("a", Status::Failed)])
        .await
        .unwrap();
    assert!(matches!(
        deliveries::claim(&pool, std::slice::from_ref(&a), lease, OWNER)
            .await
            .unwrap()[0],
        Claim::Claimed { attempts: 6, .. }
    ));

    // Recording `sent` sticks: a late result cannot overwrite it.
    deliveries::record(&pool, &[outcome("b", Status::Failed)])
        .await
        .unwrap();
    let views = deliveries::list_for_dossier(&pool, "demo", "HS-0301")
        .await
        .unwrap();
    let b_view = views.iter().find(|v| v.notification_id == "b").unwrap();
    assert_eq!(b_view.status, "sent");
    assert_eq!(b_view.zalo_msg_id.as_deref(), Some("msg"));
    assert!(deliveries::list_for_dossier(&pool, "other", "HS-0301")
        .await
        .unwrap()
        .is_empty());
}
