//! Admin accounts: one per person and tenant, with a role and an argon2id password
//! hash. Created by `loa console add-user` (and, in development mode only, the demo
//! tenant's `demo` account).

use anyhow::Context;
use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use deadpool_postgres::Pool;
use std::sync::LazyLock;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads every page and acts (resend, cancel, replay, resume).
    Admin,
    /// Reads every page; every action is hidden and refused.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    /// The Vietnamese label shown in the console.
    pub fn label_vi(self) -> &'static str {
        match self {
            Self::Admin => "Quản trị",
            Self::Viewer => "Chỉ xem",
        }
    }
}

/// An account, as a signed-in session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// The tenant it belongs to: everything it sees and does is this tenant's.
    pub tenant: String,
    /// Sign-in name, unique within the tenant.
    pub username: String,
    /// Name shown in the console and the audit log.
    pub display_name: String,
    /// What it may do.
    pub role: Role,
}

impl Account {
    /// Whether it may act (not only read).
    pub fn can_act(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 takes any length; this bounds the work a
/// request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    /// A field is not acceptable; names it.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The tenant already has an account with this username.
    #[error("tenant `{tenant}` already has an account `{username}`")]
    Exists {
        /// The tenant.
        tenant: String,
        /// The username.
        username: String,
    },
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A new account's fields.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    /// Its tenant (must be configured).
    pub tenant: &'a str,
    /// Sign-in name: 1 to 64 of `a-z 0-9 . _ -`.
    pub username: &'a str,
    /// Name shown (1 to 100 characters).
    pub display_name: &'a str,
    /// Its role.
    pub role: Role,
    /// The password, hashed before it is stored.
    pub password: &'a str,
}

/// Checks a username: 1 to 64 characters of `a-z 0-9 . _ -`.
pub fn valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= 64
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane,
/// OWASP's recommended minimum) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| anyhow::anyhow!("Failed to encode a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("Failed to hash a password: {e}"))
}

/// Whether `password` matches a stored PHC hash (constant-time inside argon2).
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password matches, verified for unknown usernames so that a sign-in with
/// an unknown name takes as long as one with a wrong password.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_password("decoy password nobody has").expect("hashing a constant cannot fail")
});

/// Creates an account. Fails on a bad field or an existing username.
pub async fn add(pool: &Pool, new: &NewAccount<'_>) -> Result<Account, AddUserError> {
    if !valid_username(new.username) {
        return Err(AddUserError::Invalid {
            field: "username",
            message: "1 to 64 of a-z, 0-9, '.', '_', '-'".into(),
        });
    }
    let display_name = new.display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(AddUserError::Invalid {
            field: "display-name",
            message: "1 to 100 characters".into(),
        });
    }
    if new.password.chars().count() < MIN_PASSWORD_CHARS || new.password.len() > MAX_PASSWORD_BYTES
    {
        return Err(AddUserError::Invalid {
            field: "password",
            message: format!(
                "{MIN_PASSWORD_CHARS} characters at least, {MAX_PASSWORD_BYTES} bytes at most"
            ),
        });
    }
    let hash = hash_password(new.password)?;
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "INSERT INTO console.accounts (tenant, username, display_name, role, password_hash)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, username) DO NOTHING
             RETURNING id",
            &[
                &new.tenant,
                &new.username,
                &display_name,
                &new.role.as_str(),
                &hash,
            ],
        )
        .await
        .context("Failed to insert an account")?;
    let Some(row) = row else {
        return Err(AddUserError::Exists {
            tenant: new.tenant.to_owned(),
            username: new.username.to_owned(),
        });
    };
    Ok(Account {
        id: row.get(0),
        tenant: new.tenant.to_owned(),
        username: new.username.to_owned(),
        display_name: display_name.to_owned(),
        role: new.role,
    })
}

/// The account whose password this is, or `None` (unknown username or wrong
/// password: the caller cannot tell which, and neither can a timing observer).
pub async fn authenticate(
    pool: &Pool,
    tenant: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Option<Account>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "SELECT id, display_name, role, password_hash FROM console.accounts
              WHERE tenant = $1 AND username = $2",
            &[&tenant, &username],
        )
        .await
        .context("Failed to read an account")?;
    drop(client);
    let stored: String = row
        .as_ref()
        .map(|r| r.get(3))
        .unwrap_or_else(|| DECOY_HASH.clone());
    let password = password.to_owned();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .context("The password check panicked")?;
    let Some(row) = row.filter(|_| matches) else {
        return Ok(None);
    };
    Ok(Some(Account {
        id: row.get(0),
        tenant: tenant.to_owned(),
        username: username.to_owned(),
        display_name: row.get(1),
        role: Role::parse(row.get(2)).context("stored role is not admin or viewer")?,
    }))
}

/// The demo tenant's development account.
pub const DEMO_USERNAME: &str = "demo";
/// Its password (development mode only).
pub const DEMO_PASSWORD: &str = "demo-password";

/// Creates `demo` / `demo-password` (admin) for the `demo` tenant if it has no such
/// account yet, flagged as for development mode only (see
/// [`remove_dev_mode_accounts`]). Called only in development mode, and only when the
/// tenant exists. An existing `demo` account (one an operator made with
/// `loa console add-user`) is left as it is.
pub async fn ensure_demo_account(pool: &Pool) -> anyhow::Result<()> {
    let created = match add(
        pool,
        &NewAccount {
            tenant: "demo",
            username: DEMO_USERNAME,
            display_name: "Quản trị viên demo",
            role: Role::Admin,
            password: DEMO_PASSWORD,
        },
    )
    .await
    {
        Ok(account) => account,
        Err(AddUserError::Exists { .. }) => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!(e)).context("Failed to create the demo account"),
    };
    pool.get()
        .await
        .context("Failed to get a PostgreSQL connection")?
        .execute(
            "UPDATE console.accounts SET dev_mode_only = true WHERE id = $1",
            &[&created.id],
        )
        .await
        .context("Failed to flag the demo account")?;
    Ok(())
}

/// Removes the accounts development mode created (the demo account, whose password
/// is public), with their sessions: a console started outside development mode calls
/// it, so `demo` / `demo-password` never signs in to a real deployment. Returns how
/// many it removed.
pub async fn remove_dev_mode_accounts(pool: &Pool) -> anyhow::Result<u64> {
    pool.get()
        .await
        .context("Failed to get a PostgreSQL connection")?
        .execute("DELETE FROM console.accounts WHERE dev_mode_only", &[])
        .await
        .context("Failed to remove the development mode accounts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_argon2id_hash_only() {
        let hash = hash_password("mật khẩu đúng 123").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("mật khẩu đúng 123", &hash));
        assert!(!verify_password("mật khẩu sai 123", &hash));
        assert!(!verify_password("", &hash));
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_their_salt() {
        let a = hash_password("same password").unwrap();
        let b = hash_password("same password").unwrap();
        assert_ne!(a, b);
        assert!(verify_password("same password", &a) && verify_password("same password", &b));
    }

    #[test]
    fn a_malformed_stored_hash_matches_nothing() {
        assert!(!verify_password("anything", "not a phc string"));
        assert!(!verify_password(
            "decoy password nobody has",
            "$argon2id$v=19$garbage"
        ));
    }

    #[test]
    fn usernames_are_lowercase_ascii_words() {
        assert!(valid_username("nguyen.van-an_2"));
        assert!(!valid_username(""));
        assert!(!valid_username("Nguyen"));
        assert!(!valid_username("an an"));
        assert!(!valid_username("nguyễn"));
        assert!(!valid_username(&"a".repeat(65)));
    }

    #[test]
    fn only_admins_may_act() {
        let mut account = Account {
            id: 1,
            tenant: "demo".into(),
            username: "an".into(),
            display_name: "An".into(),
            role: Role::Admin,
        };
        assert!(account.can_act());
        account.role = Role::Viewer;
        assert!(!account.can_act());
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));
        assert_eq!(Role::parse("root"), None);
    }
}
