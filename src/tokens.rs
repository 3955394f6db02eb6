//! `loa tokens new` and `loa tokens hash`: bearer tokens for upstream sources and
//! admins, and the hashes the tenants file can hold in their place
//! ([`loa_platform::credential`]). Nothing here touches a database or a service.

use anyhow::Context;
use clap::Subcommand;
use loa_platform::credential;
use std::io::BufRead;

/// `loa tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Print a fresh token (256 random bits) and the hash to put in the tenants file.
    New {
        /// Give the hash as an argon2id string instead of `sha256:` (slower to check;
        /// for policies that ask for a slow hash).
        #[arg(long)]
        argon2: bool,
    },
    /// Print the hash of an existing token, read from the first line of standard
    /// input (to replace a token in clear in the tenants file by its hash).
    Hash {
        /// As an argon2id string instead of `sha256:`.
        #[arg(long)]
        argon2: bool,
    },
}

/// What `loa tokens new` prints: the token for its holder, the hash for the file.
pub fn describe_new(token: &str, hash: &str) -> String {
    format!(
        "token = \"{token}\"   # give this to the source system or admin, once\n\
         hash  = \"{hash}\"   # put this in the tenants file in its place\n"
    )
}

/// Runs a `loa tokens` command.
pub fn run(command: TokensCommand) -> anyhow::Result<()> {
    let hash_of = |token: &str, argon2: bool| {
        if argon2 {
            credential::argon2_of(token)
        } else {
            credential::sha256_of(token)
        }
    };
    match command {
        TokensCommand::New { argon2 } => {
            let (token, sha) = credential::new_token();
            let hash = if argon2 { hash_of(&token, true) } else { sha };
            print!("{}", describe_new(&token, &hash));
        }
        TokensCommand::Hash { argon2 } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("Failed to read the token from standard input")?;
            let token = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", hash_of(token, argon2));
        }
    }
    Ok(())
}
