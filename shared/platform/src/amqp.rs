//! RabbitMQ plumbing: connecting with time-outs, the topology, a publisher that only
//! reports success after the broker confirmed, a batch consumer that acks only
//! after the handler's work is durable and dead-letters with a reason, and the
//! depth and consumers of every consumed queue as metrics.
//!
//! Every await on the broker is wrapped in a time-out (lapin can hang on a dying
//! connection), and every loop rebuilds its connection from scratch after any error
//! instead of trusting in-place recovery.

pub mod asyncapi;
pub mod consumer;
pub mod publisher;
pub mod queue_health;
pub mod topology;

pub use consumer::{run_batch_consumer, BatchConsumerSettings, Disposition};
pub use publisher::{OutgoingMessage, PublishError, Publisher};

use lapin::{uri::AMQPUri, Connection, ConnectionProperties};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// How long a connect, declare, publish or confirm may take before we give up on the
/// connection and rebuild it.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest AMQP frame a connection negotiates unless its URL names another
/// (`?frame_max=`). lapin keeps 32 frames of this size for each direction of every
/// connection, allocated and zeroed as it connects: at RabbitMQ's default of 128 KiB
/// that is 8 MiB a connection, 48 of the notifier's first 64 MiB of memory with its
/// six. At 32 KiB it is 2 MiB, and a message larger than a frame (few of Loa's are)
/// travels as several body frames.
pub const FRAME_MAX: u32 = 32 * 1024;

/// Opens a connection named `name` (visible in the management UI), each attempt
/// bounded by [`BROKER_TIMEOUT`].
///
/// `url` is one AMQP URI (a single node, or a cluster behind one DNS name), or the
/// URIs of a cluster's nodes separated by commas
/// (`amqp://loa:…@rabbitmq-0:5672/loa,amqp://loa:…@rabbitmq-1:5672/loa`). The nodes
/// are tried in turn from a random one, so replicas spread over the cluster and a
/// reconnection after a node failure finds a live node. Errors name the nodes tried,
/// never their credentials.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let nodes = nodes(url);
    anyhow::ensure!(!nodes.is_empty(), "the RabbitMQ URL (amqp_url) is empty");
    let first = rand::random_range(0..nodes.len());
    let mut failures = Vec::with_capacity(nodes.len());
    for i in 0..nodes.len() {
        let node = nodes[(first + i) % nodes.len()];
        let uri = match with_frame_max(node) {
            Ok(uri) => uri,
            Err(e) => {
                failures.push(format!("{}: {e}", without_credentials(node)));
                continue;
            }
        };
        let props = ConnectionProperties::default().with_connection_name(name.into());
        match tokio::time::timeout(BROKER_TIMEOUT, Connection::connect_uri(uri, props)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => failures.push(format!("{}: {e}", without_credentials(node))),
            Err(_) => failures.push(format!("{}: timed out", without_credentials(node))),
        }
    }
    anyhow::bail!("no RabbitMQ node answered ({})", failures.join("; "))
}

/// The node URIs of an `amqp_url`: one, or several separated by commas.
pub fn nodes(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// A node's URI, parsed, with [`FRAME_MAX`] unless it names a `frame_max` itself.
fn with_frame_max(node: &str) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = node.parse()?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Ok(uri)
}

/// A node URI without its user and password, for messages.
fn without_credentials(node: &str) -> String {
    match (node.split_once("://"), node.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &node[at + 1..]),
        _ => node.to_owned(),
    }
}

/// Runs a broker operation with [`BROKER_TIMEOUT`].
pub async fn timed<T>(
    what: &'static str,
    fut: impl std::future::Future<Output = lapin::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(BROKER_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("RabbitMQ {what} failed"))),
        Err(_) => Err(anyhow::anyhow!("RabbitMQ {what} timed out")),
    }
}

/// Whether a component currently holds a working broker connection; read by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus(Arc<AtomicBool>);

impl BrokerStatus {
    /// Records the connection state.
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }

    /// The last recorded state.
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sleeps for an exponential back-off step (0.1 s doubling to 5 s), or returns early
/// when cancelled. Returns `false` when cancelled.
pub async fn backoff(attempt: u32, cancel: &tokio_util::sync::CancellationToken) -> bool {
    let ms = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
    }
}
