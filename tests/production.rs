//! Production mode (`mode = "production"`): every unsafe default refused at once, each
//! naming its setting; listeners kept on loopback unless their address is stated.

use loa::settings::Settings;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loa-prod-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const LONG: &str = "0123456789abcdef0123456789abcdef-long-enough";

fn tenants_toml(source_token: &str, admin_token: &str, secret: &str, zalo_url: &str) -> String {
    format!(
        r#"
[[tenants]]
id = "dong-nai"
name = "Đồng Nai"
admin_tokens = ["{admin_token}"]
sources = [{{ id = "mot-cua", token = "{source_token}" }}]
[tenants.zalo]
app_id = "1"
app_secret = "{secret}"
oa_id = "2"
oa_secret_key = "zalo-issued-oa-key"
refresh_token = "zalo-issued-refresh"
openapi_url = "{zalo_url}"
business_url = "https://business.openapi.zalo.me"
oauth_url = "https://oauth.zaloapp.com"
"#
    )
}

fn refusal(config: &Path) -> String {
    format!("{:#}", Settings::load(Some(config)).unwrap_err())
}

#[test]
fn production_mode_refuses_the_development_defaults_naming_each_setting() {
    // Arrange: production, and nothing else said.
    let dir = scratch("defaults");
    let config = write(&dir, "loa.toml", "mode = \"production\"\n");

    // Act
    let message = refusal(&config);

    // Assert: each default named with its environment variable, all in one message.
    for expected in [
        "production mode (LOA_MODE=production) refuses to start",
        "tenants_file (LOA_TENANTS_FILE) is not set",
        "tracker.lookup_secret (LOA_TRACKER__LOOKUP_SECRET) is the development default",
        "tenants.demo.zalo.openapi_url (in the tenants file) is the Zalo sandbox",
        "tenants.demo.sources.demo-one-stop.token (in the tenants file) is a demo value",
        "notifier.token_keys (LOA_NOTIFIER__TOKEN_KEYS) is not set",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn production_mode_refuses_change_me_values_short_secrets_and_plain_http_zalo() {
    // Arrange: the examples' placeholders, a short token, a console in development mode.
    let dir = scratch("placeholders");
    let tenants = write(
        &dir,
        "tenants.toml",
        &tenants_toml("short-token", LONG, "CHANGE-ME", "http://127.0.0.1:8090"),
    );
    let config = write(
        &dir,
        "loa.toml",
        &format!(
            "mode = \"production\"\ntenants_file = {tenants:?}\n\
             amqp_url = \"amqp://loa:CHANGE-ME@rabbitmq:5672/loa\"\n\
             service_token = \"CHANGE-ME-another-32-random-bytes-xx\"\n\
             [tracker]\nlookup_secret = \"too-short\"\n[console]\ndev_mode = true\n"
        ),
    );

    // Act
    let message = refusal(&config);

    // Assert
    for expected in [
        "amqp_url (LOA_AMQP_URL) still holds the example's CHANGE-ME password",
        "service_token (LOA_SERVICE_TOKEN) is still the example's CHANGE-ME value",
        "tracker.lookup_secret (LOA_TRACKER__LOOKUP_SECRET) is shorter than 32 bytes",
        "console.dev_mode (LOA_CONSOLE__DEV_MODE) is on",
        "tenants.dong-nai.sources.mot-cua.token (in the tenants file) is shorter than 32 bytes",
        "tenants.dong-nai.zalo.app_secret (in the tenants file) is an example or demo value",
        "tenants.dong-nai.zalo.openapi_url (in the tenants file) is the Zalo sandbox",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert!(
        !message.contains("admin_tokens"),
        "the long admin token is fine"
    );
    assert!(
        !message.contains("oa_secret_key"),
        "Zalo's own secrets may be short"
    );
}

#[test]
fn a_safe_production_configuration_loads_and_keeps_unstated_listeners_on_loopback() {
    // Arrange: hashed tokens, https Zalo, real secrets; only the console's address said.
    let dir = scratch("safe");
    let (_, hashed) = loa_platform::credential::new_token();
    let key = loa_notifier::zalo::sealing::new_key("k1");
    let tenants = write(
        &dir,
        "tenants.toml",
        &tenants_toml(
            &hashed,
            LONG,
            "zalo-issued-app-secret",
            "https://openapi.zalo.me",
        ),
    );
    let config = write(
        &dir,
        "loa.toml",
        &format!(
            "mode = \"production\"\ntenants_file = {tenants:?}\n\
             [tracker]\nlookup_secret = {LONG:?}\n[console]\nbind = \"0.0.0.0:8083\"\n\
             [notifier]\ntoken_keys = {key:?}\n"
        ),
    );

    // Act
    let settings = Settings::load(Some(&config)).expect("a safe configuration loads");

    // Assert
    assert_eq!(settings.services.intake.bind, "127.0.0.1:8080");
    assert_eq!(settings.services.tracker.bind, "127.0.0.1:8081");
    assert_eq!(settings.services.notifier.bind, "127.0.0.1:8082");
    assert_eq!(
        settings.services.console.bind, "0.0.0.0:8083",
        "stated: kept"
    );
}

#[test]
fn development_mode_keeps_its_defaults() {
    let settings = Settings::load(None).unwrap();
    assert_eq!(settings.services.intake.bind, "0.0.0.0:8080");
}
