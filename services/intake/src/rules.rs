//! What intake checks in every event, the same on HTTP and on AMQP: the contract's own
//! validation ([`DossierEvent::from_json`]), then the times against the clock
//! ([`DossierEvent::check_times`]).

use crate::IntakeSettings;
use chrono::{DateTime, Duration, Utc};
use loa_contracts::{DossierEvent, ValidationError};
use serde_json::Value;

/// The checks of one intake, from its settings.
#[derive(Debug, Clone, Copy)]
pub struct EventRules {
    /// Largest accepted event, in bytes.
    pub max_event_bytes: usize,
    /// How far ahead of our clock a source's clock may run.
    pub clock_skew: Duration,
}

impl EventRules {
    /// The rules `settings` describe.
    pub fn from_settings(settings: &IntakeSettings) -> Self {
        Self {
            max_event_bytes: settings.max_event_bytes,
            clock_skew: settings.clock_skew(),
        }
    }

    /// Validates and normalises one event as of `now`; a refusal names its field.
    pub fn parse(
        &self,
        value: &Value,
        now: DateTime<Utc>,
    ) -> Result<DossierEvent, ValidationError> {
        let event = DossierEvent::from_json(value)?;
        event.check_times(now, self.clock_skew)?;
        Ok(event)
    }
}
