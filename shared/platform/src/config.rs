//! Layered configuration: compiled-in defaults, then an optional TOML file
//! (`--config` or `LOA_CONFIG`), then `LOA_*` environment variables, with `__` for
//! nesting (`LOA_TRACKER__BATCH_SIZE=500`).

use crate::telemetry::LogFormat;
use serde::{de::DeserializeOwned, Deserialize};
use std::path::{Path, PathBuf};

impl CommonSettings {
    /// Loads the tenants this deployment serves, with the service credential their
    /// admin APIs accept from the console, if one is set.
    pub fn load_tenants(&self) -> Result<crate::Tenants, ConfigError> {
        let tenants = crate::Tenants::load(self.tenants_file.as_deref(), &self.sandbox_url)?;
        Ok(match &self.service_token {
            Some(token) if token.expose().len() < 32 => {
                return Err(ConfigError::Value {
                    key: "service_token".into(),
                    why: "must be at least 32 characters".into(),
                })
            }
            Some(token) => tenants.with_service_token(token.clone()),
            None => tenants,
        })
    }
}

/// Why settings could not be loaded; names the offending key where it can.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment did not fit the settings' shape.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] ::config::ConfigError),
    /// A value was readable but not acceptable.
    #[error("invalid configuration value `{key}`: {why}")]
    Value {
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Loads `T` from defaults (its serde defaults), an optional TOML file and `LOA_*`
/// environment variables.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    let mut builder = ::config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(::config::File::from(file).format(::config::FileFormat::Toml));
    }
    builder = builder.add_source(
        ::config::Environment::with_prefix("LOA")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(false),
    );
    Ok(builder.build()?.try_deserialize()?)
}

/// Whether unsafe defaults are tolerated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A laptop, the demo, the tests: the built-in demo tenant, the sandbox and the
    /// development lookup secret are fine.
    #[default]
    Development,
    /// A province's deployment (`LOA_MODE=production`): every unsafe default is refused
    /// at start-up, naming its setting, and HTTP listeners whose address is not set
    /// listen on 127.0.0.1 only.
    Production,
}

/// The configuration as its layers state it, before defaults: which keys an operator
/// actually set (production mode binds only those listeners beyond loopback).
pub fn load_stated(file: Option<&Path>) -> Result<serde_json::Value, ConfigError> {
    load(file)
}

/// Whether a dotted key (`intake.bind`) is stated in `stated` ([`load_stated`]).
pub fn is_stated(stated: &serde_json::Value, key: &str) -> bool {
    key.split('.')
        .try_fold(stated, |v, part| v.get(part))
        .is_some_and(|v| !v.is_null())
}

/// The environment variable of a dotted key: `tracker.lookup_secret` is
/// `LOA_TRACKER__LOOKUP_SECRET`, `mode` is `LOA_MODE`.
pub fn env_var_of(key: &str) -> String {
    format!("LOA_{}", key.replace('.', "__").to_uppercase())
}

/// Settings every service needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CommonSettings {
    /// `development` (the default) or `production` (`LOA_MODE`): production refuses to
    /// start with any unsafe default, naming the setting.
    pub mode: Mode,
    /// RabbitMQ URL, including the vhost (`LOA_AMQP_URL`).
    pub amqp_url: String,
    /// PostgreSQL URL (`LOA_DATABASE_URL`). Each service uses its own schema in it.
    pub database_url: String,
    /// Maximum Postgres connections per service.
    pub database_pool_size: usize,
    /// Public base URL of the tracker, used in lookup links and QR codes sent to
    /// citizens (`LOA_PUBLIC_BASE_URL`).
    pub public_base_url: String,
    /// `pretty` for terminals, `json` for production (`LOA_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver
    /// (`LOA_OTLP_ENDPOINT`, e.g. `http://127.0.0.1:4318`): when set, the spans of
    /// intake's requests, the tracker's batches and the notifier's sends (and Zalo
    /// calls) are exported to `<endpoint>/v1/traces` as OTLP JSON and JSON log lines
    /// carry their `trace_id`. Unset (the default), no span is made or exported.
    pub otlp_endpoint: Option<String>,
    /// Path of the tenants file (`LOA_TENANTS_FILE`); without it the built-in `demo`
    /// tenant, wired to the local sandbox, is used.
    pub tenants_file: Option<PathBuf>,
    /// How often the tenants file is checked for a change, in milliseconds
    /// (`LOA_TENANTS_POLL_MS`); 0 reloads it only on `SIGHUP`. A changed file is
    /// validated first, and refused (the tenants in force are kept) when it is invalid.
    pub tenants_poll_ms: u64,
    /// Base URL of the Zalo sandbox the built-in `demo` tenant talks to
    /// (`LOA_SANDBOX_URL`). Tenants from a tenants file carry their own Zalo URLs.
    pub sandbox_url: String,
    /// The console's credential towards the tracker's and notifier's admin APIs
    /// (`LOA_SERVICE_TOKEN`, at least 32 characters): with it and an `X-Loa-Tenant`
    /// header they act for that tenant. Set the same value for the console, the
    /// tracker and the notifier; unset, `loa run` (all in one process) makes a random
    /// one for itself and separately run services accept tenant admin tokens only.
    pub service_token: Option<crate::Secret>,
    /// How every HTTP listener treats its clients: time-outs, limits, the proxy that
    /// tells the client's address, where `/metrics` is served (`[http]`).
    pub http: crate::http::HttpSettings,
}

impl Default for CommonSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            database_url: "postgres://postgres@127.0.0.1:5432/loa".to_owned(),
            database_pool_size: 16,
            public_base_url: "http://127.0.0.1:8081".to_owned(),
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
            tenants_file: None,
            tenants_poll_ms: 5_000,
            sandbox_url: "http://127.0.0.1:8090".to_owned(),
            service_token: None,
            http: crate::http::HttpSettings::default(),
        }
    }
}

/// Parses a `host:port` listen address, naming the key on failure.
pub fn parse_bind(key: &str, value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Value {
        key: key.to_owned(),
        why: format!("`{value}` is not a host:port address"),
    })
}
