//! Command-line parsing and dispatch. Each command is a thin call into a module.

use crate::{demo, runner, settings::Settings};
use clap::{Parser, Subcommand};
use std::{ffi::OsString, path::PathBuf};

/// Loa: dossier updates and policy broadcasts to citizens over Zalo.
#[derive(Debug, Parser)]
#[command(name = "loa", version, about)]
pub struct Cli {
    /// TOML configuration file (also `LOA_CONFIG`); `LOA_*` variables override it.
    #[arg(long, global = true, env = "LOA_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one service, or all of them in one process (the default).
    Run {
        /// Which service.
        #[arg(value_enum, default_value = "all")]
        target: runner::Target,
    },
    /// Apply every service's database migrations, then exit.
    Migrate,
    /// Start everything in this process, push realistic dossier events through intake
    /// and print what each citizen received on Zalo, then keep serving until Ctrl-C.
    Demo {
        /// Exit after printing instead of serving on.
        #[arg(long)]
        exit: bool,
    },
}

/// Parses `args` and runs the command.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    let settings = Settings::load(cli.config.as_deref())?;
    loa_platform::telemetry::init(settings.common.log_format, "info,lapin=warn", std::io::stderr);
    match cli.command {
        Command::Run { target } => {
            let cancel = loa_platform::shutdown::on_signal();
            runner::start(target, &settings, cancel).await?.wait().await
        }
        Command::Migrate => runner::migrate(&settings).await,
        Command::Demo { exit } => demo::run(&settings, exit).await,
    }
}
