//! The states a delivery row can be in (`notifier.deliveries.status`): one typed
//! vocabulary for the engine, the receipts, the scheduler and the APIs, so no state is
//! a string literal spelled in several files. The table's `CHECK` constraint lists the
//! same names.

use std::fmt;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Claimed by a sender (with a lease while it is at it), or given back to the
    /// queue as it is.
    Sending,
    /// Zalo accepted it.
    Sent,
    /// The phone received it (a delivery receipt).
    Delivered,
    /// The citizen opened it.
    Seen,
    /// It failed for good and was dead-lettered (a replay may claim it again).
    Failed,
    /// It waits in a delay queue, or was republished by the scheduler.
    Retrying,
    /// Parked until a wall-clock time (night ban, quota day, `not_before`).
    Deferred,
    /// Parked while its tenant is paused.
    Held,
    /// Parked until its receipt or its recheck time: Zalo may have it.
    Ambiguous,
    /// A broadcast's message left unsent for good, and not an error: the broadcast
    /// was cancelled or ended, the citizen opted out or reached the monthly cap of
    /// promotions (the reason is in `last_error`). Never claimed again.
    Skipped,
    /// Cancelled by an admin while it was parked: never sent, never claimed again
    /// (a request for it coming again, from the tracker's relay or a replay, is
    /// dropped as already settled), and not a failure.
    Cancelled,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 11] = [
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Seen,
        Self::Failed,
        Self::Retrying,
        Self::Deferred,
        Self::Held,
        Self::Ambiguous,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Seen => "seen",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Deferred => "deferred",
            Self::Held => "held",
            Self::Ambiguous => "ambiguous",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Looks a status up by its stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the message reached Zalo: never claimed or sent again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Delivered | Self::Seen)
    }

    /// Whether nothing more will be done with it: it reached Zalo, was skipped, or
    /// was cancelled.
    pub fn is_settled(self) -> bool {
        self.is_final() || matches!(self, Self::Skipped | Self::Cancelled)
    }

    /// Whether the request waits in the table (its AMQP message is gone) for the
    /// scheduler, a resume or a receipt.
    pub fn is_parked(self) -> bool {
        matches!(self, Self::Deferred | Self::Held | Self::Ambiguous)
    }

    /// Whether a receipt has moved it on (`delivered`, `seen`): a later receipt only
    /// fills in times.
    pub fn is_received(self) -> bool {
        matches!(self, Self::Delivered | Self::Seen)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for DeliveryStatus {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let name = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        Self::from_name(name).ok_or_else(|| format!("unknown delivery status `{name}`").into())
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_stored_name() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::from_name(s.as_str()), Some(s), "{s}");
        }
        assert_eq!(DeliveryStatus::from_name("pending"), None);
    }

    #[test]
    fn final_parked_and_received_statuses_are_the_documented_ones() {
        use DeliveryStatus::*;
        let table = [
            // (status, final, parked, received)
            (Sending, false, false, false),
            (Sent, true, false, false),
            (Delivered, true, false, true),
            (Seen, true, false, true),
            (Failed, false, false, false),
            (Retrying, false, false, false),
            (Deferred, false, true, false),
            (Held, false, true, false),
            (Ambiguous, false, true, false),
            (Skipped, false, false, false),
            (Cancelled, false, false, false),
        ];
        assert_eq!(table.len(), DeliveryStatus::ALL.len());
        for (s, is_final, parked, received) in table {
            assert_eq!(
                (s.is_final(), s.is_parked(), s.is_received()),
                (is_final, parked, received),
                "{s}"
            );
        }
        assert!(Skipped.is_settled() && Cancelled.is_settled() && Sent.is_settled());
        assert!(
            !Failed.is_settled(),
            "a replay may claim a failed one again"
        );
    }
}
