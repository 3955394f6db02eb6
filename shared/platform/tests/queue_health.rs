//! Queue health against a real RabbitMQ (a private vhost per test): a consumer exports
//! how many messages wait in its queue and how many consumers read it.

use loa_platform::{
    amqp::{
        self, queue_health, run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus,
        Disposition, OutgoingMessage, Publisher,
    },
    testing::{eventually, TestEnv},
};
use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

async fn publish_events(env: &TestEnv, n: usize) {
    let publisher = Publisher::new(env.amqp_url.clone(), "test-publisher");
    let messages: Vec<OutgoingMessage> = (0..n)
        .map(|i| OutgoingMessage {
            exchange: topology::EX_EVENTS.to_owned(),
            routing_key: "dossier.test.2".to_owned(),
            body: format!("{{\"n\":{i}}}").into_bytes(),
            message_id: format!("m-{i}"),
            headers: Vec::new(),
        })
        .collect();
    publisher.publish_all(&messages).await.unwrap();
}

async fn declared_topology(env: &TestEnv) -> (lapin::Connection, lapin::Channel) {
    let connection = amqp::connect(&env.amqp_url, "test-topology").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology::declare(&channel).await.unwrap();
    (connection, channel)
}

/// The value of a gauge of the default registry, for one `queue` label.
fn gauge(name: &str, queue: &str) -> Option<f64> {
    prometheus::gather()
        .iter()
        .find(|f| f.name() == name)?
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == queue))
        .map(|m| m.get_gauge().get_value())
}

#[tokio::test]
async fn a_passive_declare_reads_a_queues_depth_and_consumers_without_changing_it() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let (_connection, channel) = declared_topology(&env).await;
    publish_events(&env, 7).await;

    // Act
    let sampled = queue_health::sample(&channel, topology::Q_TRACKER_EVENTS)
        .await
        .unwrap();
    let again = queue_health::sample(&channel, topology::Q_TRACKER_EVENTS)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        sampled,
        queue_health::QueueSample {
            messages: 7,
            consumers: 0
        }
    );
    assert_eq!(again, sampled, "looking changes nothing");
    assert!(
        queue_health::sample(&channel, "no.such.queue")
            .await
            .is_err(),
        "a missing queue is an error, never a zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_exports_the_depth_and_consumers_of_its_queue_while_it_falls_behind() {
    // Arrange: 40 events wait; the handler holds its first batch of 5 until released.
    let env = TestEnv::new().await.unwrap();
    let _topology = declared_topology(&env).await;
    publish_events(&env, 40).await;
    let release = Arc::new(Semaphore::new(0));
    let cancel = CancellationToken::new();
    let settings = BatchConsumerSettings {
        queue: topology::Q_TRACKER_EVENTS.to_owned(),
        name: "test-health-consumer".to_owned(),
        prefetch: 5,
        batch_size: 5,
        batch_wait: Duration::ZERO,
        max_batches_in_flight: 1,
    };

    // Act
    let consumer = tokio::spawn({
        let (url, cancel, release) = (env.amqp_url.clone(), cancel.clone(), release.clone());
        async move {
            run_batch_consumer(
                &url,
                settings,
                BrokerStatus::default(),
                cancel,
                move |batch| {
                    let release = release.clone();
                    async move {
                        release.acquire().await.unwrap().forget();
                        vec![Disposition::Ack; batch.len()]
                    }
                },
            )
            .await
        }
    });

    // Assert: 35 wait behind the 5 prefetched, with one consumer reading.
    let messages = "loa_queue_messages";
    let consumers = "loa_queue_consumers";
    let queue = topology::Q_TRACKER_EVENTS;
    eventually(Duration::from_secs(20), || async {
        (gauge(messages, queue) == Some(35.0) && gauge(consumers, queue) == Some(1.0)).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the backlog is exported: messages {:?}, consumers {:?}",
            gauge(messages, queue),
            gauge(consumers, queue)
        )
    });

    // And once the consumer catches up, the backlog reads zero.
    release.add_permits(100);
    eventually(Duration::from_secs(20), || async {
        (gauge(messages, queue) == Some(0.0)).then_some(())
    })
    .await
    .expect("the caught-up queue reads zero");
    cancel.cancel();
    consumer.await.unwrap();
}
