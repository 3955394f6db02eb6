//! Fault injection: the notifier killed mid-run (alone, and beside a second replica),
//! RabbitMQ connections force-closed mid-run. Every citizen still gets each message;
//! sending resumes within seconds; none twice while receipts flow, and without them
//! no more duplicates than the resends the notifier counted as ambiguous.

use crate::{
    helpers::{receipt_event, sandbox_messages, wait_ready, TestSystem},
    helpers_process::{self, base, Ports, Process},
};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::{Duration, Instant},
};

/// The notifier as the crash tests run it: small batches (so a kill lands mid-batch)
/// and a send left in doubt (timed out, or dispatched by a sender that died)
/// rechecked after 8 s unless its receipt comes first. Leases and time-outs are the
/// defaults.
const NOTIFIER_TUNING: &[(&str, &str)] = &[
    ("LOA_NOTIFIER__BATCH_SIZE", "8"),
    ("LOA_NOTIFIER__MAX_IN_FLIGHT", "128"),
    ("LOA_NOTIFIER__AMBIGUOUS_RECHECK_SECS", "8"),
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

/// Four services as processes on a fresh database and vhost, the sandbox answering
/// 20 ms late (so a kill lands while sends are in flight), ready to take events.
struct Crashable {
    env: TestEnv,
    ports: Ports,
    client: reqwest::Client,
    sandbox: String,
    notifier: Process,
    _others: Vec<Process>,
}

impl Crashable {
    async fn start() -> Self {
        let env = TestEnv::new().await.unwrap();
        let ports = Ports::free();
        let others = vec![
            spawn("zalo-sandbox", &env, &ports),
            spawn("tracker", &env, &ports),
            spawn("intake", &env, &ports),
        ];
        let notifier = spawn("notifier", &env, &ports);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let sandbox = base(ports.sandbox);
        wait_ready(
            &client,
            &[
                &sandbox,
                &base(ports.tracker),
                &base(ports.notifier),
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
        Self {
            env,
            ports,
            client,
            sandbox,
            notifier,
            _others: others,
        }
    }

    /// Messages Zalo (the sandbox) accepted so far.
    async fn accepted(&self) -> u64 {
        let stats: Value = self
            .client
            .get(format!("{}/_sandbox/stats", self.sandbox))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["accepted"].as_u64().unwrap()
    }

    /// Waits until the sandbox has accepted `n` messages.
    async fn wait_accepted(&self, n: u64) {
        eventually(Duration::from_secs(60), || async {
            (self.accepted().await >= n).then_some(())
        })
        .await
        .expect("the sandbox receives messages");
    }

    /// Watches the sandbox until it has accepted `total` messages (or 120 s pass) and
    /// returns the longest time it accepted nothing, with when that gap started
    /// (relative to the call). Sampled every 25 ms.
    async fn longest_gap_until(&self, total: u64) -> (Duration, Duration) {
        let start = Instant::now();
        let mut last = (self.accepted().await, Instant::now());
        let mut longest = (Duration::ZERO, Duration::ZERO);
        while last.0 < total && start.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let n = self.accepted().await;
            if n > last.0 {
                let gap = last.1.elapsed();
                if gap > longest.0 {
                    longest = (gap, last.1 - start);
                }
                last = (n, Instant::now());
            }
        }
        longest
    }

    /// The sum of a counter over a notifier's series.
    async fn counter(&self, notifier: &str, name: &str) -> f64 {
        let metrics = self
            .client
            .get(format!("{notifier}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        counter_sum(&metrics, name)
    }
}

#[tokio::test]
async fn a_notifier_killed_mid_run_and_restarted_sends_again_within_five_seconds_and_no_citizen_gets_a_message_twice(
) {
    // Arrange: receipts flow from the sandbox to the notifier's webhook.
    const EVENTS: usize = 600;
    let mut sys = Crashable::start().await;
    push_events(&sys.client, &base(sys.ports.intake), "kill", EVENTS).await;
    sys.wait_accepted(60).await;

    // Act: SIGKILL mid-run; a new notifier one second later.
    sys.notifier.kill_hard();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_kill = sys.accepted().await;
    let restarted_at = Instant::now();
    sys.notifier = spawn("notifier", &sys.env, &sys.ports);

    // Assert: sending resumes within 5 s of the restart (the dead sender's leases
    // hold up nothing but their own requests).
    eventually(Duration::from_secs(30), || async {
        (sys.accepted().await > at_kill).then_some(())
    })
    .await
    .expect("sending resumes");
    let resumed_after = restarted_at.elapsed();
    assert!(
        resumed_after <= Duration::from_secs(5),
        "sending resumed {resumed_after:?} after the restart"
    );

    // Assert: every citizen told exactly once: each send the dead notifier left in
    // doubt was settled by its receipt, not resent.
    let messages = wait_for_distinct(&sys.client, &sys.sandbox, EVENTS).await;
    let (per_tracking_id, dossiers) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS, "one notification per event");
    assert_eq!(dossiers.len(), EVENTS, "every dossier's citizen was told");
    let repeated: Vec<_> = per_tracking_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "sent more than once (killed after {at_kill} of {EVENTS}): {repeated:?}"
    );
    assert!(at_kill < EVENTS as u64, "the kill landed mid-run");
}

#[tokio::test]
async fn when_one_of_two_notifiers_is_killed_the_survivor_sends_on_without_a_gap_longer_than_five_seconds(
) {
    // Arrange: a second notifier on its own port; enough events for 20 s of sending
    // at the demo tenant's 50 messages per second.
    const EVENTS: u64 = 1_000;
    let mut sys = Crashable::start().await;
    let second_port = helpers_process::free_port();
    let survivor_bind = format!("127.0.0.1:{second_port}");
    let mut tuning = NOTIFIER_TUNING.to_vec();
    tuning.push(("LOA_NOTIFIER__BIND", survivor_bind.as_str()));
    let _survivor = helpers_process::spawn("notifier", &sys.env, &sys.ports, &tuning);
    wait_ready(&sys.client, &[&base(second_port)]).await;
    // Zalo's webhooks reach whichever replica is up (here: the survivor).
    let to_survivor = sys
        .client
        .post(format!("{}/_sandbox/webhook", sys.sandbox))
        .json(&json!({"url": format!("{}/zalo/webhook", base(second_port))}))
        .send()
        .await
        .unwrap();
    assert!(to_survivor.status().is_success());
    push_events(
        &sys.client,
        &base(sys.ports.intake),
        "survive",
        EVENTS as usize,
    )
    .await;
    sys.wait_accepted(100).await;

    // Act
    sys.notifier.kill_hard();
    let at_kill = sys.accepted().await;

    // Assert: the survivor never stops for more than 5 s while work waits.
    let (gap, at) = sys.longest_gap_until(EVENTS).await;
    assert!(
        gap <= Duration::from_secs(5),
        "nothing was sent for {gap:?}, {at:?} after the kill (killed after {at_kill})"
    );
    let messages = wait_for_distinct(&sys.client, &sys.sandbox, EVENTS as usize).await;
    let (per_tracking_id, _) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS as usize);
    let repeated: Vec<_> = per_tracking_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
}

#[tokio::test]
async fn without_receipts_a_killed_notifier_duplicates_no_more_messages_than_the_ambiguous_resends_it_counts(
) {
    // Arrange: the sandbox sends no webhooks, so no receipt can settle a doubt.
    const EVENTS: usize = 300;
    let mut sys = Crashable::start().await;
    let off = sys
        .client
        .post(format!("{}/_sandbox/webhook", sys.sandbox))
        .json(&json!({"url": null}))
        .send()
        .await
        .unwrap();
    assert!(off.status().is_success());
    push_events(&sys.client, &base(sys.ports.intake), "blind", EVENTS).await;
    sys.wait_accepted(30).await;

    // Act
    sys.notifier.kill_hard();
    let at_kill = sys.accepted().await;
    sys.notifier = spawn("notifier", &sys.env, &sys.ports);
    let notifier = base(sys.ports.notifier);
    wait_ready(&sys.client, &[&notifier]).await;

    // Assert: everything arrives. A request the dead notifier left in doubt (claimed,
    // marked dispatched, no result recorded) is parked until its recheck and only then
    // sent again, counted in loa_notifier_ambiguous_resends_total; nothing else can
    // reach Zalo twice: a claim in front of every send, a lease renewed while its
    // sender lives, and a result recorded before the ack.
    let messages = wait_for_distinct(&sys.client, &sys.sandbox, EVENTS).await;
    let (per_tracking_id, dossiers) = tally(&messages);
    assert_eq!(per_tracking_id.len(), EVENTS, "one notification per event");
    assert_eq!(dossiers.len(), EVENTS, "every dossier's citizen was told");
    let duplicates: usize = per_tracking_id.values().map(|n| n - 1).sum();
    let resends = sys
        .counter(&notifier, "loa_notifier_ambiguous_resends_total")
        .await;
    assert!(
        duplicates as f64 <= resends,
        "{duplicates} duplicate(s) but only {resends} ambiguous resend(s) counted \
         (killed after {at_kill} of {EVENTS} messages)"
    );
    assert!(at_kill < EVENTS as u64, "the kill landed mid-run");
    eprintln!(
        "Killed after {at_kill} of {EVENTS} messages; {duplicates} duplicate(s), {resends} ambiguous resend(s) counted."
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
