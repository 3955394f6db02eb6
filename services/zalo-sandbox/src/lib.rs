//! A faithful local stand-in for Zalo's OA, ZNS and OAuth APIs.
//!
//! The demo, the tests and the benchmarks talk to this sandbox instead of Zalo; the real
//! Zalo is one base-URL change away, so paths, bodies, string-typed numbers, HTTP 200
//! with negative error codes, expiring access tokens and single-use rotating refresh
//! tokens all match Zalo. On top of that it records every accepted message, emits signed
//! webhooks (delivery receipts, seen, follow / unfollow, chat, shared details, ratings)
//! and injects faults, rate limits, quotas and a night window on request through
//! `/_sandbox/…`. It holds to what Zalo does, no more and no less: its events carry
//! only Zalo's fields, it accepts what Zalo accepts, and it can answer the odd shapes
//! Zalo's real answers take (quota figures of `"0"`, token answers without tokens), so
//! a client tested against it learns no rule that Zalo does not have.
//!
//! State lives in memory: the sandbox owns no database. Tokens are signed rather than
//! stored, so a notifier that persisted its rotated refresh token keeps working across
//! a sandbox restart.
//!
//! # Layout
//!
//! - [`startup`]: [`Application`]: binds the listener, runs the server and the webhook
//!   dispatcher until cancelled.
//! - [`apps`]: the Zalo apps / OAs registered from the tenants, with their templates.
//! - [`tokens`]: stateless signed refresh and access tokens.
//! - [`sandbox`]: the shared in-memory state and the send pipeline every send path uses.
//! - [`limits`]: token buckets, daily quotas and the night window.
//! - [`faults`]: injected errors, latency and hangs.
//! - [`clock`]: the adjustable sandbox clock.
//! - [`webhooks`]: event bodies, the `X-ZEvent-Signature` and the background dispatcher.
//! - [`zalo`]: the Zalo answer envelope and error codes.
//! - [`routes`]: the HTTP handlers (Zalo paths and `/_sandbox/…` control paths).
//! - [`metrics`]: Prometheus counters.

pub mod apps;
pub mod clock;
pub mod faults;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod sandbox;
pub mod startup;
pub mod tokens;
pub mod webhooks;
pub mod zalo;

pub use startup::Application;
pub use webhooks::webhook_signature;

use serde::Deserialize;

/// Settings of the Zalo sandbox (`[sandbox]` in the config file, `LOA_SANDBOX__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SandboxSettings {
    /// Address to listen on; Zalo clients are pointed at `http://<this>`.
    pub bind: String,
    /// Where to POST signed webhooks (the notifier's `/zalo/webhook`); `None` sends no
    /// webhooks. Can be changed at run time with `POST /_sandbox/webhook`.
    pub webhook_url: Option<String>,
    /// Delay between accepting a message and its `user_received_message` receipt, so
    /// clients see receipts arrive after the send answer, as with the real Zalo.
    pub receipt_delay_ms: u64,
    /// Share (0..=1) of delivered messages that later get a `user_seen_message` event.
    pub seen_rate: f64,
    /// Lifetime of issued access tokens; Zalo's is 25 h (`expires_in` "90000").
    pub access_token_ttl_secs: u64,
    /// Accepted messages kept for `GET /_sandbox/messages` (oldest dropped first), so a
    /// long benchmark cannot exhaust memory; the counters in the stats are not capped.
    pub max_recorded_messages: usize,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8090".to_owned(),
            webhook_url: None,
            receipt_delay_ms: 200,
            seen_rate: 0.0,
            access_token_ttl_secs: 90_000,
            max_recorded_messages: 1_000_000,
        }
    }
}
