//! `loa console add-user`: creates an admin-console account, straight against the
//! database (`LOA_DATABASE_URL`). The password comes from `--password` (for scripts)
//! or the first line of standard input; it is stored only as an argon2id hash.

use crate::settings::Settings;
use anyhow::Context;
use clap::Subcommand;
use loa_console::{
    accounts::{self, AddUserError, NewAccount, Role},
    audit,
};
use std::io::BufRead;

/// `loa console …`.
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Create an account for a tenant's admin console.
    AddUser {
        /// The tenant (as configured) the account belongs to.
        #[arg(long)]
        tenant: String,
        /// Sign-in name: 1 to 64 of a-z, 0-9, '.', '_', '-'.
        #[arg(long)]
        username: String,
        /// The name shown in the console and the audit log.
        #[arg(long)]
        display_name: String,
        /// `admin` (reads and acts) or `viewer` (reads only).
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
        /// The password (visible to other users of this machine in the process
        /// list: prefer standard input outside scripts and tests).
        #[arg(long)]
        password: Option<String>,
    },
}

/// Runs a `loa console` command.
pub async fn run(command: ConsoleCommand, settings: &Settings) -> anyhow::Result<()> {
    let ConsoleCommand::AddUser {
        tenant,
        username,
        display_name,
        role,
        password,
    } = command;
    anyhow::ensure!(
        settings.tenants.get(&tenant).is_some(),
        "`--tenant`: no tenant `{tenant}` is configured"
    );
    let role = Role::parse(&role).context("`--role` is admin or viewer")?;
    let password = match password {
        Some(p) => p,
        None => {
            eprintln!("Password (one line on standard input):");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("Failed to read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    loa_platform::db::ensure_database(&settings.common.database_url).await?;
    let pool = loa_platform::db::pool(&settings.common.database_url, 2)?;
    loa_console::migrate(&pool).await?;
    let account = accounts::add(
        &pool,
        &NewAccount {
            tenant: &tenant,
            username: &username,
            display_name: &display_name,
            role,
            password: &password,
        },
    )
    .await
    .map_err(|e| match e {
        AddUserError::Unexpected(e) => e,
        other => anyhow::anyhow!(other),
    })?;
    audit::record(
        &pool,
        &audit::Entry {
            tenant: &tenant,
            actor: "cli",
            action: audit::Action::AccountCreate,
            object: Some(&username),
            address: None,
            detail: serde_json::json!({"role": role.as_str()}),
        },
    )
    .await?;
    println!(
        "Created {} account `{}` ({}) for tenant `{}`.",
        account.role.as_str(),
        account.username,
        account.display_name,
        account.tenant
    );
    Ok(())
}
