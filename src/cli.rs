//! Command-line parsing and dispatch. Each command is a thin call into a module.

use crate::{
    bench, broadcasts, chaos, console, dead_letters, demo, runner, secrets, settings::Settings,
    stats, subjects, tokens,
};
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
    /// List and replay dead letters, straight against the database and the broker
    /// (`LOA_DATABASE_URL`, `LOA_AMQP_URL`).
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        command: dead_letters::DeadLettersCommand,
    },
    /// Policy broadcasts through the notifier's API: create (or preview), list, show,
    /// pause, resume, cancel, watch live.
    Broadcasts {
        /// The notifier and the admin token.
        #[command(flatten)]
        api: broadcasts::ApiArgs,
        /// What to do.
        #[command(subcommand)]
        command: broadcasts::BroadcastsCommand,
    },
    /// The broadcasts' audience: import citizens from a file.
    Subscribers {
        /// The notifier and the admin token.
        #[command(flatten)]
        api: broadcasts::ApiArgs,
        /// What to do.
        #[command(subcommand)]
        command: broadcasts::SubscribersCommand,
    },
    /// The province's report over a period, per agency or procedure, through the
    /// tracker's `GET /v1/stats`: received, completed early / on time / late, median
    /// processing time, ratings.
    Stats(stats::StatsArgs),
    /// A citizen's personal data (Decree 13/2023): erase it everywhere at their request,
    /// through the tracker's and the notifier's APIs (`LOA_ADMIN_TOKEN`,
    /// `LOA_TRACKER_URL`, `LOA_NOTIFIER_URL`).
    Subjects {
        /// The services and the admin token.
        #[command(flatten)]
        api: subjects::SubjectsArgs,
        /// What to do.
        #[command(subcommand)]
        command: subjects::SubjectsCommand,
    },
    /// Manage the admin console's accounts, straight against the database
    /// (`LOA_DATABASE_URL`).
    Console {
        /// What to do.
        #[command(subcommand)]
        command: console::ConsoleCommand,
    },
    /// Bearer tokens for upstream sources and admins, and their hashes for the
    /// tenants file.
    Tokens {
        /// What to do.
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// The keys that seal the Zalo tokens at rest: a new key, and resealing every
    /// stored token under the current one after a rotation.
    Secrets {
        /// What to do.
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Benchmarks: the broker baseline, the pipeline end to end, latency at fixed
    /// loads, a held Zalo rate limit, and a broadcast's import and fan-out. Each
    /// writes reports under `target/bench-results/`.
    Bench {
        /// Output options.
        #[command(flatten)]
        output: bench::OutputArgs,
        /// Which benchmark.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The chaos run: the four services as processes under a steady load while they
    /// are killed, lose the broker and the database, and Zalo misbehaves; then an audit
    /// of what reached Zalo. Fails on any loss, unexplained duplicate or stall.
    Chaos(chaos::ChaosArgs),
}

/// Parses `args` and runs the command.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    // Tokens need neither settings nor a tenants file (one may be being written).
    if let Command::Tokens { command } = cli.command {
        return tokens::run(command);
    }
    if let Command::Secrets { command } = &cli.command {
        if let Some(done) = secrets::run_without_settings(command) {
            return done;
        }
    }
    let settings = Settings::load(cli.config.as_deref())?;
    // A benchmark's services log only what goes wrong, so its tables stay readable.
    // So do the operator's dead-letter commands, whose output is stdout, and the
    // demo, whose story is (`RUST_LOG=info` shows everything).
    let filter = if matches!(
        cli.command,
        Command::Bench { .. }
            | Command::Chaos(_)
            | Command::DeadLetters { .. }
            | Command::Broadcasts { .. }
            | Command::Subscribers { .. }
            | Command::Stats(_)
            | Command::Subjects { .. }
            | Command::Console { .. }
            | Command::Secrets { .. }
            | Command::Demo { .. }
    ) {
        "warn,lapin=error"
    } else {
        "info,lapin=warn"
    };
    // The demo's story goes to stdout; the services' logs wait until it is told.
    let story_logs = demo::StoryLogs::held();
    // Held until the command returns: dropping it sends the spans still buffered.
    let _traces = if let Command::Demo { .. } = cli.command {
        let logs = story_logs.clone();
        loa_platform::telemetry::init(settings.common.log_format, filter, move || logs.writer());
        None
    } else if let Command::Run { target } = &cli.command {
        // Only the services export spans: `loa-intake`, …, `loa-all` in one process.
        let service = clap::ValueEnum::to_possible_value(target)
            .map_or_else(|| "loa".to_owned(), |v| format!("loa-{}", v.get_name()));
        loa_platform::telemetry::init_with_traces(
            settings.common.log_format,
            filter,
            std::io::stderr,
            settings.common.otlp_endpoint.as_deref(),
            &service,
        )?
    } else {
        loa_platform::telemetry::init(settings.common.log_format, filter, std::io::stderr);
        None
    };
    match cli.command {
        Command::Run { target } => {
            let cancel = loa_platform::shutdown::on_signal();
            runner::start(target, &settings, cancel).await?.wait().await
        }
        Command::Migrate => runner::migrate(&settings).await,
        Command::Demo { .. } if settings.common.mode == loa_platform::config::Mode::Production => {
            anyhow::bail!("production mode (LOA_MODE=production) does not run the demo")
        }
        Command::Demo { exit } => {
            let told = demo::run(&settings, exit, story_logs.clone()).await;
            // A story cut short still shows what the services logged.
            story_logs.release();
            told
        }
        Command::DeadLetters { command } => dead_letters::run(command, &settings).await,
        Command::Console { command } => console::run(command, &settings).await,
        Command::Stats(args) => stats::run(&args, &settings).await,
        Command::Secrets { .. } => secrets::rotate_key(&settings).await,
        Command::Broadcasts { api, command } => broadcasts::run(command, &api, &settings).await,
        Command::Subscribers { api, command } => {
            broadcasts::run_subscribers(command, &api, &settings).await
        }
        Command::Subjects { api, command } => subjects::run(command, &api, &settings).await,
        Command::Bench { output, command } => {
            bench::run(command, &output, &settings, cli.config.as_deref()).await
        }
        Command::Chaos(args) => chaos::run(&settings, cli.config.as_deref(), &args).await,
        Command::Tokens { .. } => unreachable!("answered before the settings were loaded"),
    }
}
