//! Fault injection: the notifier killed mid-batch, RabbitMQ connections force-closed
//! mid-run. Every citizen still gets each message; none twice, except sends the
//! notifier itself counted as ambiguous.

use crate::{
    helpers::{receipt_event, sandbox_messages, wait_ready, TestSystem},
    helpers_process::{self, base, Ports, Process},
};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::Duration,
};

/// The notifier is tuned so a killed process's leases run out in seconds (lease =
/// HTTP time-out × 3 × (requests / in-flight + 1) = 12 s for a batch of 8 messages
/// of at most 16 requests) and a parked ambiguous send is rechecked after 5 s.
const NOTIFIER_TUNING: &[(&str, &str)] = &[
    ("LOA_NOTIFIER__HTTP_TIMEOUT_MS", "2000"),
    ("LOA_NOTIFIER__BATCH_SIZE", "8"),
    ("LOA_NOTIFIER__MAX_IN_FLIGHT", "128"),
    ("LOA_NOTIFIER__AMBIGUOUS_RECHECK_SECS", "5"),
];

fn spawn(target: &str, env: &TestEnv, ports: &Ports) -> Process {
    helpers_process::spawn(target, env, ports, NOTIFIER_TUNING)
}

/// `n` receipt events for distinct dossiers, in intake batches of at most 100,
/// each batch retried while intake answers 503 (as upstream systems do).
async fn push_events(client: &reqwest::Client, intake: &str, prefix: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| receipt_event(&format!("{prefix}-evt-{i}"), &format!("{prefix}-{i:04}")))
        .collect();
    for chunk in events.chunks(100) {
        eventually(Duration::from_secs(60), || async {
            let response = client
                .post(format!("{intake}/v1/events/batch"))
                .bearer_auth("demo-token")
                .json(&json!({ "events": chunk }))
                .send()
                .await
                .ok()?;
            (response.status() == 202).then_some(())
        })
        .await
        .expect("intake accepts the batch once the broker confirms");
    }
}

/// How often each tracking id (notification id) reached the sandbox, and which
/// dossiers the messages were about.
fn tally(messages: &[Value]) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut per_tracking_id = BTreeMap::new();
    let mut dossiers = BTreeSet::new();
    for m in messages {
        let id = m["tracking_id"].as_str().expect("a tracking id").to_owned();
        *per_tracking_id.entry(id).or_insert(0) += 1;
        if let Some(code) = m["template_data"]["dossier_code"].as_str() {
            dossiers.insert(code.to_owned());
        }
    }
    (per_tracking_id, dossiers)
}

/// Waits until the sandbox holds a message for each of `n` distinct tracking ids,
/// then a little longer to catch late duplicates, and returns every message.
async fn wait_for_distinct(client: &reqwest::Client, sandbox: &str, n: usize) -> Vec<Value> {
    let done = eventually(Duration::from_secs(120), || async {
        let messages = sandbox_messages(client, sandbox).await;
        (tally(&messages).0.len() >= n).then_some(())
    })
    .await;
    let messages = sandbox_messages(client, sandbox).await;
    assert!(
        done.is_ok(),
        "only {} of {n} notifications reached the sandbox",
        tally(&messages).0.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    sandbox_messages(client, sandbox).await
}

/// The sum of a counter's series in a Prometheus exposition.
fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_notifier_killed_mid_batch_and_restarted_delivers_every_message_and_duplicates_only_what_it_counted(
) {
    // Arrange: every service as its own process; Zalo answers 20 ms late, so the
    // kill lands while sends are in flight.
    const EVENTS: usize = 300;
    let env = TestEnv::new().await.unwrap();
    let ports = Ports::free();
    let _sandbox = spawn("zalo-sandbox", &env, &ports);
    let _tracker = spawn("tracker", &env, &ports);
    let mut notifier = spawn("notifier", &env, &ports);
    let _intake = spawn("intake", &env, &ports);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (sandbox, notifier_url) = (base(ports.sandbox), base(ports.notifier));
    wait_ready(
        &client,
        &[
            &sandbox,
            &base(ports.tracker),
            &notifier_url,
            &base(ports.intake),
        ],
    )
    .await;
    let fault = client
        .post(format!("{sandbox}/_sandbox/faults"))
        .json(&json!({"api": "zns", "rate": 0.0, "latency_ms": 20}))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success());

    // Act: push the events, kill -9 the notifier while the sandbox is receiving,
    // start a new one.
    push_events(&client, &base(ports.intake), "kill", EVENTS).await;
    eventually(Duration::from_secs(60), || async {
        let received = sandbox_messages(&client, &sandbox).await.len();
        (received >= 30).then_some(())
    })
    .await
    .expect("the sandbox starts receiving");
    notifier.kill_hard();
    let at_kill = sandbox_messages(&client, &sandbox).await.len();
    let _notifier = spawn("notifier", &env, &ports);
    wait_ready(&client, &[&notifier_url]).await;

    // Assert: everything arrives; duplicates are bounded by the ambiguous sends the
    // new notifier counted.
    //
    // Why duplicates are bounded: a request is claimed in `notifier.deliveries`
    // (status `sending`, with a lease) before it is sent, and recorded `sent` before
    // its AMQP message is acked. The SIGKILL can land (1) before a claimed request was
    // sent: no duplicate; (2) after the send was recorded but before the ack: the
    // redelivery finds it `sent` and acks it without sending; (3) after Zalo accepted
    // it but before it was recorded: the row is still `sending` with a lease, and the
    // new notifier, once the lease ran out, claims it as `resumed`, counts it in
    // `loa_notifier_ambiguous_sends_total{cause="interrupted"}` and sends it again.
    // Only (3) can duplicate, at most once per request of the killed process's
    // in-flight batch, and each such resend is counted. (A send that times out is
    // counted too, with cause `timeout`, before it is parked for its receipt.)
    let messages = wait_for_distinct(&client, &sandbox, EVENTS).await;
    let (per_tracking_id, dossiers) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS, "one notification per event");
    assert_eq!(dossiers.len(), EVENTS, "every dossier's citizen was told");
    let duplicates: usize = per_tracking_id.values().map(|n| n - 1).sum();
    let metrics = client
        .get(format!("{notifier_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ambiguous = counter_sum(&metrics, "loa_notifier_ambiguous_sends_total");
    assert!(
        duplicates as f64 <= ambiguous,
        "{duplicates} duplicate(s) but only {ambiguous} ambiguous send(s) counted \
         (killed after {at_kill} of {EVENTS} messages)"
    );
    assert!(
        at_kill < EVENTS,
        "the kill landed mid-run ({at_kill} of {EVENTS} sent by then)"
    );
    eprintln!(
        "Killed after {at_kill} of {EVENTS} messages; {duplicates} duplicate(s), {ambiguous} ambiguous send(s) counted."
    );
}

#[tokio::test]
async fn services_recover_on_their_own_when_rabbitmq_closes_every_connection_mid_run() {
    // Arrange
    const EVENTS: usize = 200;
    let sys = TestSystem::start().await;
    let notifier = base(
        sys.system
            .as_ref()
            .unwrap()
            .notifier_port
            .expect("the notifier runs"),
    );

    // Act: push events while the broker drops every connection three times.
    let closer = {
        let env_name = sys.env.name.clone();
        tokio::spawn(async move {
            for pause_ms in [300, 1_200, 1_500] {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let out = Command::new("rabbitmqctl")
                    .args([
                        "close_all_connections",
                        "-p",
                        &env_name,
                        "test fault injection",
                    ])
                    .output()
                    .expect("rabbitmqctl runs");
                assert!(out.status.success(), "close_all_connections failed");
            }
        })
    };
    push_events(&sys.client, &sys.intake, "close", EVENTS).await;
    closer.await.unwrap();

    // Assert: every notification exactly once.
    let messages = wait_for_distinct(&sys.client, &sys.sandbox, EVENTS).await;
    let (per_tracking_id, dossiers) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS);
    assert_eq!(dossiers.len(), EVENTS);
    let repeated: Vec<_> = per_tracking_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");

    // Assert: once more, then every service is ready again by itself and carries
    // new events end to end.
    sys.env.close_all_connections().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_ready(&sys.client, &[&sys.intake, &sys.tracker, &notifier]).await;
    push_events(&sys.client, &sys.intake, "after", 10).await;
    let messages = wait_for_distinct(&sys.client, &sys.sandbox, EVENTS + 10).await;
    let (per_tracking_id, _) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS + 10);
    assert_eq!(messages.len(), EVENTS + 10, "nothing sent twice");
    sys.stop().await;
}
