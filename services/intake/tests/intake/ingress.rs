//! The AMQP ingress path: whose dead letter a refused message is, and what it keeps.

use crate::helpers::*;
use lapin::message::Delivery;
use loa_platform::{
    amqp::{
        consumer::{H_SOURCE, H_TENANT},
        topology,
    },
    testing::TestEnv,
};

/// The dead letter whose body is `body`.
fn letter_of<'a>(dead: &'a [Delivery], body: &[u8]) -> &'a Delivery {
    dead.iter()
        .find(|d| d.data == body)
        .unwrap_or_else(|| panic!("no dead letter with body {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn an_ingress_dead_letter_names_only_the_tenant_whose_token_was_verified() {
    // Arrange: no token with a body and a forged header naming `demo`; demo's token
    // with a body for `other`; demo's token with a body that is not JSON.
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let anonymous = serde_json::to_vec(&event("anon-1")).unwrap();
    let mut for_other = event("foreign-1");
    for_other["tenant"] = "other".into();
    let for_other = serde_json::to_vec(&for_other).unwrap();
    let garbage = b"{not json".to_vec();

    // Act
    app.publish_ingress(
        &[(H_TENANT, "demo"), (H_SOURCE, "demo-one-stop")],
        &anonymous,
    )
    .await;
    app.publish_ingress(
        &[("x-loa-token", "demo-token"), (H_TENANT, "other")],
        &for_other,
    )
    .await;
    app.publish_ingress(&[("x-loa-token", "demo-token")], &garbage)
        .await;

    // Assert
    let dead = app.wait_for(topology::Q_DEAD, 3).await;
    let anonymous = letter_of(&dead, &anonymous);
    assert!(header(anonymous, topology::H_REASON)
        .unwrap()
        .starts_with("unauthorized"));
    assert_eq!(
        header(anonymous, H_TENANT),
        None,
        "the forged tenant is dropped"
    );
    assert_eq!(header(anonymous, H_SOURCE), None);
    let foreign = letter_of(&dead, &for_other);
    assert!(header(foreign, topology::H_REASON)
        .unwrap()
        .starts_with("forbidden"));
    assert_eq!(
        header(foreign, H_TENANT).as_deref(),
        Some("demo"),
        "the tenant of the token, not the body's nor the forged header's"
    );
    assert_eq!(header(foreign, H_SOURCE).as_deref(), Some("demo-one-stop"));
    let undecodable = letter_of(&dead, &garbage);
    assert!(header(undecodable, topology::H_REASON)
        .unwrap()
        .starts_with("invalid_json"));
    assert_eq!(
        header(undecodable, H_TENANT).as_deref(),
        Some("demo"),
        "a valid token with a bad body still reaches its tenant's admins"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_ingress_dead_letter_never_carries_the_token_and_keeps_the_publishers_other_headers() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    // Act: an admin token sent by mistake, then a valid source token, both refused.
    app.publish_ingress(
        &[("x-loa-token", "demo-admin"), ("traceparent", trace)],
        b"{\"a\":1}",
    )
    .await;
    app.publish_ingress(
        &[
            ("x-loa-token", "demo-token"),
            ("Authorization", "Bearer demo-token"),
            ("x-death", "forged"),
            ("x-loa-reason", "forged"),
        ],
        b"{\"b\":2}",
    )
    .await;

    // Assert
    let dead = app.wait_for(topology::Q_DEAD, 2).await;
    for letter in &dead {
        let headers = letter.properties.headers().clone().unwrap_or_default();
        let names: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
        for credential in ["x-loa-token", "Authorization", "authorization"] {
            assert!(!names.contains(&credential), "{credential} kept: {names:?}");
        }
        assert!(!names.contains(&"x-death"), "{names:?}");
        assert_ne!(
            header(letter, topology::H_REASON).as_deref(),
            Some("forged")
        );
    }
    let first = letter_of(&dead, b"{\"a\":1}");
    assert_eq!(header(first, "traceparent").as_deref(), Some(trace));
    assert_eq!(
        header(first, H_TENANT),
        None,
        "an admin token is no source token"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_forwarded_event_carries_the_verified_tenant_whatever_the_publisher_claimed() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;

    // Act
    app.publish_ingress(
        &[("x-loa-token", "demo-token"), (H_TENANT, "other")],
        &serde_json::to_vec(&event("fwd-1")).unwrap(),
    )
    .await;
    let (status, _) = app.post_event("demo-token", &event("fwd-2")).await;

    // Assert
    assert_eq!(status, 202);
    let forwarded = app.wait_for(topology::Q_TRACKER_EVENTS, 2).await;
    for message in &forwarded {
        assert_eq!(header(message, H_TENANT).as_deref(), Some("demo"));
        assert_eq!(header(message, "x-loa-token"), None);
    }
    app.stop().await;
}
