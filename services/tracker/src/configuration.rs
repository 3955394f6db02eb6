//! The tracker's settings (`[tracker]` in the TOML file, `LOA_TRACKER__*` in the
//! environment).

use loa_platform::Secret;
use serde::Deserialize;

/// The development lookup secret. Anyone who knows it can compute lookup links from
/// dossier codes, so start-up warns loudly while it is in use.
pub const DEFAULT_LOOKUP_SECRET: &str = "loa-dev-lookup-secret";

/// How the tracker consumes, relays and serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TrackerSettings {
    /// HTTP listen address (dossier API, public lookup page, QR codes, health, metrics).
    pub bind: String,
    /// Most messages applied in one Postgres transaction. A message is one event or
    /// intake's pack of up to `intake.pack_events` (32) events of a tenant and status,
    /// so a batch holds up to 2,048 events by default: more made the tracker's peak
    /// memory in `loa bench pipeline` double (130–140 MB at 256) without more speed.
    pub batch_size: usize,
    /// How long a batch waits for more events after its first one, in milliseconds.
    /// 0 (the default) takes what has already arrived and goes: under load the
    /// deliveries that arrive while a batch is applied make the next batch big, and at
    /// low load no event waits (`loa bench latency` measured a p99 at 1,000 events/s
    /// about a third lower than with 5 ms, at the same saturated throughput).
    pub batch_wait_ms: u64,
    /// Unacked messages the broker may push ahead (at least `batch_size`).
    pub prefetch: u16,
    /// Batches applied at once, each in its own transaction (1: one after the other).
    /// More overlap one batch's round trips with the next one's; events of one
    /// dossier stay in order through its row lock, and out-of-order arrivals are
    /// handled as from several replicas.
    pub batches_in_flight: usize,
    /// HMAC key of the lookup tokens in public links and QR codes. Changing it breaks
    /// every link already printed, so set it once per deployment and keep it.
    pub lookup_secret: Secret,
    /// Whether this process relays the outbox to RabbitMQ. Only crash-safety tests turn
    /// it off, to leave planned notifications in the outbox.
    pub relay_enabled: bool,
    /// Most outbox rows published (and confirmed) per relay transaction.
    pub relay_batch: usize,
    /// Most notifications of one tenant and lane packed into one AMQP message
    /// (`notification_batch.v1`); 1 sends each on its own. Packing takes the
    /// per-message cost of the broker's busiest hop off each notification. A
    /// notifier batch takes up to its `batch_size` messages, so up to `batch_size ×
    /// relay_pack` requests: 16 already saves nearly all of the broker's work
    /// (`loa bench pipeline`: the same throughput as 64) and keeps that bounded.
    pub relay_pack: usize,
    /// Public lookup page requests allowed per client address and minute, sustained
    /// (`429` with `Retry-After` beyond; 0 turns the limit off). The client address is
    /// the TCP peer, or what `http.client_ip_header` says when a trusted proxy sent it.
    pub lookup_rate_per_minute: u32,
    /// Lookup requests a client may make at once on top of the sustained rate (a
    /// citizen reloading, a family sharing a router).
    pub lookup_burst: u32,
    /// Seconds between two overdue sweeps (marking dossiers past their appointment and
    /// counting them for `loa_tracker_overdue_dossiers`); at least 1.
    pub overdue_sweep_secs: u64,
    /// Seconds between two retention sweeps (erasing the personal data of dossiers
    /// past their tenant's `retention_days`); at least 1.
    pub retention_sweep_secs: u64,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8081".to_owned(),
            batch_size: 64,
            batch_wait_ms: 0,
            prefetch: 128,
            batches_in_flight: 1,
            lookup_secret: Secret::new(DEFAULT_LOOKUP_SECRET),
            relay_enabled: true,
            relay_batch: 500,
            relay_pack: 16,
            lookup_rate_per_minute: 60,
            lookup_burst: 20,
            overdue_sweep_secs: 60,
            retention_sweep_secs: 3_600,
        }
    }
}
