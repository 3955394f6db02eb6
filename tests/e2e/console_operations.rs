//! The console's operations beyond the pages' first tour: the demo account and
//! development mode, the paused tenant explained and resumed, a broadcast scheduled
//! and cancelled (issue 11).

use crate::{
    console::{add_user, http_sign_in},
    helpers::{test_settings, TestSystem},
};

#[tokio::test]
async fn the_demo_account_signs_in_in_development_mode_and_is_removed_once_the_console_runs_outside_it(
) {
    // Arrange: development mode (as scripts/demo runs), the demo account signed in,
    // and an operator's own account beside it.
    let sys = TestSystem::start().await;
    let demo_session = http_sign_in(&sys, "demo", "demo", "demo-password").await;
    add_user(&sys, "demo", "lan", "admin", "mật-khẩu-của-Lan").await;
    let TestSystem { env, system, .. } = sys;
    system.expect("running").stop().await.unwrap();

    // Act: the same database, the console outside development mode.
    let mut settings = test_settings(&env);
    settings.services.console.dev_mode = false;
    let sys = TestSystem::start_with(env, settings).await;
    let demo_again = http_sign_in(&sys, "demo", "demo", "demo-password").await;
    let old_session = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/admin/overview", sys.console))
        .header(
            "Cookie",
            format!(
                "loa_console_session={}",
                demo_session.clone().unwrap_or_default()
            ),
        )
        .send()
        .await
        .unwrap();
    let operator = http_sign_in(&sys, "demo", "lan", "mật-khẩu-của-Lan").await;

    // Assert
    assert!(demo_session.is_some(), "demo signs in in development mode");
    assert_eq!(demo_again, None, "demo cannot sign in outside it");
    assert_eq!(old_session.status(), 303, "its session ended too");
    assert!(operator.is_some(), "an operator's account is kept");
    sys.stop().await;
}
