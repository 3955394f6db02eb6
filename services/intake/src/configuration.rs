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
        }
    }
}
