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
    ///
    /// In production mode (`LOA_MODE=production`) every unsafe default is refused,
    /// all at once, each naming its setting ([`crate::production`]), and listeners
    /// whose address is not stated listen on 127.0.0.1.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let common: CommonSettings = config::load(file)?;
        let services: ServiceSettings = config::load(file)?;
        let tenants = common.load_tenants()?;
        let mut settings = Self {
            common,
            services,
            tenants,
        };
        if settings.common.mode == config::Mode::Production {
            let problems = crate::production::check(&settings);
            if !problems.is_empty() {
                return Err(crate::production::Refused(problems).into());
            }
            let stated = config::load_stated(file)?;
            crate::production::bind_loopback_unless_stated(&mut settings, &stated);
        }
        Ok(settings)
    }
}
