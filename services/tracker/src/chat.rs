//! Chat lookups, the tracker's half: consumes `tracker.citizen` (`chat_lookup.v1`,
//! relayed by the notifier from a citizen's "tra cứu <mã>" to the OA) and writes the
//! answer, a `chat_reply` notification to the Zalo user who asked, to the outbox. The
//! queue also carries ratings given in Zalo (`citizen_feedback.v1`), handed to
//! [`crate::ratings::apply_zalo_feedback`].
//!
//! The answer tells the dossier's status in the citizen's words, its appointment date
//! and its lookup link only when one of the phones the notifier linked to that user
//! is a phone of the dossier (its keyed hash is in `tracker.dossier_phones`, see
//! [`crate::search`]); to anyone else, and for a code no dossier has, it says the same
//! polite words about how to look a dossier up, so the reply reveals nothing about
//! the dossier, not even whether it exists. The reply's notification id comes from
//! the tenant and the message id, so a lookup delivered twice is answered once.

use crate::{
    search::phone_key,
    store::{insert_outbox, lookup_url},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use lapin::message::Delivery;
use loa_contracts::{
    templates, time::format_date_vn, ChatLookup, DossierStatus, Envelope, Lane, NotificationKind,
    NotificationRequest, PhoneNumber, Recipient,
};
use loa_platform::{amqp::Disposition, LiveTenants, Secret};
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::{Arc, LazyLock};
use tokio::sync::Notify;

static LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_chat_lookups_total",
        "Chat lookups answered, by tenant and outcome: answered (the user is linked to \
         the dossier), not_linked (the dossier exists, the user is not linked to it), \
         not_found (no such dossier). The last two get the same reply.",
        &["tenant", "outcome"]
    )
    .expect("metric registers once")
});

/// Creates a tenant's series at zero.
pub fn init_metrics(tenant: &str) {
    for outcome in ["answered", "not_linked", "not_found"] {
        LOOKUPS.with_label_values(&[tenant, outcome]);
    }
}

/// Answers chat lookups.
pub struct LookupHandler {
    /// The tracker's database.
    pub pool: Pool,
    /// Configured tenants: a lookup for any other is dead-lettered.
    pub tenants: LiveTenants,
    /// Key of the phone hashes (and of lookup tokens).
    pub lookup_secret: Secret,
    /// Base of lookup links.
    pub public_base_url: String,
    /// Woken after answers are written, so the relay publishes them at once.
    pub relay_wake: Arc<Notify>,
}

/// What a dossier lookup found, before it is put in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The user is linked to the dossier.
    Linked {
        /// The code as stored.
        code: String,
        /// The current status.
        status: DossierStatus,
        /// The appointment, if any.
        due_at: Option<DateTime<Utc>>,
        /// The lookup link.
        lookup_url: String,
    },
    /// The dossier exists; the user is not linked to it.
    NotLinked,
    /// No dossier has that code.
    NotFound,
}

impl Finding {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Linked { .. } => "answered",
            Self::NotLinked => "not_linked",
            Self::NotFound => "not_found",
        }
    }

    /// The reply's text, as the citizen reads it.
    pub fn reply(&self, typed_code: &str) -> String {
        match self {
            Self::Linked {
                code,
                status,
                due_at,
                lookup_url,
            } => {
                let due = due_at
                    .filter(|_| !status.is_terminal() && *status != DossierStatus::ResultReady)
                    .map(|d| format_date_vn(&d));
                templates::chat_reply_found(code, status.citizen_vi(), due.as_deref(), lookup_url)
            }
            Self::NotLinked | Self::NotFound => templates::chat_reply_not_linked(typed_code),
        }
    }
}

impl LookupHandler {
    /// Answers a batch: one transaction writes every answer to the outbox; acks after
    /// the commit, gives the batch back when it fails.
    pub async fn handle(&self, batch: &[Delivery]) -> Vec<Disposition> {
        let tenants = self.tenants.current();
        let mut dispositions = vec![Disposition::Ack; batch.len()];
        let mut lookups: Vec<(usize, ChatLookup)> = Vec::new();
        for (i, delivery) in batch.iter().enumerate() {
            match Envelope::from_bytes(&delivery.data) {
                Ok(Envelope::ChatLookupV1(lookup)) if tenants.get(&lookup.tenant).is_some() => {
                    lookups.push((i, lookup));
                }
                Ok(Envelope::ChatLookupV1(_)) => {
                    dispositions[i] =
                        Disposition::DeadLetter("a chat lookup of an unknown tenant".to_owned());
                }
                // Ratings given in Zalo share the queue (see `crate::ratings`).
                Ok(Envelope::CitizenFeedbackV1(feedback)) => {
                    dispositions[i] = match tenants.get(&feedback.tenant) {
                        Some(tenant) => {
                            self.count_feedback(&feedback, tenant.rating_window_days)
                                .await
                        }
                        None => Disposition::DeadLetter(
                            "a rating given in Zalo of an unknown tenant".to_owned(),
                        ),
                    };
                }
                Ok(_) => {
                    dispositions[i] = Disposition::DeadLetter(
                        "unexpected message type on the chat lookups queue".to_owned(),
                    );
                }
                Err(e) => {
                    dispositions[i] = Disposition::DeadLetter(format!("undecodable body: {e}"));
                }
            }
        }
        if lookups.is_empty() {
            return dispositions;
        }
        match self.answer(&lookups).await {
            Ok(findings) => {
                for ((_, lookup), finding) in lookups.iter().zip(&findings) {
                    LOOKUPS
                        .with_label_values(&[&lookup.tenant, finding.label()])
                        .inc();
                }
                self.relay_wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, lookups = lookups.len(), "Failed to answer chat lookups; returning them to the queue.");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                for (i, _) in &lookups {
                    dispositions[*i] = Disposition::Retry;
                }
            }
        }
        dispositions
    }

    /// Records a rating given in Zalo as its dossier's; gives it back when the
    /// database fails.
    async fn count_feedback(
        &self,
        feedback: &loa_contracts::CitizenFeedback,
        window_days: u32,
    ) -> Disposition {
        match crate::ratings::apply_zalo_feedback(&self.pool, feedback, window_days).await {
            Ok(_) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to record a rating given in Zalo; returning it to the queue.");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Disposition::Retry
            }
        }
    }

    async fn answer(&self, lookups: &[(usize, ChatLookup)]) -> anyhow::Result<Vec<Finding>> {
        let mut client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        let now = Utc::now();
        let mut findings = Vec::with_capacity(lookups.len());
        let mut replies = Vec::with_capacity(lookups.len());
        for (_, lookup) in lookups {
            let finding = self.find(&tx, lookup).await?;
            let text = finding.reply(&lookup.dossier_code);
            replies.push(NotificationRequest {
                notification_id: lookup.reply_id(),
                tenant: lookup.tenant.clone(),
                kind: NotificationKind::ChatReply,
                recipient: Recipient {
                    phone: None,
                    zalo_user_id: Some(lookup.zalo_user_id.clone()),
                },
                params: [("text".to_owned(), text)].into(),
                lane: Lane::Transactional,
                dossier_code: match &finding {
                    Finding::Linked { code, .. } => Some(code.clone()),
                    _ => None,
                },
                not_before: None,
                trace_context: None,
                event_accepted_at: None,
                created_at: now,
                broadcast: None,
            });
            findings.push(finding);
        }
        insert_outbox(&tx, &replies).await?;
        tx.commit()
            .await
            .context("Failed to commit chat lookup answers")?;
        Ok(findings)
    }

    /// What a lookup finds: the dossier by its code as typed (or upper-cased, as
    /// codes are printed), and whether one of the user's phones is the dossier's.
    async fn find(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        lookup: &ChatLookup,
    ) -> anyhow::Result<Finding> {
        let keys: Vec<String> = lookup
            .linked_phones
            .iter()
            .filter_map(|p| PhoneNumber::parse(p).ok())
            .map(|p| phone_key(&self.lookup_secret, &lookup.tenant, &p))
            .collect();
        let upper = lookup.dossier_code.to_uppercase();
        let row = tx
            .query_opt(
                "SELECT d.dossier_code, d.status, d.due_at, d.lookup_token,
                        EXISTS (SELECT 1 FROM tracker.dossier_phones p
                                 WHERE p.tenant = d.tenant AND p.dossier_code = d.dossier_code
                                   AND p.phone_key = ANY($4))
                   FROM tracker.dossiers d
                  WHERE d.tenant = $1 AND d.dossier_code IN ($2, $3)
                  ORDER BY d.dossier_code = $2 DESC
                  LIMIT 1",
                &[&lookup.tenant, &lookup.dossier_code, &upper, &keys],
            )
            .await
            .context("Failed to look a dossier up for a chat lookup")?;
        let Some(row) = row else {
            return Ok(Finding::NotFound);
        };
        if !row.get::<_, bool>(4) {
            return Ok(Finding::NotLinked);
        }
        let status = DossierStatus::from_code(i64::from(row.get::<_, i16>(1)))
            .context("a stored dossier status out of range")?;
        let token: String = row.get(3);
        Ok(Finding::Linked {
            code: row.get(0),
            status,
            due_at: row.get(2),
            lookup_url: lookup_url(&self.public_base_url, &token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_user_reads_the_status_the_date_and_the_link() {
        let finding = Finding::Linked {
            code: "H56-261128-0001".into(),
            status: DossierStatus::Processing,
            due_at: Some("2026-12-15T03:00:00Z".parse().unwrap()),
            lookup_url: "https://tracuu.example.vn/tra-cuu/abc".into(),
        };
        let text = finding.reply("h56-261128-0001");
        assert!(
            text.contains("Hồ sơ H56-261128-0001: Hồ sơ đang được giải quyết."),
            "{text}"
        );
        assert!(text.contains("Ngày hẹn trả kết quả: 15/12/2026."), "{text}");
        assert!(
            text.contains("https://tracuu.example.vn/tra-cuu/abc"),
            "{text}"
        );
    }

    #[test]
    fn not_linked_and_not_found_read_the_same() {
        assert_eq!(
            Finding::NotLinked.reply("X-1"),
            Finding::NotFound.reply("X-1")
        );
        assert!(!Finding::NotFound.reply("X-1").contains("tra-cuu/"));
    }

    #[test]
    fn a_returned_result_has_no_appointment_left() {
        let finding = Finding::Linked {
            code: "C".into(),
            status: DossierStatus::ResultReturned,
            due_at: Some("2026-12-15T03:00:00Z".parse().unwrap()),
            lookup_url: "u".into(),
        };
        assert!(!finding.reply("C").contains("Ngày hẹn"));
    }
}
