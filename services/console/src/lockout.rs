//! Lockout after repeated sign-in failures, per account and per address.
//!
//! - An account is locked once it has [`LockoutPolicy::account_failures`] failures
//!   within [`LockoutPolicy::window`] since its last successful sign-in, until
//!   [`LockoutPolicy::lock_for`] after the latest of them.
//! - An address is locked the same way after [`LockoutPolicy::address_failures`]
//!   failures in the window (whatever the accounts), so one machine cannot try a
//!   password on every account.
//!
//! While locked, even the right password is refused, and the refused attempts are not
//! counted as failures (they only go to the audit log), so a lock ends on time and an
//! attacker cannot keep a colleague locked out forever from one address.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::time::Duration;

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock an account.
    pub account_failures: u32,
    /// Failures that lock an address.
    pub address_failures: u32,
    /// Failures older than this do not count.
    pub window: Duration,
    /// How long a lock lasts after the failure that set it.
    pub lock_for: Duration,
}

/// Until when a series of failures locks, given the failure times (any order) that
/// count and the threshold; `None` when not locked at `now`.
pub fn locked_until(
    failures: &[DateTime<Utc>],
    threshold: u32,
    policy: &LockoutPolicy,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let window = chrono::Duration::from_std(policy.window).ok()?;
    let lock_for = chrono::Duration::from_std(policy.lock_for).ok()?;
    let mut recent: Vec<DateTime<Utc>> = failures
        .iter()
        .copied()
        .filter(|at| now - *at < window + lock_for)
        .collect();
    recent.sort_unstable();
    // The lock starts at the failure that reached the threshold within the window.
    let threshold = usize::try_from(threshold.max(1)).ok()?;
    let mut until = None;
    for (i, at) in recent.iter().enumerate() {
        if i + 1 >= threshold && *at - recent[i + 1 - threshold] < window {
            until = Some(*at + lock_for);
        }
    }
    until.filter(|u| *u > now)
}

/// Why a sign-in is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The account is locked until then.
    Account(DateTime<Utc>),
    /// The address is locked until then.
    Address(DateTime<Utc>),
}

/// Whether the account or the address is locked now.
pub async fn check(
    pool: &Pool,
    policy: &LockoutPolicy,
    tenant: &str,
    username: &str,
    address: &str,
) -> anyhow::Result<Option<Lock>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let horizon = (policy.window + policy.lock_for).as_secs_f64();
    let account = client
        .query(
            "SELECT at FROM console.login_attempts
              WHERE tenant = $1 AND username = $2 AND NOT succeeded
                AND at > now() - make_interval(secs => $3)
                AND at > coalesce((SELECT max(at) FROM console.login_attempts
                                    WHERE tenant = $1 AND username = $2 AND succeeded),
                                  '-infinity')",
            &[&tenant, &username, &horizon],
        )
        .await
        .context("Failed to read an account's sign-in failures")?;
    let address_rows = client
        .query(
            "SELECT at FROM console.login_attempts
              WHERE address = $1 AND NOT succeeded AND at > now() - make_interval(secs => $2)",
            &[&address, &horizon],
        )
        .await
        .context("Failed to read an address's sign-in failures")?;
    let now = client
        .query_one("SELECT now()", &[])
        .await
        .context("Failed to read the database clock")?
        .get::<_, DateTime<Utc>>(0);
    let times = |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get(0)).collect::<Vec<_>>();
    if let Some(until) = locked_until(&times(&account), policy.account_failures, policy, now) {
        return Ok(Some(Lock::Account(until)));
    }
    Ok(
        locked_until(&times(&address_rows), policy.address_failures, policy, now)
            .map(Lock::Address),
    )
}

/// Records a checked attempt (not one refused by a lock).
pub async fn record(
    pool: &Pool,
    tenant: &str,
    username: &str,
    address: &str,
    succeeded: bool,
) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .execute(
            "INSERT INTO console.login_attempts (tenant, username, address, succeeded)
             VALUES ($1, $2, $3, $4)",
            &[&tenant, &username, &address, &succeeded],
        )
        .await
        .context("Failed to record a sign-in attempt")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        account_failures: 3,
        address_failures: 10,
        window: Duration::from_secs(15 * 60),
        lock_for: Duration::from_secs(15 * 60),
    };

    fn minute(m: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T09:00:00+07:00")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::minutes(m)
    }

    #[test]
    fn failures_below_the_threshold_do_not_lock() {
        assert_eq!(
            locked_until(&[minute(0), minute(1)], 3, &POLICY, minute(2)),
            None
        );
    }

    #[test]
    fn the_third_failure_in_the_window_locks_for_fifteen_minutes_after_it() {
        let failures = [minute(0), minute(1), minute(2)];
        assert_eq!(
            locked_until(&failures, 3, &POLICY, minute(3)),
            Some(minute(17))
        );
        assert_eq!(
            locked_until(&failures, 3, &POLICY, minute(16)),
            Some(minute(17))
        );
        assert_eq!(locked_until(&failures, 3, &POLICY, minute(17)), None);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_lock() {
        let failures = [minute(0), minute(10), minute(20)];
        assert_eq!(locked_until(&failures, 3, &POLICY, minute(21)), None);
    }

    #[test]
    fn the_order_of_the_failures_does_not_matter() {
        let failures = [minute(2), minute(0), minute(1)];
        assert_eq!(
            locked_until(&failures, 3, &POLICY, minute(3)),
            Some(minute(17))
        );
    }

    #[test]
    fn a_later_burst_extends_the_lock_from_its_own_last_failure() {
        let failures = [
            minute(0),
            minute(1),
            minute(2),
            minute(20),
            minute(21),
            minute(22),
        ];
        assert_eq!(
            locked_until(&failures, 3, &POLICY, minute(23)),
            Some(minute(37))
        );
    }
}
