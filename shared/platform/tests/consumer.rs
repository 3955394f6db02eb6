//! The batch consumer against a real RabbitMQ (a private vhost per test).

use loa_platform::{
    amqp::{
        self, run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus, Disposition,
        OutgoingMessage, Publisher,
    },
    testing::{eventually, TestEnv},
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 300;

async fn publish_events(env: &TestEnv, n: usize) {
    let connection = amqp::connect(&env.amqp_url, "test-topology").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology::declare(&channel).await.unwrap();
    let publisher = Publisher::new(env.amqp_url.clone(), "test-publisher");
    let messages: Vec<OutgoingMessage> = (0..n)
        .map(|i| OutgoingMessage {
            exchange: topology::EX_EVENTS.to_owned(),
            routing_key: "dossier.test.1".to_owned(),
            body: format!("{{\"n\":{i}}}").into_bytes(),
            message_id: format!("m-{i}"),
            headers: Vec::new(),
        })
        .collect();
    publisher.publish_all(&messages).await.unwrap();
}

/// Consumes the tracker's queue in batches of `batch_size`, `in_flight` at a time.
fn settings(batch_size: usize, in_flight: usize) -> BatchConsumerSettings {
    BatchConsumerSettings {
        queue: topology::Q_TRACKER_EVENTS.to_owned(),
        name: "test-consumer".to_owned(),
        prefetch: u16::try_from(batch_size * in_flight * 2).unwrap(),
        batch_size,
        batch_wait: Duration::ZERO,
        max_batches_in_flight: in_flight,
    }
}

/// Ready plus unacked messages (`rabbitmqctl` blocks: off the async workers).
fn ready_and_unacked(env: &TestEnv, queue: &str) -> u64 {
    tokio::task::block_in_place(|| env.queue_depth(queue)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_overlap_and_every_message_is_acked_once() {
    let env = TestEnv::new().await.unwrap();
    publish_events(&env, MESSAGES).await;

    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let batches = Arc::new(AtomicUsize::new(0));
    let cancel = CancellationToken::new();
    let settings = settings(10, 3);
    let consumer = tokio::spawn({
        let (seen, running, most, batches) =
            (seen.clone(), running.clone(), most.clone(), batches.clone());
        let (url, cancel) = (env.amqp_url.clone(), cancel.clone());
        async move {
            run_batch_consumer(
                &url,
                settings,
                BrokerStatus::default(),
                cancel,
                move |batch| {
                    let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
                    let nth = batches.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Every third batch is slow: later batches finish first and are
                        // acked before it (an ack with `multiple` would ack it too).
                        let pause = if nth % 3 == 0 { 60 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        {
                            let mut seen = seen.lock().unwrap();
                            for d in batch.iter() {
                                let id = d.properties.message_id().as_ref().unwrap().to_string();
                                *seen.entry(id).or_default() += 1;
                            }
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                        vec![Disposition::Ack; batch.len()]
                    }
                },
            )
            .await
        }
    });

    eventually(Duration::from_secs(30), || {
        let seen = seen.clone();
        async move { (seen.lock().unwrap().len() == MESSAGES).then_some(()) }
    })
    .await
    .expect("every message reaches the handler");
    // Let the last settlements go out, then stop: anything left unacked would return
    // to the queue (and an ack out of order would have closed the channel, causing
    // redeliveries).
    eventually(Duration::from_secs(10), || async {
        (ready_and_unacked(&env, topology::Q_TRACKER_EVENTS) == 0).then_some(())
    })
    .await
    .expect("every message is acked");
    cancel.cancel();
    consumer.await.unwrap();

    assert_eq!(ready_and_unacked(&env, topology::Q_TRACKER_EVENTS), 0);
    let seen = seen.lock().unwrap();
    assert!(
        seen.values().all(|&n| n == 1),
        "no message was redelivered: {:?}",
        seen.iter()
            .filter(|(_, &n)| n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&most),
        "batches overlapped, at most three at once (saw {most})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_up_does_not_stop_the_batches_taken_after_it() {
    let env = TestEnv::new().await.unwrap();
    publish_events(&env, 100).await;

    // The first batch hangs (a Zalo call waiting for its time-out) until released.
    let release = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(AtomicUsize::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn({
        let (release, finished, held, batches) = (
            release.clone(),
            finished.clone(),
            held.clone(),
            batches.clone(),
        );
        let (url, cancel) = (env.amqp_url.clone(), cancel.clone());
        async move {
            run_batch_consumer(
                &url,
                settings(10, 3),
                BrokerStatus::default(),
                cancel,
                move |batch| {
                    let (release, finished) = (release.clone(), finished.clone());
                    let nth = batches.fetch_add(1, Ordering::SeqCst);
                    if nth == 0 {
                        held.store(batch.len(), Ordering::SeqCst);
                    }
                    async move {
                        if nth == 0 {
                            release.notified().await;
                        }
                        finished.fetch_add(batch.len(), Ordering::SeqCst);
                        vec![Disposition::Ack; batch.len()]
                    }
                },
            )
            .await
        }
    });

    // Everything but the held batch is handled and acked while it still hangs.
    eventually(Duration::from_secs(20), || {
        let held = held.load(Ordering::SeqCst) as u64;
        let env = &env;
        async move {
            (held > 0 && ready_and_unacked(env, topology::Q_TRACKER_EVENTS) == held).then_some(())
        }
    })
    .await
    .expect("the other messages are handled and acked while the first batch hangs");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        100 - held.load(Ordering::SeqCst)
    );

    // Released, the held batch is acked too, and nothing comes back.
    release.notify_one();
    eventually(Duration::from_secs(10), || async {
        (ready_and_unacked(&env, topology::Q_TRACKER_EVENTS) == 0).then_some(())
    })
    .await
    .expect("the held batch is acked once released");
    cancel.cancel();
    consumer.await.unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        100,
        "no message was redelivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_in_flight_never_overlaps() {
    let env = TestEnv::new().await.unwrap();
    publish_events(&env, 50).await;

    let handled = Arc::new(AtomicUsize::new(0));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let cancel = CancellationToken::new();
    let settings = settings(5, 1);
    let consumer = tokio::spawn({
        let (handled, running, most) = (handled.clone(), running.clone(), most.clone());
        let (url, cancel) = (env.amqp_url.clone(), cancel.clone());
        async move {
            run_batch_consumer(
                &url,
                settings,
                BrokerStatus::default(),
                cancel,
                move |batch| {
                    let (handled, running, most) = (handled.clone(), running.clone(), most.clone());
                    async move {
                        most.fetch_max(
                            running.fetch_add(1, Ordering::SeqCst) + 1,
                            Ordering::SeqCst,
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        handled.fetch_add(batch.len(), Ordering::SeqCst);
                        running.fetch_sub(1, Ordering::SeqCst);
                        vec![Disposition::Ack; batch.len()]
                    }
                },
            )
            .await
        }
    });
    eventually(Duration::from_secs(30), || async {
        (handled.load(Ordering::SeqCst) >= 50).then_some(())
    })
    .await
    .unwrap();
    cancel.cancel();
    consumer.await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert_eq!(ready_and_unacked(&env, topology::Q_TRACKER_EVENTS), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_the_tenant_stamp_and_never_a_credential() {
    // Arrange: a message carrying a tenant stamp, a trace and credentials.
    let env = TestEnv::new().await.unwrap();
    let connection = amqp::connect(&env.amqp_url, "test-topology").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology::declare(&channel).await.unwrap();
    let publisher = Publisher::new(env.amqp_url.clone(), "test-publisher");
    let headers = [
        (amqp::consumer::H_TENANT, "demo"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (amqp::consumer::H_SOURCE_TOKEN, "demo-token"),
        ("Authorization", "Bearer demo-admin"),
    ];
    publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_EVENTS.to_owned(),
            routing_key: "dossier.demo.2".to_owned(),
            body: b"{}".to_vec(),
            message_id: "m-1".to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .await
        .unwrap();
    let cancel = CancellationToken::new();

    // Act: the handler gives up on it.
    let consumer = tokio::spawn({
        let (url, cancel) = (env.amqp_url.clone(), cancel.clone());
        async move {
            run_batch_consumer(
                &url,
                settings(5, 1),
                BrokerStatus::default(),
                cancel,
                |batch| async move { vec![Disposition::DeadLetter("poison: test".into()); batch.len()] },
            )
            .await
        }
    });
    let dead = eventually(Duration::from_secs(30), || async {
        channel
            .basic_get(
                topology::Q_DEAD.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .ok()?
    })
    .await
    .unwrap();
    cancel.cancel();
    consumer.await.unwrap();

    // Assert
    let header = |name: &str| amqp::consumer::header(&dead.delivery, name);
    assert_eq!(header(amqp::consumer::H_TENANT).as_deref(), Some("demo"));
    assert_eq!(header(topology::H_REASON).as_deref(), Some("poison: test"));
    assert!(header("traceparent").is_some());
    assert_eq!(header(amqp::consumer::H_SOURCE_TOKEN), None);
    assert_eq!(header("Authorization"), None);
}
