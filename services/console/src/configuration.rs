//! The console's settings (`[console]` in the TOML file, `LOA_CONSOLE__*` in the
//! environment). The credential it presents to the tracker and the notifier is the
//! top-level `service_token` (`LOA_SERVICE_TOKEN`), shared with them.

use serde::Deserialize;
use std::time::Duration;

/// How the console serves, signs in and talks to the other services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConsoleSettings {
    /// HTTP listen address (pages under `/admin/`, health, metrics).
    pub bind: String,
    /// Base URL of the tracker's admin API (dossiers, today's events).
    pub tracker_url: String,
    /// Base URL of the notifier's admin API (deliveries, dead letters, pause, …).
    pub notifier_url: String,
    /// Development mode: the session cookie is sent over plain HTTP (no `Secure`),
    /// and the built-in `demo` tenant gets the account `demo` / `demo-password`.
    /// Never in production; `loa demo` turns it on.
    pub dev_mode: bool,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// A session ends this many hours after sign-in, however busy.
    pub session_max_hours: u64,
    /// Failed sign-ins (since the last success) that lock an account.
    pub lockout_account_failures: u32,
    /// Failed sign-ins from one address that lock that address out.
    pub lockout_address_failures: u32,
    /// Failures older than this many minutes no longer count.
    pub lockout_window_minutes: u64,
    /// How long a lock lasts after the failure that set it, in minutes.
    pub lockout_minutes: u64,
    /// Take the client's address from the last `X-Forwarded-For` entry (set it when
    /// the console runs behind a reverse proxy or an ingress that appends it; without
    /// a proxy a client could pick its own address).
    pub trust_forwarded_for: bool,
    /// Time-out of one call to the tracker or the notifier, in ms.
    pub backend_timeout_ms: u64,
    /// The console's address as browsers reach it (`https://loa.example.gov.vn`): the
    /// base of the redirect URI `…/admin/zalo/callback` registered in each Zalo app.
    /// Unset, the request's `Host` is used (development).
    pub public_url: Option<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8083".to_owned(),
            tracker_url: "http://127.0.0.1:8081".to_owned(),
            notifier_url: "http://127.0.0.1:8082".to_owned(),
            dev_mode: false,
            session_idle_minutes: 60,
            session_max_hours: 12,
            lockout_account_failures: 5,
            lockout_address_failures: 20,
            lockout_window_minutes: 15,
            lockout_minutes: 15,
            trust_forwarded_for: false,
            backend_timeout_ms: 10_000,
            public_url: None,
        }
    }
}

impl ConsoleSettings {
    /// The session lifetimes.
    pub fn session_policy(&self) -> crate::sessions::SessionPolicy {
        crate::sessions::SessionPolicy {
            idle: Duration::from_secs(self.session_idle_minutes.max(1) * 60),
            max: Duration::from_secs(self.session_max_hours.max(1) * 3600),
        }
    }

    /// The lockout thresholds.
    pub fn lockout_policy(&self) -> crate::lockout::LockoutPolicy {
        crate::lockout::LockoutPolicy {
            account_failures: self.lockout_account_failures.max(1),
            address_failures: self.lockout_address_failures.max(1),
            window: Duration::from_secs(self.lockout_window_minutes.max(1) * 60),
            lock_for: Duration::from_secs(self.lockout_minutes.max(1) * 60),
        }
    }
}
