//! Accepted events become confirmed messages on `loa.events`.

use loa_contracts::{DossierEvent, Envelope};
use loa_platform::amqp::{topology, OutgoingMessage, PublishError, Publisher};
use rand::Rng;

/// Stamps the acceptance time and publishes every event, returning once RabbitMQ has
/// confirmed all of them.
pub async fn publish_events(
    publisher: &Publisher,
    events: Vec<DossierEvent>,
    traceparent: Option<&str>,
) -> Result<(), PublishError> {
    let now = chrono::Utc::now();
    let messages: Vec<OutgoingMessage> = events
        .into_iter()
        .map(|mut event| {
            event.accepted_at = Some(now);
            let trace = traceparent
                .map(str::to_owned)
                .unwrap_or_else(new_traceparent);
            OutgoingMessage {
                exchange: topology::EX_EVENTS.to_owned(),
                routing_key: event.routing_key(),
                message_id: event.event_id.clone(),
                headers: vec![(topology::H_TRACEPARENT.to_owned(), trace)],
                body: Envelope::DossierEventV1(event).to_bytes(),
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let result = publisher.publish_all(&messages).await;
    crate::metrics::publish_seconds(started.elapsed().as_secs_f64());
    result
}

/// Accepts an incoming W3C `traceparent` only if well-formed.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && parts[0].len() == 2
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[1] != "00000000000000000000000000000000"
}

/// Starts a new trace: `00-<trace id>-<span id>-01`.
pub fn new_traceparent() -> String {
    let mut rng = rand::rng();
    let trace: u128 = rng.random::<u128>().max(1);
    let span: u64 = rng.random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trace_contexts_are_valid_and_garbage_is_not() {
        assert!(valid_traceparent(&new_traceparent()));
        assert!(!valid_traceparent("00-xyz-1-01"));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-0000000000000001-01"
        ));
    }
}
