//! Sign-in sessions and their CSRF tokens.
//!
//! A session id is 256 random bits, sent to the browser in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` outside development mode) and stored only as its
//! SHA-256. Every session carries its own CSRF token (another 256 random bits), which
//! every form repeats in a hidden field and every POST must present: compared in
//! constant time. A session ends after [`SessionPolicy::idle`] without a request, or
//! [`SessionPolicy::max`] after sign-in, or at sign-out.

use crate::accounts::{Account, Role};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Longest time between two requests.
    pub idle: Duration,
    /// Longest session, from sign-in.
    pub max: Duration,
}

impl SessionPolicy {
    /// Whether a session created at `created_at` and last used at `last_seen_at` is
    /// still valid at `now`.
    pub fn is_live(
        &self,
        created_at: DateTime<Utc>,
        last_seen_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let within = |since: DateTime<Utc>, limit: Duration| {
            chrono::Duration::from_std(limit).is_ok_and(|limit| now - since < limit)
        };
        within(created_at, self.max) && within(last_seen_at, self.idle)
    }
}

/// 256 random bits as 64 hex characters (the thread RNG is a CSPRNG seeded by the OS).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a session id.
pub fn id_hash(session_id: &str) -> Vec<u8> {
    Sha256::digest(session_id.as_bytes()).to_vec()
}

/// Whether a submitted CSRF token is the session's (constant time; an empty or
/// missing one never is).
pub fn csrf_matches(expected: &str, submitted: Option<&str>) -> bool {
    match submitted {
        Some(given) if !given.is_empty() && !expected.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    }
}

/// A live session and its account.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed-in account.
    pub account: Account,
    /// The token its forms must repeat.
    pub csrf_token: String,
    /// The stored id hash (to end it).
    pub id_hash: Vec<u8>,
}

/// Starts a session for `account`; returns the id to put in the cookie.
pub async fn start(pool: &Pool, account: &Account, address: &str) -> anyhow::Result<String> {
    let id = random_token();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .execute(
            "INSERT INTO console.sessions (id_hash, account_id, csrf_token, address)
             VALUES ($1, $2, $3, $4)",
            &[&id_hash(&id), &account.id, &random_token(), &address],
        )
        .await
        .context("Failed to store a session")?;
    Ok(id)
}

/// The live session with this id, if any; refreshes its idle timer (at most once a
/// minute, so reading pages does not write on every request). An expired session is
/// deleted.
pub async fn find(
    pool: &Pool,
    policy: &SessionPolicy,
    session_id: &str,
) -> anyhow::Result<Option<Session>> {
    let hash = id_hash(session_id);
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "SELECT s.csrf_token, s.created_at, s.last_seen_at, now(),
                    a.id, a.tenant, a.username, a.display_name, a.role
               FROM console.sessions s JOIN console.accounts a ON a.id = s.account_id
              WHERE s.id_hash = $1",
            &[&hash],
        )
        .await
        .context("Failed to read a session")?;
    let Some(row) = row else { return Ok(None) };
    let (created_at, last_seen_at, now): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) =
        (row.get(1), row.get(2), row.get(3));
    if !policy.is_live(created_at, last_seen_at, now) {
        client
            .execute("DELETE FROM console.sessions WHERE id_hash = $1", &[&hash])
            .await
            .context("Failed to delete an expired session")?;
        return Ok(None);
    }
    if now - last_seen_at > chrono::Duration::seconds(60) {
        client
            .execute(
                "UPDATE console.sessions SET last_seen_at = now() WHERE id_hash = $1",
                &[&hash],
            )
            .await
            .context("Failed to refresh a session")?;
    }
    Ok(Some(Session {
        csrf_token: row.get(0),
        account: Account {
            id: row.get(4),
            tenant: row.get(5),
            username: row.get(6),
            display_name: row.get(7),
            role: Role::parse(row.get(8)).context("stored role is not admin or viewer")?,
        },
        id_hash: hash,
    }))
}

/// Ends a session (sign-out).
pub async fn end(pool: &Pool, id_hash: &[u8]) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .execute(
            "DELETE FROM console.sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await
        .context("Failed to end a session")?;
    Ok(())
}

/// Deletes sessions past their maximum age (run now and then; expired sessions are
/// refused anyway).
pub async fn prune(pool: &Pool, policy: &SessionPolicy) -> anyhow::Result<u64> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let idle = policy.idle.as_secs_f64();
    let max = policy.max.as_secs_f64();
    client
        .execute(
            "DELETE FROM console.sessions
              WHERE created_at < now() - make_interval(secs => $1)
                 OR last_seen_at < now() - make_interval(secs => $2)",
            &[&max, &idle],
        )
        .await
        .context("Failed to prune sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const POLICY: SessionPolicy = SessionPolicy {
        idle: Duration::from_secs(3600),
        max: Duration::from_secs(12 * 3600),
    };

    #[test]
    fn a_session_used_within_the_idle_time_stays_live() {
        let created = at("2026-12-04T08:00:00+07:00");
        assert!(POLICY.is_live(
            created,
            at("2026-12-04T10:00:00+07:00"),
            at("2026-12-04T10:59:59+07:00")
        ));
    }

    #[test]
    fn a_session_idle_for_an_hour_expires() {
        let created = at("2026-12-04T08:00:00+07:00");
        assert!(!POLICY.is_live(
            created,
            at("2026-12-04T09:00:00+07:00"),
            at("2026-12-04T10:00:00+07:00")
        ));
    }

    #[test]
    fn a_busy_session_still_ends_after_its_maximum_age() {
        let created = at("2026-12-04T08:00:00+07:00");
        let now = at("2026-12-04T20:00:00+07:00");
        assert!(!POLICY.is_live(created, now, now));
        assert!(POLICY.is_live(created, now, at("2026-12-04T19:59:59+07:00")));
    }

    #[test]
    fn csrf_tokens_match_only_exactly_and_never_when_missing() {
        let token = random_token();
        assert!(csrf_matches(&token, Some(&token)));
        assert!(!csrf_matches(&token, Some(&token[..63])));
        assert!(!csrf_matches(&token, Some(&random_token())));
        assert!(!csrf_matches(&token, Some("")));
        assert!(!csrf_matches(&token, None));
        assert!(!csrf_matches("", Some("")));
    }

    #[test]
    fn random_tokens_are_256_bits_of_hex_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(id_hash(&a).len(), 32);
        assert_ne!(id_hash(&a), id_hash(&b));
    }
}
