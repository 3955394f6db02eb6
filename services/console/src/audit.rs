//! The audit log: who did what to which object, when and from which address, for
//! every action that changes something (and every sign-in, failed or not).
//!
//! `console.audit_log` is append-only: this module only inserts and reads, and the
//! table's triggers refuse every `UPDATE`, `DELETE` and `TRUNCATE`, whoever asks.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A successful sign-in.
    SignIn,
    /// A sign-in with a wrong username or password.
    SignInFailed,
    /// A sign-in refused because the account or the address is locked.
    SignInLocked,
    /// A sign-out.
    SignOut,
    /// A delivery sent again.
    DeliveryResend,
    /// A parked delivery cancelled.
    DeliveryCancel,
    /// Dead letters replayed.
    DeadLetterReplay,
    /// A paused tenant's sending resumed.
    TenantResume,
    /// An account created (by `loa console add-user`).
    AccountCreate,
    /// The Zalo OA re-authorised (a new refresh token stored).
    ZaloReauthorize,
    /// A broadcast created (started now or scheduled).
    BroadcastCreate,
    /// A broadcast paused.
    BroadcastPause,
    /// A paused broadcast resumed.
    BroadcastResume,
    /// A broadcast cancelled.
    BroadcastCancel,
    /// Subscribers imported from a CSV file.
    SubscribersImport,
    /// A citizen opted out of broadcasts by an admin.
    SubscriberOptOut,
}

impl Action {
    /// Every action, for the audit page's filter.
    pub const ALL: [Action; 16] = [
        Self::SignIn,
        Self::SignInFailed,
        Self::SignInLocked,
        Self::SignOut,
        Self::DeliveryResend,
        Self::DeliveryCancel,
        Self::DeadLetterReplay,
        Self::TenantResume,
        Self::AccountCreate,
        Self::ZaloReauthorize,
        Self::BroadcastCreate,
        Self::BroadcastPause,
        Self::BroadcastResume,
        Self::BroadcastCancel,
        Self::SubscribersImport,
        Self::SubscriberOptOut,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignInLocked => "sign_in_locked",
            Self::SignOut => "sign_out",
            Self::DeliveryResend => "delivery_resend",
            Self::DeliveryCancel => "delivery_cancel",
            Self::DeadLetterReplay => "dead_letter_replay",
            Self::TenantResume => "tenant_resume",
            Self::AccountCreate => "account_create",
            Self::ZaloReauthorize => "zalo_reauthorize",
            Self::BroadcastCreate => "broadcast_create",
            Self::BroadcastPause => "broadcast_pause",
            Self::BroadcastResume => "broadcast_resume",
            Self::BroadcastCancel => "broadcast_cancel",
            Self::SubscribersImport => "subscribers_import",
            Self::SubscriberOptOut => "subscriber_opt_out",
        }
    }

    /// The Vietnamese label the audit page shows.
    pub fn label_vi(self) -> &'static str {
        match self {
            Self::SignIn => "Đăng nhập",
            Self::SignInFailed => "Đăng nhập thất bại",
            Self::SignInLocked => "Đăng nhập bị chặn (tạm khoá)",
            Self::SignOut => "Đăng xuất",
            Self::DeliveryResend => "Gửi lại tin nhắn",
            Self::DeliveryCancel => "Huỷ tin nhắn",
            Self::DeadLetterReplay => "Xử lý lại thư lỗi",
            Self::TenantResume => "Tiếp tục gửi tin",
            Self::AccountCreate => "Tạo tài khoản",
            Self::ZaloReauthorize => "Cấp quyền lại Zalo OA",
            Self::BroadcastCreate => "Tạo thông báo",
            Self::BroadcastPause => "Tạm dừng thông báo",
            Self::BroadcastResume => "Tiếp tục thông báo",
            Self::BroadcastCancel => "Huỷ thông báo",
            Self::SubscribersImport => "Nhập danh sách người nhận",
            Self::SubscriberOptOut => "Ngừng gửi thông báo cho công dân",
        }
    }

    /// The action of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The tenant it happened in.
    pub tenant: &'a str,
    /// Who: a username (as typed, for a failed sign-in), or `cli`.
    pub actor: &'a str,
    /// What.
    pub action: Action,
    /// Which object (a delivery id, dead-letter ids, …), if any.
    pub object: Option<&'a str>,
    /// From where (client address).
    pub address: Option<&'a str>,
    /// Anything else worth keeping (counts, the outcome).
    pub detail: Value,
}

/// Appends an entry.
pub async fn record(pool: &Pool, entry: &Entry<'_>) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let actor: String = entry.actor.chars().take(64).collect();
    client
        .execute(
            "INSERT INTO console.audit_log (tenant, actor, action, object, address, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &entry.tenant,
                &actor,
                &entry.action.as_str(),
                &entry.object,
                &entry.address,
                &entry.detail,
            ],
        )
        .await
        .context("Failed to append to the audit log")?;
    crate::metrics::action(entry.action);
    Ok(())
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Row id (for paging).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the username (or `cli`) as it was stored.
    pub actor: String,
    /// The actor's display name now, read from the accounts at read time so the log
    /// itself stays as written; `None` for `cli`, a username typed at a failed sign-in
    /// or an account that no longer exists.
    pub actor_name: Option<String>,
    /// What (stored name; unknown names are kept as they are).
    pub action: String,
    /// Which object.
    pub object: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// Details.
    pub detail: Value,
}

/// A page of a tenant's log, newest first, with ids below `before` (keyset paging).
pub async fn list(
    pool: &Pool,
    tenant: &str,
    action: Option<Action>,
    before: Option<i64>,
    limit: i64,
) -> anyhow::Result<Vec<StoredEntry>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT l.id, l.at, l.actor, l.action, l.object, l.address, l.detail, a.display_name
               FROM console.audit_log l
               LEFT JOIN console.accounts a ON a.tenant = l.tenant AND a.username = l.actor
              WHERE l.tenant = $1 AND ($2::text IS NULL OR l.action = $2) AND l.id < $3
              ORDER BY l.id DESC LIMIT $4",
            &[
                &tenant,
                &action.map(Action::as_str),
                &before.unwrap_or(i64::MAX),
                &limit,
            ],
        )
        .await
        .context("Failed to read the audit log")?;
    Ok(rows
        .iter()
        .map(|r| StoredEntry {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            object: r.get(4),
            address: r.get(5),
            detail: r.get(6),
            actor_name: r.get(7),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_through_its_stored_name_and_has_a_label() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert!(!action.label_vi().is_empty());
        }
        assert_eq!(Action::parse("drop_table"), None);
    }
}
