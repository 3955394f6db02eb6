//! The raw broker baseline: what RabbitMQ alone does on this machine, measured in the
//! same run as the pipeline so the ratio between them means something on a noisy host.
//!
//! Same discipline as the pipeline's hops: persistent messages of a real event's size,
//! publisher confirms (a pipelined window), a quorum queue, manual acks (batched with
//! `multiple`, as the services ack).

use super::report::Table;
use anyhow::Context;
use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Confirmation,
};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The baseline's queue, in the run's private vhost.
const QUEUE: &str = "bench.baseline";

/// The baseline's result.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    /// Messages sent and received.
    pub messages: usize,
    /// Body size in bytes.
    pub message_bytes: usize,
    /// Round trips per second (first publish to last consumed).
    pub messages_per_second: f64,
    /// RabbitMQ node CPU seconds per 1,000 messages (the whole node: anything else
    /// using the broker at the time counts too).
    pub rabbitmq_cpu_seconds_per_1000: Option<f64>,
    /// This client's CPU seconds per 1,000 messages (publisher and consumer).
    pub client_cpu_seconds_per_1000: Option<f64>,
    /// Every run's rate; the report is the median run.
    pub runs_messages_per_second: Vec<f64>,
}

impl BrokerReport {
    /// A printable table.
    pub fn table(&self) -> Table {
        Table::new(&["broker baseline", "value"])
            .row(&["messages", &self.messages.to_string()])
            .row(&["message size (bytes)", &self.message_bytes.to_string()])
            .row(&[
                "messages/s (median run)",
                &format!("{:.0}", self.messages_per_second),
            ])
            .row(&[
                "every run (messages/s)",
                &self
                    .runs_messages_per_second
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ])
            .row(&[
                "RabbitMQ CPU s / 1,000 messages",
                &super::report::opt_num(self.rabbitmq_cpu_seconds_per_1000, 3),
            ])
            .row(&[
                "client CPU s / 1,000 messages",
                &super::report::opt_num(self.client_cpu_seconds_per_1000, 3),
            ])
    }
}

/// Measures the baseline `runs` times in a private vhost of its own (created and
/// removed here), so nothing else runs on it, and reports the median run: one short run
/// on a shared host can be off by a third.
pub async fn measure(messages: usize, body: &[u8], runs: usize) -> anyhow::Result<BrokerReport> {
    let env = loa_platform::testing::TestEnv::new()
        .await
        .context("Failed to create the baseline's vhost (are PostgreSQL and RabbitMQ running?)")?;
    // Bounded: a lost message must not hang the benchmark.
    let limit = Duration::from_secs(60 + (messages / 1_000) as u64);
    let mut reports = Vec::new();
    for _ in 0..runs.max(1) {
        let report = tokio::time::timeout(limit, run(&env.amqp_url, messages, body))
            .await
            .map_err(|_| {
                anyhow::anyhow!("the broker baseline did not finish within {limit:?}")
            })??;
        reports.push(report);
    }
    let rates: Vec<f64> = reports.iter().map(|r| r.messages_per_second).collect();
    reports.sort_by(|a, b| a.messages_per_second.total_cmp(&b.messages_per_second));
    let mut median = reports.swap_remove(reports.len() / 2);
    median.runs_messages_per_second = rates;
    Ok(median)
}

/// Publishes `messages` bodies of `body` to a fresh quorum queue while one consumer
/// drains it, and reports the rate. The queue is deleted afterwards.
pub async fn run(amqp_url: &str, messages: usize, body: &[u8]) -> anyhow::Result<BrokerReport> {
    let queue = QUEUE;
    let publish_conn = loa_platform::amqp::connect(amqp_url, "loa-bench-publisher").await?;
    let consume_conn = loa_platform::amqp::connect(amqp_url, "loa-bench-consumer").await?;
    let pch = publish_conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    pch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .context("Failed to declare the baseline queue")?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;

    let cch = consume_conn.create_channel().await?;
    cch.basic_qos(512, BasicQosOptions { global: false })
        .await?;
    let mut consumer = cch
        .basic_consume(
            queue.into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumed = tokio::spawn(async move {
        let mut n = 0usize;
        while n < messages {
            let Some(delivery) = consumer.next().await else {
                break;
            };
            let delivery = delivery?;
            n += 1;
            if n.is_multiple_of(64) || n == messages {
                delivery.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
        anyhow::Ok((n, Instant::now()))
    });

    let cpu = super::procstat::snapshot(&[], "");
    let started = Instant::now();
    let window = 512;
    let mut pending = std::collections::VecDeque::with_capacity(window);
    for i in 0..messages {
        let confirm = pch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("baseline-{i}").into()),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= window {
            let c = pending.pop_front().expect("window is not empty");
            anyhow::ensure!(
                matches!(c.await?, Confirmation::Ack(None)),
                "the broker refused a baseline message"
            );
        }
    }
    for c in pending {
        anyhow::ensure!(
            matches!(c.await?, Confirmation::Ack(None)),
            "the broker refused a baseline message"
        );
    }
    let (n, finished) = consumed.await??;
    anyhow::ensure!(n == messages, "consumed {n} of {messages}");
    pch.queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .context("Failed to delete the baseline queue")?;
    let seconds = finished.duration_since(started).as_secs_f64();
    let used = cpu.usage_since(&[], "");
    let per_1000 = |s: f64| s * 1000.0 / messages as f64;
    Ok(BrokerReport {
        messages,
        message_bytes: body.len(),
        messages_per_second: messages as f64 / seconds,
        rabbitmq_cpu_seconds_per_1000: used.rabbitmq.map(per_1000),
        client_cpu_seconds_per_1000: used.harness.map(per_1000),
        runs_messages_per_second: Vec::new(),
    })
}

/// `loa bench broker` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Messages published and consumed.
    #[arg(long, default_value_t = 50_000)]
    pub messages: usize,
    /// Runs; the median one is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// `loa bench broker`: the baseline alone, with the machine it ran on.
pub async fn run_command(args: &BrokerArgs) -> anyhow::Result<super::Outcome> {
    let started_at = chrono::Utc::now();
    let machine = super::procstat::Machine::describe();
    let probe = super::system::BenchTenant {
        id: "bench-01".into(),
        token: String::new(),
    };
    let body = super::load::event_message_bytes(&[probe])?;
    let report = measure(args.messages.max(1), &body, args.runs).await?;
    let json = serde_json::json!({
        "subcommand": "broker",
        "started_at": started_at,
        "machine": machine,
        "messages": report.messages,
        "message_bytes": report.message_bytes,
        "messages_per_second": report.messages_per_second,
        "runs_messages_per_second": report.runs_messages_per_second,
        "rabbitmq_cpu_seconds_per_1000": report.rabbitmq_cpu_seconds_per_1000,
        "client_cpu_seconds_per_1000": report.client_cpu_seconds_per_1000,
        "method": "one connection publishing persistent, mandatory messages with a window of 512 pipelined \
                   publisher confirms to a durable quorum queue; one consumer (prefetch 512) acking every 64 \
                   with multiple; first publish to last delivery",
    });
    Ok(super::Outcome {
        name: "broker",
        tables: vec![("Broker baseline".to_owned(), report.table())],
        json,
        failure: None,
    })
}
