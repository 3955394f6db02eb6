//! `loa secrets new-key` and `loa secrets rotate-key`: the keys that seal the Zalo
//! tokens at rest in `notifier.oauth_tokens` ([`loa_notifier::zalo::sealing`]).
//!
//! Rotating a key: put a new entry (`loa secrets new-key`) first in
//! `notifier.token_keys`, keeping the old one after it; restart the notifiers (they
//! seal what they write with the new key and still open the old values); run
//! `loa secrets rotate-key` with the same setting, which seals every stored token again
//! under the new key; then drop the old entry.

use crate::settings::Settings;
use anyhow::Context;
use clap::Subcommand;
use loa_notifier::zalo::sealing;

/// `loa secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a fresh key entry for `notifier.token_keys` (`<id>:<64 hex digits>`).
    NewKey {
        /// The key's id, stored with every value it seals (default: `k` and today's
        /// date, e.g. `k20261204`).
        #[arg(long)]
        id: Option<String>,
    },
    /// Seal every stored Zalo token again under the current (first) key of
    /// `notifier.token_keys`, straight against the database (`LOA_DATABASE_URL`).
    RotateKey,
}

/// Runs a `loa secrets` command that needs no settings (`new-key`), or `None`.
pub fn run_without_settings(command: &SecretsCommand) -> Option<anyhow::Result<()>> {
    let SecretsCommand::NewKey { id } = command else {
        return None;
    };
    let id = id
        .clone()
        .unwrap_or_else(|| format!("k{}", chrono::Utc::now().format("%Y%m%d")));
    let entry = sealing::new_key(&id);
    // Refuse an id the keyring would refuse, before anyone stores the key.
    Some(
        sealing::Keyring::parse(&entry, "--id")
            .map(|_| println!("{entry}"))
            .map_err(anyhow::Error::from),
    )
}

/// Runs `loa secrets rotate-key`.
pub async fn rotate_key(settings: &Settings) -> anyhow::Result<()> {
    let keyring = settings.services.notifier.keyring()?;
    anyhow::ensure!(
        !keyring.is_development(),
        "notifier.token_keys (LOA_NOTIFIER__TOKEN_KEYS) is not set: there is no key to rotate to \
         (`loa secrets new-key` prints one)"
    );
    let pool = loa_platform::db::pool(&settings.common.database_url, 2)?;
    loa_notifier::migrate(&pool)
        .await
        .context("Failed to migrate the notifier schema")?;
    let done = sealing::reseal_all(&pool, &keyring).await?;
    println!(
        "{} tenant(s) resealed under key `{}`, {} already under it",
        done.resealed,
        keyring.current_id(),
        done.current
    );
    Ok(())
}
