//! Logging set-up. Logs are English; phone numbers are masked by their types
//! ([`loa_contracts::PhoneNumber`] displays masked) and secrets print as `***`.

use serde::Deserialize;
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for production log shipping.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
/// Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init<W>(format: LogFormat, default_filter: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
