//! Intake settings.

use serde::Deserialize;

/// Intake settings (`[intake]` in the config file, `LOA_INTAKE__*` in the environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IntakeSettings {
    /// HTTP listen address.
    pub bind: String,
    /// Most events in one `POST /v1/events/batch`.
    pub max_batch: usize,
    /// Largest accepted event, in bytes (also the body limit of `POST /v1/events`).
    pub max_event_bytes: usize,
    /// Whether to consume the AMQP ingress queue (`loa.ingress`).
    pub ingress_enabled: bool,
    /// Unacked ingress deliveries the broker may push ahead.
    pub ingress_prefetch: u16,
    /// Ingress messages validated and forwarded together.
    pub ingress_batch: usize,
    /// Most events of one tenant and status packed into one message on `loa.events`
    /// (`dossier_event_batch.v1`); 1 publishes each event alone. The broker's work is
    /// per message, so packing is most of the first hop's cost saved.
    pub pack_events: usize,
    /// How far ahead of this server's clock an event's `occurred_at` / `received_at`
    /// may be, in seconds: room for a source's clock running a little fast. Anything
    /// later is refused (`422`, `time_in_future`): an event dated in the future stays
    /// its dossier's newest and makes every real event after it stale. At most a day.
    pub clock_skew_secs: u64,
}

/// The largest accepted `clock_skew_secs`: more would let a wrong time zone through.
pub const MAX_CLOCK_SKEW_SECS: u64 = 24 * 3600;

impl IntakeSettings {
    /// Refuses settings intake cannot work with, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.clock_skew_secs <= MAX_CLOCK_SKEW_SECS,
            "intake.clock_skew_secs must be at most {MAX_CLOCK_SKEW_SECS} (one day)"
        );
        anyhow::ensure!(self.max_batch > 0, "intake.max_batch must be at least 1");
        Ok(())
    }

    /// The allowed clock skew as a duration.
    pub fn clock_skew(&self) -> chrono::Duration {
        // `validate` refuses more than a day; the bound keeps the conversion exact.
        let secs = self.clock_skew_secs.min(MAX_CLOCK_SKEW_SECS);
        chrono::Duration::seconds(i64::try_from(secs).expect("a day of seconds fits"))
    }
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8080".into(),
            max_batch: 500,
            max_event_bytes: 64 * 1024,
            ingress_enabled: true,
            ingress_prefetch: 256,
            ingress_batch: 128,
            pack_events: 32,
            clock_skew_secs: 600,
        }
    }
}
