//! The admin console's test steps every console test takes: creating an account as
//! `loa console add-user` does, signing in (in the browser or over plain HTTP), and
//! reading the system's database while waiting for the pipeline.

use crate::{helpers::TestSystem, helpers_webdriver::Browser};
use loa::console::ConsoleCommand;
use loa_platform::testing::eventually;
use std::time::Duration;
use tokio_postgres::types::{FromSqlOwned, ToSql};

/// How long a console test waits for the pipeline or a page (the whole system shares
/// the machine with the browser).
pub const WAIT: Duration = Duration::from_secs(30);

/// Creates an account the way `loa console add-user` does.
pub async fn add_user(sys: &TestSystem, tenant: &str, username: &str, role: &str, password: &str) {
    let settings = crate::helpers::test_settings(&sys.env);
    loa::console::run(
        ConsoleCommand::AddUser {
            tenant: tenant.into(),
            username: username.into(),
            display_name: format!("Cán bộ {username}"),
            role: role.into(),
            password: Some(password.into()),
        },
        &settings,
    )
    .await
    .expect("the account is created");
}

/// Signs in through the form (the answer is the overview, or the form with an error).
pub async fn sign_in(
    browser: &Browser,
    sys: &TestSystem,
    tenant: Option<&str>,
    username: &str,
    password: &str,
) {
    browser.goto(&format!("{}/admin/", sys.console)).await;
    assert!(
        browser.url().await.ends_with("/admin/sign-in"),
        "{}",
        browser.url().await
    );
    if let Some(tenant) = tenant {
        browser
            .check(&format!("select[name=tenant] option[value={tenant}]"))
            .await;
    }
    browser.fill("#username", username).await;
    browser.fill("#password", password).await;
    browser.click("button[type=submit]").await;
    // The answer is the overview (signed in) or the form again with an error.
    eventually(WAIT, || async {
        let signed_in = browser.url().await.ends_with("/admin/overview");
        (signed_in || !browser.find_all(".notice.error").await.is_empty()).then_some(())
    })
    .await
    .expect("the sign-in was answered");
}

/// Signs in over plain HTTP (the form's CSRF cookie and field, as a browser sends
/// them) and returns the session cookie's value, or `None` when refused.
pub async fn http_sign_in(
    sys: &TestSystem,
    tenant: &str,
    username: &str,
    password: &str,
) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let form = client
        .get(format!("{}/admin/sign-in", sys.console))
        .send()
        .await
        .unwrap();
    let csrf = cookie(&form, "loa_console_signin").expect("a sign-in cookie");
    let answer = client
        .post(format!("{}/admin/sign-in", sys.console))
        .header("Cookie", format!("loa_console_signin={csrf}"))
        .form(&[
            ("tenant", tenant),
            ("username", username),
            ("password", password),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    cookie(&answer, "loa_console_session")
}

/// A connection to the system's database.
pub async fn db(sys: &TestSystem) -> deadpool_postgres::Object {
    loa_platform::db::pool(&sys.env.database_url, 1)
        .unwrap()
        .get()
        .await
        .unwrap()
}

/// A browser of its own signed in to the console as `username` of `tenant`: the
/// set-up of every test that acts on a page as an official. Asserts that the sign-in
/// led to the overview, so that a wrong account fails here and not on a later page.
pub async fn signed_in_browser(
    sys: &TestSystem,
    tenant: &str,
    username: &str,
    password: &str,
) -> Browser {
    let browser = Browser::start().await;
    sign_in(&browser, sys, Some(tenant), username, password).await;
    assert!(
        browser.url().await.ends_with("/admin/overview"),
        "{username} of {tenant} is signed in: {}",
        browser.url().await
    );
    browser
}

/// Waits until `sql` returns a row and gives its first column: what the pipeline
/// writes asynchronously (a dead letter, a pause, a reply) is awaited this way before
/// a page shows it.
pub async fn eventually_first<T: FromSqlOwned>(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &str,
) -> T {
    eventually(WAIT, || async {
        client.query_opt(sql, params).await.ok()?.map(|r| r.get(0))
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The first column of every row `sql` returns (the audit log's actions or actors,
/// in order).
pub async fn first_column<T: FromSqlOwned>(client: &tokio_postgres::Client, sql: &str) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The id a page's address ends with (`/admin/broadcasts/<id>?created=1`): where the
/// console goes after creating something, so the test learns the new record's id.
pub async fn id_in_url(browser: &Browser) -> String {
    let url = browser.url().await;
    let path = url.split('?').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_owned()
}
