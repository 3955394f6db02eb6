//! A publisher that reports success only after RabbitMQ confirmed every message.
//!
//! Messages are persistent and `mandatory`; a batch is published pipelined on one
//! confirm-mode channel and its confirms awaited together. A returned (unroutable)
//! message fails the whole batch: lapin may attach a return to the wrong confirm when
//! acks are coalesced, so the only safe reading of a batch with a return is "unknown",
//! and downstream consumers are idempotent.

use super::{timed, topology, BrokerStatus, BROKER_TIMEOUT};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Confirmation, Connection,
};
use tokio::sync::Mutex;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Target exchange.
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// Stable id (event or notification id), for dedupe and return correlation.
    pub message_id: String,
    /// String headers (trace context, dead-letter reason).
    pub headers: Vec<(String, String)>,
}

/// Why a publish is not known to have succeeded. The caller must treat it as "maybe
/// not published" and retry (consumers dedupe).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker could not be reached or the channel failed.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused (nack) or could not route the message.
    #[error("broker refused the message: {0}")]
    Refused(String),
}

struct Link {
    _connection: Connection,
    channel: Channel,
}

/// A lazily connected, self-healing confirming publisher. Cheap to share (`Arc`).
pub struct Publisher {
    url: String,
    name: String,
    link: Mutex<Option<Link>>,
    status: BrokerStatus,
}

impl Publisher {
    /// Creates a publisher; it connects on first use.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            link: Mutex::new(None),
            status: BrokerStatus::default(),
        }
    }

    /// Connection state for readiness checks.
    pub fn status(&self) -> BrokerStatus {
        self.status.clone()
    }

    /// Connects now if not connected (used at start-up and by `/readyz`).
    pub async fn ensure_connected(&self) -> Result<(), PublishError> {
        self.channel().await.map(|_| ())
    }

    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.channel.status().connected() {
                return Ok(l.channel.clone());
            }
        }
        *link = None;
        self.status.set(false);
        let fresh = self
            .open()
            .await
            .map_err(|e| PublishError::Unavailable(format!("{e:#}")))?;
        let channel = fresh.channel.clone();
        *link = Some(fresh);
        self.status.set(true);
        Ok(channel)
    }

    async fn open(&self) -> anyhow::Result<Link> {
        let connection = super::connect(&self.url, &self.name).await?;
        let channel = timed("channel.open", connection.create_channel()).await?;
        topology::declare(&channel).await?;
        timed(
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions { nowait: false }),
        )
        .await?;
        Ok(Link {
            _connection: connection,
            channel,
        })
    }

    async fn forget(&self) {
        *self.link.lock().await = None;
        self.status.set(false);
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(message)).await
    }

    /// Publishes every message pipelined and returns once all are confirmed. Any
    /// failure fails the batch (some may still have been stored: consumers dedupe).
    pub async fn publish_all(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let items: Vec<(&OutgoingMessage, Option<std::time::Duration>)> =
            messages.iter().map(|m| (m, None)).collect();
        self.publish_items(&items).await
    }

    /// Like [`Self::publish_all`], each message with its own `expiration` (per-message
    /// TTL): a jittered wait in a delay queue.
    pub async fn publish_all_expiring(
        &self,
        messages: &[(OutgoingMessage, std::time::Duration)],
    ) -> Result<(), PublishError> {
        let items: Vec<(&OutgoingMessage, Option<std::time::Duration>)> =
            messages.iter().map(|(m, ttl)| (m, Some(*ttl))).collect();
        self.publish_items(&items).await
    }

    async fn publish_items(
        &self,
        messages: &[(&OutgoingMessage, Option<std::time::Duration>)],
    ) -> Result<(), PublishError> {
        if messages.is_empty() {
            return Ok(());
        }
        let channel = self.channel().await?;
        let result = tokio::time::timeout(BROKER_TIMEOUT, publish_on(&channel, messages)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ PublishError::Refused(_))) => Err(e),
            Ok(Err(e)) => {
                self.forget().await;
                Err(e)
            }
            Err(_) => {
                self.forget().await;
                Err(PublishError::Unavailable(
                    "timed out waiting for publisher confirms".into(),
                ))
            }
        }
    }
}

async fn publish_on(
    channel: &Channel,
    messages: &[(&OutgoingMessage, Option<std::time::Duration>)],
) -> Result<(), PublishError> {
    let mut confirms = Vec::with_capacity(messages.len());
    for &(m, expiration) in messages {
        let confirm = channel
            .basic_publish(
                m.exchange.as_str().into(),
                m.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,  // an unroutable message comes back instead of vanishing
                    immediate: false, // not supported by RabbitMQ
                },
                &m.body,
                match expiration {
                    Some(ttl) => properties(m).with_expiration(ttl.as_millis().to_string().into()),
                    None => properties(m),
                },
            )
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        confirms.push(confirm);
    }
    let mut refused = None;
    for confirm in confirms {
        match confirm
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?
        {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => refused = Some("unroutable (returned by the broker)"),
            Confirmation::Nack(_) => refused = Some("negatively acknowledged by the broker"),
            Confirmation::NotRequested => refused = Some("channel not in confirm mode"),
        }
    }
    match refused {
        None => Ok(()),
        Some(why) => Err(PublishError::Refused(why.into())),
    }
}

fn properties(m: &OutgoingMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    BasicProperties::default()
        .with_delivery_mode(2) // persistent
        .with_content_type("application/json".into())
        .with_message_id(m.message_id.as_str().into())
        .with_timestamp(now)
        .with_headers(headers)
}
