use deadpool_postgres::Pool;
use loa_console::{
    accounts::{self, AddUserError, NewAccount, Role},
    audit::{self, Action},
    lockout::{self, Lock, LockoutPolicy},
    sessions::{self, SessionPolicy},
};
use loa_platform::testing::TestEnv;
use serde_json::json;
use std::time::Duration;

async fn migrated() -> (TestEnv, Pool) {
    let env = TestEnv::new()
        .await
        .expect("PostgreSQL and RabbitMQ are reachable");
    let pool = loa_platform::db::pool(&env.database_url, 2).unwrap();
    loa_console::migrate(&pool).await.unwrap();
    (env, pool)
}

fn new_account<'a>(tenant: &'a str, username: &'a str, password: &'a str) -> NewAccount<'a> {
    NewAccount {
        tenant,
        username,
        display_name: "Nguyễn Văn An",
        role: Role::Admin,
        password,
    }
}

const POLICY: LockoutPolicy = LockoutPolicy {
    account_failures: 3,
    address_failures: 5,
    window: Duration::from_secs(900),
    lock_for: Duration::from_secs(900),
};

#[tokio::test]
async fn an_account_signs_in_with_its_own_password_and_tenant_only() {
    // Arrange
    let (_env, pool) = migrated().await;
    accounts::add(&pool, &new_account("demo", "an", "mật-khẩu-đúng"))
        .await
        .unwrap();

    // Act
    let right = accounts::authenticate(&pool, "demo", "an", "mật-khẩu-đúng")
        .await
        .unwrap();
    let wrong = accounts::authenticate(&pool, "demo", "an", "mật-khẩu-sai")
        .await
        .unwrap();
    let other_tenant = accounts::authenticate(&pool, "other", "an", "mật-khẩu-đúng")
        .await
        .unwrap();
    let unknown = accounts::authenticate(&pool, "demo", "binh", "mật-khẩu-đúng")
        .await
        .unwrap();
    let again = accounts::add(&pool, &new_account("demo", "an", "another-password")).await;

    // Assert
    let account = right.expect("the right password signs in");
    assert_eq!(
        (account.tenant.as_str(), account.role),
        ("demo", Role::Admin)
    );
    assert_eq!(account.display_name, "Nguyễn Văn An");
    assert!(wrong.is_none() && other_tenant.is_none() && unknown.is_none());
    assert!(matches!(again, Err(AddUserError::Exists { .. })));
    let client = pool.get().await.unwrap();
    let stored: String = client
        .query_one(
            "SELECT password_hash FROM console.accounts WHERE username = 'an'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("$argon2id$") && !stored.contains("mật"));
}

#[tokio::test]
async fn a_short_password_or_a_bad_username_is_refused_naming_the_field() {
    let (_env, pool) = migrated().await;
    let short = accounts::add(&pool, &new_account("demo", "an", "short")).await;
    let bad_name = accounts::add(&pool, &new_account("demo", "Nguyễn", "long enough")).await;
    assert!(matches!(
        short,
        Err(AddUserError::Invalid {
            field: "password",
            ..
        })
    ));
    assert!(matches!(
        bad_name,
        Err(AddUserError::Invalid {
            field: "username",
            ..
        })
    ));
}

#[tokio::test]
async fn the_audit_log_refuses_every_update_delete_and_truncate() {
    // Arrange
    let (_env, pool) = migrated().await;
    audit::record(
        &pool,
        &audit::Entry {
            tenant: "demo",
            actor: "an",
            action: Action::DeadLetterReplay,
            object: Some("7"),
            address: Some("127.0.0.1"),
            detail: json!({"replayed_ids": [7]}),
        },
    )
    .await
    .unwrap();
    let client = pool.get().await.unwrap();

    // Act
    let update = client
        .execute("UPDATE console.audit_log SET actor = 'someone else'", &[])
        .await;
    let delete = client.execute("DELETE FROM console.audit_log", &[]).await;
    let truncate = client.batch_execute("TRUNCATE console.audit_log").await;

    // Assert
    for refused in [update.map(|_| ()), delete.map(|_| ()), truncate] {
        let e = refused.expect_err("the audit log is append-only");
        assert!(
            e.as_db_error().unwrap().message().contains("append-only"),
            "{e}"
        );
    }
    let entries = audit::list(&pool, "demo", None, None, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].action.as_str()),
        ("an", "dead_letter_replay")
    );
    assert!(audit::list(&pool, "other", None, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_a_success_before_them_does_not_count() {
    // Arrange
    let (_env, pool) = migrated().await;
    for _ in 0..2 {
        lockout::record(&pool, "demo", "an", "10.0.0.1", false)
            .await
            .unwrap();
    }
    lockout::record(&pool, "demo", "an", "10.0.0.1", true)
        .await
        .unwrap();
    lockout::record(&pool, "demo", "an", "10.0.0.2", false)
        .await
        .unwrap();
    lockout::record(&pool, "demo", "an", "10.0.0.3", false)
        .await
        .unwrap();

    // Act: two failures since the success: not locked yet; a third locks.
    let before = lockout::check(&pool, &POLICY, "demo", "an", "10.0.0.9")
        .await
        .unwrap();
    lockout::record(&pool, "demo", "an", "10.0.0.4", false)
        .await
        .unwrap();
    let after = lockout::check(&pool, &POLICY, "demo", "an", "10.0.0.9")
        .await
        .unwrap();
    let colleague = lockout::check(&pool, &POLICY, "demo", "binh", "10.0.0.9")
        .await
        .unwrap();

    // Assert
    assert_eq!(before, None);
    assert!(matches!(after, Some(Lock::Account(_))), "{after:?}");
    assert_eq!(colleague, None);
}

#[tokio::test]
async fn failures_from_one_address_lock_that_address_for_every_account() {
    let (_env, pool) = migrated().await;
    for i in 0..5 {
        lockout::record(&pool, "demo", &format!("user{i}"), "10.0.0.66", false)
            .await
            .unwrap();
    }
    let from_there = lockout::check(&pool, &POLICY, "demo", "an", "10.0.0.66")
        .await
        .unwrap();
    let elsewhere = lockout::check(&pool, &POLICY, "demo", "an", "10.0.0.7")
        .await
        .unwrap();
    assert!(
        matches!(from_there, Some(Lock::Address(_))),
        "{from_there:?}"
    );
    assert_eq!(elsewhere, None);
}

#[tokio::test]
async fn a_session_past_its_maximum_age_is_refused_and_deleted() {
    // Arrange
    let (_env, pool) = migrated().await;
    let account = accounts::add(&pool, &new_account("demo", "an", "mật-khẩu-đúng"))
        .await
        .unwrap();
    let policy = SessionPolicy {
        idle: Duration::from_secs(3600),
        max: Duration::from_secs(12 * 3600),
    };
    let live = sessions::start(&pool, &account, "127.0.0.1").await.unwrap();
    let old = sessions::start(&pool, &account, "127.0.0.1").await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .execute(
            "UPDATE console.sessions SET created_at = now() - interval '13 hours' WHERE id_hash = $1",
            &[&sessions::id_hash(&old)],
        )
        .await
        .unwrap();

    // Act
    let found = sessions::find(&pool, &policy, &live).await.unwrap();
    let expired = sessions::find(&pool, &policy, &old).await.unwrap();
    let unknown = sessions::find(&pool, &policy, &sessions::random_token())
        .await
        .unwrap();

    // Assert
    let session = found.expect("a fresh session is live");
    assert_eq!(session.account, account);
    assert_eq!(session.csrf_token.len(), 64);
    assert!(expired.is_none() && unknown.is_none());
    let left: i64 = client
        .query_one("SELECT count(*) FROM console.sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "the expired session was deleted");
    let stored: Vec<u8> = client
        .query_one("SELECT id_hash FROM console.sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(stored, live.as_bytes(), "only the hash is stored");
}
