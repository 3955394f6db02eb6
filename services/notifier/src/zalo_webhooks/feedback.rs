//! Ratings given in Zalo, the notifier's half: a `user_feedback` on a message sent
//! with a service-rating template is kept in `notifier.citizen_feedback` by the
//! webhook's own transaction (see `subscribers::record_feedback`), and the relay
//! [`RATINGS`] hands each kept rating to the tracker on `loa.citizen`
//! (`citizen_feedback.v1`, published with confirms, then marked forwarded), with the
//! dossier the rated message was about (our delivery of it, found by the
//! `tracking_id` Zalo echoes).
//!
//! A rating whose message names no delivery of ours, or no dossier, or carries no
//! readable star count, is marked forwarded without being published: there is no
//! dossier to count it for. A rating published twice (a crash between the confirm
//! and the mark) counts once: the tracker keys it by the rated message.

use super::relay::{Params, Relay};
use loa_contracts::{CitizenFeedback, Envelope};
use loa_platform::amqp::{topology, OutgoingMessage};
use std::time::Duration;
use tokio_postgres::Row;

/// Forwards kept ratings to the tracker, each with the dossier of the rated message.
pub(crate) const RATINGS: Relay = Relay {
    what: "ratings given in Zalo",
    connection: "loa-notifier-feedback",
    unforwarded: "SELECT f.tenant, f.msg_id, f.rating, f.note, f.submitted_at, d.dossier_code
                    FROM (SELECT tenant, msg_id, tracking_id, rating, note, submitted_at, received_at
                            FROM notifier.citizen_feedback
                           WHERE forwarded_at IS NULL
                           ORDER BY received_at
                           LIMIT $1
                             FOR UPDATE SKIP LOCKED) f
                    LEFT JOIN notifier.deliveries d
                           ON d.notification_id = f.tracking_id AND d.tenant = f.tenant
                   ORDER BY f.received_at",
    message: rating_message,
    mark_forwarded: "UPDATE notifier.citizen_feedback SET forwarded_at = now()
                      WHERE (tenant, msg_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    keys: rating_keys,
    forwarded: |_| {},
    idle: Duration::from_millis(500),
};

/// A kept rating's message, when it names a dossier of ours and a star count.
fn rating_message(row: &Row) -> Option<OutgoingMessage> {
    let tenant: String = row.get(0);
    let msg_id: String = row.get(1);
    let stars = row
        .get::<_, Option<i16>>(2)
        .and_then(|s| u8::try_from(s).ok());
    let dossier_code: Option<String> = row.get(5);
    let (Some(stars), Some(dossier_code)) = (stars, dossier_code) else {
        tracing::info!(
            tenant = %tenant,
            "A rating given in Zalo names no dossier of ours (no delivery for its tracking id, or no stars); not counted."
        );
        return None;
    };
    let feedback = CitizenFeedback {
        tenant: tenant.clone(),
        dossier_code,
        msg_id: msg_id.clone(),
        stars,
        note: row.get(3),
        submitted_at: row.get(4),
    };
    Some(OutgoingMessage {
        exchange: topology::EX_CITIZEN.to_owned(),
        routing_key: feedback.routing_key(),
        message_id: format!("feedback-{tenant}-{msg_id}"),
        body: Envelope::CitizenFeedbackV1(feedback).to_bytes(),
        headers: Vec::new(),
    })
}

/// The ratings' keys: their tenants and message ids.
fn rating_keys(rows: &[Row]) -> Params {
    let column = |i| rows.iter().map(|r| r.get(i)).collect::<Vec<String>>();
    vec![Box::new(column(0)), Box::new(column(1))]
}
