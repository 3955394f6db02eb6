//! The notifier's settings (`[notifier]` in the config file, `LOA_NOTIFIER__*`).

use loa_platform::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// The notifier's settings (`[notifier]` in the config file, `LOA_NOTIFIER__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifierSettings {
    /// Listen address of the HTTP API, health and metrics.
    pub bind: String,
    /// Unacked deliveries RabbitMQ may push ahead per lane (≥ `batch_size`).
    pub prefetch: u16,
    /// Most messages handled (claimed, sent, recorded) as one batch; a message packed
    /// by the tracker's relay holds up to its `relay_pack` requests.
    pub batch_size: usize,
    /// How long to wait for more requests after the first of a batch, in ms.
    pub batch_wait_ms: u64,
    /// Batches each lane handles at once: the next batch is claimed and sent while
    /// the previous one's sends are in flight and its results recorded (settled in
    /// order; requests are independent of each other). Zalo's round trip is what
    /// bounds a lane: at most `batches_in_flight × max_in_flight` calls per round
    /// trip (`loa bench pipeline --zalo-latency-ms 100`: 579 events/s with one
    /// batch of 64 calls, 2,997 with four of 128; no cost without the latency).
    pub batches_in_flight: usize,
    /// Most concurrent Zalo calls per batch (a lane has `batches_in_flight` batches).
    pub max_in_flight: usize,
    /// Time-out of one whole Zalo call, in ms.
    pub http_timeout_ms: u64,
    /// Refresh an access token this many seconds before it expires (Zalo's last
    /// 25 h; the default refreshes 5 h early).
    pub token_refresh_margin_secs: u64,
    /// Delays of the retry tiers, in ms: after attempt n fails for a passing reason
    /// the request waits the n-th (the last repeats), ±20 % jitter, in a delay queue.
    /// A list in the config file, comma-separated in `LOA_NOTIFIER__RETRY_DELAYS_MS`.
    #[serde(deserialize_with = "deserialize_delays")]
    pub retry_delays_ms: Vec<u64>,
    /// Attempts before a request that keeps failing for a passing reason (or keeps
    /// timing out) is dead-lettered with its last error.
    pub max_attempts: u32,
    /// How long a send that may have reached Zalo (it timed out, or its sender died
    /// after dispatching it) waits for its delivery receipt before it is resent, in
    /// seconds.
    pub ambiguous_recheck_secs: u64,
    /// How long a claimed request stays reserved for its sender without renewal, in
    /// seconds (≥ 1). A live sender renews its leases four times per period, so this
    /// bounds how long a crashed sender's requests wait before another takes them.
    pub lease_secs: u64,
    /// How often each replica looks for parked requests that are due, in ms.
    pub scheduler_interval_ms: u64,
    /// Most parked requests republished per scheduler statement.
    pub scheduler_batch: usize,
    /// Share (0..0.9) of each tenant's `burst` never used: a cushion so network jitter
    /// does not make a request reach Zalo's bucket a little early and meet -32.
    pub rate_limit_headroom: f64,
    /// Send slots are handed out at most this far ahead, in ms, so a broadcast batch
    /// cannot book a tenant's next minute ahead of case updates.
    pub rate_limit_horizon_ms: u64,
    /// The same for the broadcast lane, in ms: shorter, so a broadcast that saturates
    /// the tenant's rate only books the slots that start almost now and a case update
    /// never waits behind more than this much of it.
    pub rate_limit_broadcast_horizon_ms: u64,
    /// Subscribers per page of a broadcast's fan-out: one read, one publish with
    /// confirms and one checkpoint each. 2,000: with three pages in flight, 1,000
    /// kept the fan-out waiting on confirms (`loa bench fanout`: about 42,000
    /// recipients/s against 76,000, at 97 against 105 MB of peak RSS).
    pub broadcast_chunk: usize,
    /// Recipients per message the fan-out publishes (`notification_batch.v1`, as the
    /// tracker's `relay_pack`); 1 publishes each alone. 32: against 16, `loa bench
    /// fanout` measured a fifth less CPU per recipient in RabbitMQ and the notifier at
    /// a peak RSS still under 150 MB (64 came within 3 MB of it).
    pub broadcast_pack: usize,
    /// How often the broadcast fan-out looks for work, in ms.
    pub broadcast_interval_ms: u64,
    /// How long a -32 from Zalo pushes the tenant's next send back, in ms.
    pub rate_limit_penalty_ms: u64,
    /// Oldest Zalo webhook accepted, by its body's `timestamp`, in seconds; older ones
    /// are refused as replays. Zalo redelivers an event with its original timestamp
    /// for hours after an outage of ours, and a refused receipt is lost for good, so
    /// the default takes a day; deduplication keeps a replay harmless. With
    /// `webhook_max_ahead_secs` it may not exceed the 7 days webhook events are kept
    /// for deduplication (the notifier refuses to start otherwise).
    pub webhook_max_age_secs: u64,
    /// How far ahead of our clock a webhook's `timestamp` may be, in seconds.
    pub webhook_max_ahead_secs: u64,
    /// Chat lookups ("tra cứu <mã>") answered per Zalo user in
    /// `chat_lookup_window_secs`; the excess is kept, counted and not answered.
    pub chat_lookups_per_window: u32,
    /// The window of `chat_lookups_per_window`, in seconds.
    pub chat_lookup_window_secs: u64,
    /// Seconds between two retention sweeps (personal data past its tenant's
    /// `retention_days`: [`crate::personal_data::retention`]); at least 1.
    pub retention_sweep_secs: u64,
    /// Keys that seal the Zalo tokens at rest (`LOA_NOTIFIER__TOKEN_KEYS`): entries
    /// `<id>:<64 hex digits>` (`loa secrets new-key`), the first sealing, the others
    /// only opening values sealed before a rotation ([`crate::zalo::sealing`]).
    pub token_keys: Option<Secret>,
    /// A file holding the keys in the same form (a mounted secret), when
    /// `token_keys` is not set.
    pub token_keys_file: Option<PathBuf>,
}

impl NotifierSettings {
    /// Each Zalo user's chat lookup limit, as configured.
    pub fn lookup_limit(&self) -> crate::zalo_webhooks::LookupLimit {
        crate::zalo_webhooks::LookupLimit {
            max: self.chat_lookups_per_window,
            window: std::time::Duration::from_secs(self.chat_lookup_window_secs),
        }
    }

    /// The keys that seal the Zalo tokens at rest, from `token_keys` or
    /// `token_keys_file` (the public development key when neither is set).
    pub fn keyring(
        &self,
    ) -> Result<crate::zalo::sealing::Keyring, crate::zalo::sealing::SealError> {
        crate::zalo::sealing::Keyring::from_settings(
            self.token_keys.as_ref(),
            self.token_keys_file.as_deref(),
        )
    }
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8082".to_owned(),
            prefetch: 128,
            batch_size: 32,
            batch_wait_ms: 0,
            batches_in_flight: 4,
            max_in_flight: 128,
            http_timeout_ms: 10_000,
            token_refresh_margin_secs: 18_000,
            retry_delays_ms: vec![5_000, 30_000, 120_000, 600_000, 3_600_000],
            max_attempts: 8,
            ambiguous_recheck_secs: 600,
            lease_secs: 5,
            scheduler_interval_ms: 1_000,
            scheduler_batch: 500,
            rate_limit_headroom: 0.1,
            rate_limit_horizon_ms: 2_000,
            rate_limit_broadcast_horizon_ms: 250,
            broadcast_chunk: 2_000,
            broadcast_pack: 32,
            broadcast_interval_ms: 500,
            rate_limit_penalty_ms: 1_000,
            webhook_max_age_secs: 86_400,
            webhook_max_ahead_secs: 300,
            chat_lookups_per_window: 5,
            chat_lookup_window_secs: 600,
            retention_sweep_secs: 3_600,
            token_keys: None,
            token_keys_file: None,
        }
    }
}

/// Reads `retry_delays_ms` from a list (`[5000, 30000]` in the config file) or a
/// comma-separated string (`LOA_NOTIFIER__RETRY_DELAYS_MS=5000,30000`).
pub fn deserialize_delays<'de, D>(deserializer: D) -> Result<Vec<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<u64>),
        Csv(String),
    }
    match <ListOrCsv as serde::Deserialize>::deserialize(deserializer)? {
        ListOrCsv::List(list) => Ok(list),
        ListOrCsv::Csv(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u64>().map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is not a delay in milliseconds"))
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_read_from_a_list_or_a_comma_separated_string() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "deserialize_delays")]
            d: Vec<u64>,
        }
        let list: S = serde_json::from_str(r#"{"d": [200, 400]}"#).unwrap();
        let csv: S = serde_json::from_str(r#"{"d": "200, 400"}"#).unwrap();
        assert_eq!((list.d, csv.d), (vec![200, 400], vec![200, 400]));
        assert!(serde_json::from_str::<S>(r#"{"d": "2s"}"#).is_err());
    }
}
