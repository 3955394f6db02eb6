use crate::helpers::{spawn_app, spawn_app_for, test_settings, PHONE};
use serde_json::Value;

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_a_reused_refresh_token_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let seed = app.tenant.zalo.refresh_token.expose().to_owned();

    // Act
    let first = app.refresh(&seed).await;
    let reused_seed = app.refresh(&seed).await;
    let second = app.refresh(first["refresh_token"].as_str().unwrap()).await;
    let reused_first = app.refresh(first["refresh_token"].as_str().unwrap()).await;

    // Assert
    assert_eq!(first["expires_in"], "90000");
    assert!(first["access_token"].as_str().unwrap().len() > 20);
    assert_ne!(first["refresh_token"], Value::from(seed));
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert!(first.get("error").is_none(), "success is flat: {first}");
    for refused in [reused_seed, reused_first] {
        assert_eq!(refused["error"], -14014, "{refused}");
        assert_eq!(refused["error_name"], "Invalid refresh token");
        assert!(refused["error_description"].is_string());
    }
}

#[tokio::test]
async fn refresh_with_a_wrong_secret_or_an_unknown_app_is_refused() {
    let app = spawn_app().await;
    let seed = app.tenant.zalo.refresh_token.expose().to_owned();

    let wrong_secret = app.refresh_as(app.app_id(), "nope", &seed).await;
    let unknown_app = app
        .refresh_as("42", app.tenant.zalo.app_secret.expose(), &seed)
        .await;

    assert_eq!(wrong_secret["error"], -14002);
    assert_eq!(unknown_app["error"], -14002);
    // Refusals did not spend the seed.
    assert!(app.refresh(&seed).await["access_token"].is_string());
}

#[tokio::test]
async fn tokens_survive_a_sandbox_restart_without_state() {
    // Arrange: a first sandbox issues a token pair.
    let first = spawn_app().await;
    let pair = first
        .refresh(first.tenant.zalo.refresh_token.expose())
        .await;

    // Act: a second sandbox with the same tenants sees the tokens.
    let second = spawn_app_for(test_settings(), first.tenants.clone()).await;
    let sent = second
        .send_zns(
            pair["access_token"].as_str().unwrap(),
            &second.zns_body(PHONE, "t-restart"),
        )
        .await;
    let rotated = second
        .refresh(pair["refresh_token"].as_str().unwrap())
        .await;

    // Assert
    assert_eq!(sent["error"], 0, "{sent}");
    assert!(rotated["access_token"].is_string(), "{rotated}");
}

#[tokio::test]
async fn access_tokens_expire_with_the_sandbox_clock_and_on_demand() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    let body = app.zns_body(PHONE, "t-expiry");
    assert_eq!(app.send_zns(&token, &body).await["error"], 0);

    // 25 h later the token has expired: -124 on ZNS, -216 on OA paths.
    app.control_ok("clock", serde_json::json!({"offset_secs": 90_001}))
        .await;
    assert_eq!(app.send_zns(&token, &body).await["error"], -124);
    assert_eq!(app.send_cs(&token, "u1", "hi").await["error"], -216);
    app.control_ok("clock", serde_json::json!({"now": null}))
        .await;
    assert_eq!(app.send_zns(&token, &body).await["error"], 0);

    // Expiring every token mid-stream; a refreshed one works again.
    app.control_ok("tokens/expire", serde_json::json!({})).await;
    assert_eq!(app.send_zns(&token, &body).await["error"], -124);
    let fresh = app.access_token().await;
    assert_eq!(app.send_zns(&fresh, &body).await["error"], 0);
}

#[tokio::test]
async fn an_oa_admins_consent_grants_a_single_use_code_that_only_its_pkce_verifier_redeems() {
    // Arrange: a verifier and its S256 challenge (RFC 7636, appendix B).
    let app = spawn_app().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent_form = [
        ("app_id", app.app_id()),
        ("redirect_uri", "https://loa.example.vn/admin/zalo/callback"),
        ("code_challenge", challenge),
        ("state", "s t&ate"),
    ];

    // Act: the consent page, the admin's approval, then the code exchange.
    let page = no_redirects
        .get(format!("{}/v4/oa/permission", app.base))
        .query(&consent_form)
        .send()
        .await
        .unwrap();
    let page_status = page.status().as_u16();
    let page = page.text().await.unwrap();
    let approved = no_redirects
        .post(format!("{}/v4/oa/permission", app.base))
        .form(&consent_form)
        .send()
        .await
        .unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    let code = location
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();
    let exchange = |verifier: &'static str, code: String| {
        app.client
            .post(format!("{}/v4/oa/access_token", app.base))
            .header("secret_key", app.tenant.zalo.app_secret.expose())
            .form(&[
                ("code", code.as_str()),
                ("app_id", app.app_id()),
                ("grant_type", "authorization_code"),
                ("code_verifier", verifier),
            ])
            .send()
    };
    let wrong: Value = exchange("not-the-verifier-of-this-code-0000000000000", code.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let approved_again = no_redirects
        .post(format!("{}/v4/oa/permission", app.base))
        .form(&consent_form)
        .send()
        .await
        .unwrap();
    let second_code = approved_again.headers()["location"]
        .to_str()
        .unwrap()
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();
    let pair: Value = exchange(verifier, second_code.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reused: Value = exchange(verifier, second_code)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(page_status, 200);
    assert!(
        page.contains("Cấp quyền cho ứng dụng") && page.contains("Đồng ý"),
        "{page}"
    );
    assert_eq!(approved.status(), 302);
    assert!(
        location.starts_with("https://loa.example.vn/admin/zalo/callback?code=zac1."),
        "{location}"
    );
    assert!(
        location.ends_with(&format!(
            "&oa_id={}&state=s%20t%26ate",
            app.tenant.zalo.oa_id
        )),
        "{location}"
    );
    assert_eq!(wrong["error"], -14001, "{wrong}");
    assert!(
        pair["access_token"].is_string() && pair["refresh_token"].is_string(),
        "{pair}"
    );
    assert_eq!(pair["expires_in"], "90000");
    assert_eq!(reused["error"], -14001, "a code is single use: {reused}");
    let refreshed = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert!(
        refreshed["access_token"].is_string(),
        "the new refresh token works: {refreshed}"
    );
}
