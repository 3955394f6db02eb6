//! Clients that misbehave: one address walking the public lookup page, a proxy header
//! written by the client itself, tokens of the wrong kind, and an address guessing
//! admin tokens.

use crate::helpers::*;
use loa_platform::{http::HttpSettings, testing::TestEnv};
use loa_tracker::TrackerSettings;
use serde_json::Value;

fn limited(per_minute: u32, burst: u32) -> TrackerSettings {
    TrackerSettings {
        lookup_rate_per_minute: per_minute,
        lookup_burst: burst,
        ..settings(true)
    }
}

async fn lookup(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().get(format!("{}/tra-cuu/{}", app.address, "0".repeat(24)));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn one_address_walking_the_lookup_page_gets_429_with_retry_after() {
    // Arrange: 6 a minute, a burst of 2 (so 3 at once).
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, limited(6, 2)).await;

    // Act
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(lookup(&app, None).await);
    }

    // Assert: three unknown-token pages, then a refusal saying when to come back.
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [404, 404, 404, 429]);
    let refused = statuses.pop().unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    app.stop().await;
}

#[tokio::test]
async fn a_forwarded_for_header_counts_only_when_the_deployment_trusts_it() {
    // Arrange: one tracker without a proxy, one behind a trusted one on loopback.
    let env = TestEnv::new().await.unwrap();
    let direct = TestApp::spawn(&env, limited(6, 0)).await;
    let env2 = TestEnv::new().await.unwrap();
    let proxied = TestApp::spawn_with_http(
        &env2,
        limited(6, 0),
        HttpSettings {
            client_ip_header: Some("X-Forwarded-For".into()),
            trusted_proxies: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
    )
    .await;

    // Act + Assert: a client writing its own header gains nothing without a proxy…
    assert_eq!(lookup(&direct, Some("198.51.100.1")).await.status(), 404);
    assert_eq!(lookup(&direct, Some("198.51.100.2")).await.status(), 429);
    // …and behind the proxy each client it names has its own allowance.
    assert_eq!(lookup(&proxied, Some("198.51.100.1")).await.status(), 404);
    assert_eq!(lookup(&proxied, Some("198.51.100.2")).await.status(), 404);
    assert_eq!(lookup(&proxied, Some("198.51.100.1")).await.status(), 429);
    direct.stop().await;
    proxied.stop().await;
}

async fn get_dossier(app: &TestApp, authorization: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/v1/dossiers/NOPE-1", app.address))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_api_takes_the_bearer_scheme_in_any_case_and_names_a_wrong_kind_of_token() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(true)).await;

    // Act
    let lowercase = get_dossier(&app, "bearer demo-admin").await;
    let source_token = get_dossier(&app, "Bearer demo-token").await;

    // Assert
    assert_eq!(
        lowercase.status(),
        404,
        "authenticated; the dossier is unknown"
    );
    assert_eq!(source_token.status(), 403);
    let body: Value = source_token.json().await.unwrap();
    assert_eq!(body["error"]["code"], "wrong_token_kind");
    assert_eq!(body["error"]["field"], "Authorization");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_address_that_keeps_failing_to_authenticate_is_held_back() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(true)).await;

    // Act: five wrong tokens are free; the sixth holds the address back.
    for _ in 0..6 {
        assert_eq!(get_dossier(&app, "Bearer guess").await.status(), 401);
    }
    let held = get_dossier(&app, "Bearer demo-admin").await;

    // Assert: even the right token waits, and is told for how long.
    assert_eq!(held.status(), 429);
    assert_eq!(held.headers()["retry-after"], "1");
    let body: Value = held.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failed_authentications");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get_dossier(&app, "Bearer demo-admin").await.status(), 404);
    assert_eq!(
        get_dossier(&app, "Bearer guess").await.status(),
        401,
        "a success forgot the failures"
    );
    app.stop().await;
}
