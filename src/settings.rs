//! Every service's settings, loaded together from the same layers: defaults, an
//! optional TOML file (`--config` / `LOA_CONFIG`) and `LOA_*` environment variables.

use loa_console::ConsoleSettings;
use loa_intake::IntakeSettings;
use loa_notifier::NotifierSettings;
use loa_platform::{config, CommonSettings, Tenants};
use loa_tracker::TrackerSettings;
use loa_zalo_sandbox::SandboxSettings;
use serde::Deserialize;
use std::path::Path;

/// The service sections of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    /// `[intake]`.
    pub intake: IntakeSettings,
    /// `[tracker]`.
    pub tracker: TrackerSettings,
    /// `[notifier]`.
    pub notifier: NotifierSettings,
    /// `[sandbox]`.
    pub sandbox: SandboxSettings,
    /// `[console]`.
    pub console: ConsoleSettings,
}

/// Everything `loa` needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Top-level keys shared by every service.
    pub common: CommonSettings,
    /// Per-service sections.
    pub services: ServiceSettings,
    /// The tenants served.
    pub tenants: Tenants,
}

impl Settings {
    /// Loads the layers; fails naming the offending key.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let common: CommonSettings = config::load(file)?;
        let services: ServiceSettings = config::load(file)?;
        let tenants = common.load_tenants()?;
        Ok(Self {
            common,
            services,
            tenants,
        })
    }
}
