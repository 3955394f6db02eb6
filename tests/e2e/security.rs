//! Security as an operator meets it, with `loa` as a process: tokens held only as
//! hashes in the tenants file, production mode refusing unsafe settings, metrics on a
//! listener of their own.

use crate::{
    helpers::{receipt_event, wait_ready},
    helpers_process::{base, spawn, Ports},
    tenants_reload::tenant_toml,
};
use loa_platform::testing::TestEnv;
use std::process::Command;

/// Runs `loa tokens new` and reads its two lines: the token and its hash.
fn loa_tokens_new() -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["tokens", "new"])
        .output()
        .expect("the loa binary runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let quoted = |prefix: &str| {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        line.split('"').nth(1).unwrap().to_owned()
    };
    (quoted("token"), quoted("hash"))
}

#[tokio::test]
async fn a_token_from_loa_tokens_new_authenticates_through_its_hash_in_the_tenants_file() {
    // Arrange: the tenants file holds only the hash of the source's token.
    let env = TestEnv::new().await.unwrap();
    let (token, hash) = loa_tokens_new();
    assert!(hash.starts_with("sha256:"), "{hash}");
    let dir = std::env::temp_dir().join(format!("loa-e2e-{}-hashed", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tenants.toml");
    std::fs::write(
        &file,
        tenant_toml("demo", &[&hash], 1, "http://127.0.0.1:1"),
    )
    .unwrap();
    let ports = Ports::free();
    let _intake = spawn(
        "intake",
        &env,
        &ports,
        &[("LOA_TENANTS_FILE", file.to_str().unwrap())],
    );
    let client = reqwest::Client::new();
    let url = base(ports.intake);
    wait_ready(&client, &[&url]).await;
    let post = |bearer: String, id: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(bearer)
                .json(&receipt_event(id, "000.00.06.H56-261128-0001"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // Act + Assert: the token works; the hash itself, stolen from the file, does not.
    assert_eq!(post(token.clone(), "hash-0001").await, 202);
    assert_eq!(post(hash.clone(), "hash-0002").await, 401);
    assert_eq!(post(token[..63].to_owned(), "hash-0003").await, 401);
}

#[tokio::test]
async fn loa_in_production_mode_with_the_defaults_exits_with_one_line_naming_each_setting() {
    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["run", "intake"])
        .env("LOA_MODE", "production")
        .env_remove("LOA_TENANTS_FILE")
        .output()
        .expect("the loa binary runs");

    // Assert
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for expected in [
        "loa: production mode (LOA_MODE=production) refuses to start: ",
        "LOA_TENANTS_FILE",
        "LOA_TRACKER__LOOKUP_SECRET",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
}

#[tokio::test]
async fn loa_secrets_rotate_key_seals_tokens_stored_in_clear_under_a_key_from_loa_secrets_new_key()
{
    // Arrange: a fresh key, and a token row as a notifier before sealing left it.
    let env = TestEnv::new().await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["secrets", "new-key", "--id", "k9"])
        .output()
        .expect("the loa binary runs");
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("k9:") && key.len() == 3 + 64, "{key}");
    let pool = loa_platform::db::pool(&env.database_url, 1).unwrap();
    loa_notifier::migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO notifier.oauth_tokens (tenant, access_token, refresh_token)
             VALUES ('dong-nai', 'plain-access', 'plain-refresh')",
            &[],
        )
        .await
        .unwrap();

    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["secrets", "rotate-key"])
        .env("LOA_DATABASE_URL", &env.database_url)
        .env("LOA_NOTIFIER__TOKEN_KEYS", &key)
        .output()
        .expect("the loa binary runs");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 tenant(s) resealed under key `k9`"),
        "{stdout}"
    );
    let row = client
        .query_one(
            "SELECT access_token, refresh_token FROM notifier.oauth_tokens",
            &[],
        )
        .await
        .unwrap();
    let keyring = loa_notifier::zalo::sealing::Keyring::parse(&key, "notifier.token_keys").unwrap();
    for (i, column, plain) in [
        (0, "access_token", "plain-access"),
        (1, "refresh_token", "plain-refresh"),
    ] {
        let sealed: String = row.get(i);
        assert!(sealed.starts_with("sealed:v1:k9:"), "{sealed}");
        assert_eq!(
            keyring.open("dong-nai", column, &sealed).unwrap().expose(),
            plain
        );
    }
}
