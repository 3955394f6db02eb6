//! Production mode (`mode = "production"`, `LOA_MODE=production`): the defaults that
//! make Loa easy to try are exactly what a province's deployment must not run with.
//! [`check`] lists every such setting at once, each with its key and environment
//! variable, and `loa` refuses to start while any remains; [`bind_loopback_unless_stated`]
//! keeps a listener whose address nobody set on 127.0.0.1.
//!
//! Refused: the built-in demo tenant and its public tokens, the sandbox (or any plain
//! `http://` URL) as Zalo, the development lookup secret, `CHANGE-ME` values from the
//! examples, secrets and tokens of ours shorter than 32 bytes, the broker's `guest`
//! account beyond loopback, the console's development mode. Zalo's own app and OA secrets are issued
//! by Zalo at whatever length it chooses, so only their `CHANGE-ME` and demo values are
//! refused.

use crate::settings::Settings;
use loa_platform::{
    config::{env_var_of, is_stated, Mode},
    Credential, Secret,
};
use loa_tracker::configuration::DEFAULT_LOOKUP_SECRET;

/// Shortest secret or token of ours production accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// One setting production refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`tracker.lookup_secret`, `tenants.dong-nai.sources.mot-cua.token`).
    pub key: String,
    /// What is wrong and what to do.
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.starts_with("tenants.") {
            write!(f, "{} (in the tenants file) {}", self.key, self.why)
        } else {
            write!(f, "{} ({}) {}", self.key, env_var_of(&self.key), self.why)
        }
    }
}

/// Why `loa` will not start in production mode: every problem, on one line (as every
/// `loa` failure is), separated by `; `.
#[derive(Debug, thiserror::Error)]
#[error(
    "production mode (LOA_MODE=production) refuses to start: {}",
    .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct Refused(pub Vec<Problem>);

fn is_placeholder(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.contains("change-me") || v.contains("change_me") || v.contains("changeme")
}

/// Whether a node of `amqp_url` (a comma-separated list) logs in as `guest:guest`
/// somewhere other than this machine. RabbitMQ lets `guest` in from loopback only, so
/// a broker beside Loa on one small machine may keep it; anywhere else it would mean a
/// broker reconfigured to let its best-known password in from the network.
fn uses_guest_beyond_loopback(amqp_url: &str) -> bool {
    amqp_url.split(',').any(|node| {
        node.split_once("guest:guest@").is_some_and(|(_, rest)| {
            let host = rest.split(['/', ':']).next().unwrap_or_default();
            !matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        })
    })
}

/// Demo values anyone can read in the source.
const DEMO_VALUES: &[&str] = &[
    "demo-token",
    "demo-admin",
    "demo-app-secret",
    "demo-oa-secret-key",
    "demo-refresh-token",
];

/// Every setting of `settings` that production mode refuses (empty: fine).
pub fn check(settings: &Settings) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut refuse = |key: String, why: &str| {
        problems.push(Problem {
            key,
            why: why.to_owned(),
        })
    };
    let common = &settings.common;
    if common.tenants_file.is_none() {
        refuse(
            "tenants_file".into(),
            "is not set: the built-in demo tenant's tokens are public; give the provinces' \
             tenants file",
        );
    }
    let ours = |refuse: &mut dyn FnMut(String, &str), key: String, value: &str| {
        if is_placeholder(value) {
            refuse(
                key,
                "is still the example's CHANGE-ME value; set a real one",
            );
        } else if DEMO_VALUES.contains(&value) {
            refuse(key, "is a demo value anyone can read; set a real one");
        } else if value.len() < MIN_SECRET_BYTES {
            refuse(
                key,
                "is shorter than 32 bytes; use a long random value (`loa tokens new`)",
            );
        }
    };
    let lookup = settings.services.tracker.lookup_secret.expose();
    if lookup == DEFAULT_LOOKUP_SECRET {
        refuse(
            "tracker.lookup_secret".into(),
            "is the development default: anyone could compute every dossier's lookup link; \
             set 32 random bytes once per deployment",
        );
    } else {
        ours(&mut refuse, "tracker.lookup_secret".into(), lookup);
    }
    if let Some(token) = &common.service_token {
        ours(&mut refuse, "service_token".into(), token.expose());
    }
    for (key, url) in [
        ("amqp_url", &common.amqp_url),
        ("database_url", &common.database_url),
    ] {
        if is_placeholder(url) {
            refuse(key.into(), "still holds the example's CHANGE-ME password");
        }
    }
    if uses_guest_beyond_loopback(&common.amqp_url) {
        refuse(
            "amqp_url".into(),
            "uses RabbitMQ's default guest account on another machine; give Loa an \
             account of its own",
        );
    }
    match settings.services.notifier.keyring() {
        Ok(keyring) if keyring.is_development() => refuse(
            "notifier.token_keys".into(),
            "is not set: the Zalo tokens would be sealed with the public development key; \
             set a key from `loa secrets new-key` (or notifier.token_keys_file)",
        ),
        Ok(_) => {}
        Err(e) => refuse("notifier.token_keys".into(), &e.to_string()),
    }
    if settings.services.console.dev_mode {
        refuse(
            "console.dev_mode".into(),
            "is on: session cookies without Secure and a demo account; turn it off",
        );
    }
    for t in settings.tenants.all() {
        let at = |rest: &str| format!("tenants.{}.{rest}", t.id);
        let mut credential = |key: String, c: &Credential| {
            if let Some(plain) = c.plain() {
                ours(&mut refuse, key, plain.expose());
            }
        };
        for s in &t.sources {
            credential(at(&format!("sources.{}.token", s.id)), &s.token);
        }
        for (i, a) in t.admin_tokens.iter().enumerate() {
            credential(at(&format!("admin_tokens[{i}]")), a);
        }
        let z = &t.zalo;
        let zalo_secrets: [(&str, &Secret); 3] = [
            ("zalo.app_secret", &z.app_secret),
            ("zalo.oa_secret_key", &z.oa_secret_key),
            ("zalo.refresh_token", &z.refresh_token),
        ];
        for (key, secret) in zalo_secrets {
            let value = secret.expose();
            if is_placeholder(value) || DEMO_VALUES.contains(&value) {
                refuse(
                    at(key),
                    "is an example or demo value; set the one Zalo issued",
                );
            }
        }
        let sandbox = common.sandbox_url.trim_end_matches('/');
        for (key, url) in [
            ("zalo.openapi_url", &z.openapi_url),
            ("zalo.business_url", &z.business_url),
            ("zalo.oauth_url", &z.oauth_url),
        ] {
            let url = url.trim_end_matches('/');
            if url == sandbox {
                refuse(
                    at(key),
                    "is the Zalo sandbox; production talks to Zalo (https://…)",
                );
            } else if !url.starts_with("https://") {
                refuse(
                    at(key),
                    "is not an https:// URL; production talks to Zalo over TLS",
                );
            }
        }
    }
    problems
}

/// The listeners whose address production mode keeps on loopback unless stated.
const BINDS: &[&str] = &[
    "intake.bind",
    "tracker.bind",
    "notifier.bind",
    "console.bind",
    "sandbox.bind",
];

/// In production, every listener whose address the configuration does not state
/// listens on 127.0.0.1 (its default port kept): a service is exposed only where an
/// operator said so.
pub fn bind_loopback_unless_stated(settings: &mut Settings, stated: &serde_json::Value) {
    if settings.common.mode != Mode::Production {
        return;
    }
    let s = &mut settings.services;
    for key in BINDS {
        if is_stated(stated, key) {
            continue;
        }
        let bind = match *key {
            "intake.bind" => &mut s.intake.bind,
            "tracker.bind" => &mut s.tracker.bind,
            "notifier.bind" => &mut s.notifier.bind,
            "console.bind" => &mut s.console.bind,
            _ => &mut s.sandbox.bind,
        };
        let port = bind.rsplit(':').next().unwrap_or("0").to_owned();
        *bind = format!("127.0.0.1:{port}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_account_is_refused_only_beyond_this_machine() {
        assert!(!uses_guest_beyond_loopback(
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        ));
        assert!(!uses_guest_beyond_loopback(
            "amqp://guest:guest@localhost/loa"
        ));
        assert!(uses_guest_beyond_loopback(
            "amqp://guest:guest@rabbitmq:5672/%2f"
        ));
        assert!(uses_guest_beyond_loopback(
            "amqp://loa:pw@10.0.0.1/loa,amqp://guest:guest@10.0.0.2/loa"
        ));
        assert!(!uses_guest_beyond_loopback("amqp://loa:pw@rabbitmq/loa"));
    }

    #[test]
    fn placeholders_are_found_in_any_spelling() {
        for v in [
            "CHANGE-ME",
            "amqp://loa:change-me@h/loa",
            "x-Change_Me-y",
            "CHANGEME",
        ] {
            assert!(is_placeholder(v), "{v}");
        }
        assert!(!is_placeholder("a-real-secret"));
    }

    #[test]
    fn a_refusal_names_the_environment_variable_or_the_tenants_file() {
        let env = Problem {
            key: "tracker.lookup_secret".into(),
            why: "is bad".into(),
        };
        assert_eq!(
            env.to_string(),
            "tracker.lookup_secret (LOA_TRACKER__LOOKUP_SECRET) is bad"
        );
        let file = Problem {
            key: "tenants.dn.zalo.app_secret".into(),
            why: "is bad".into(),
        };
        assert!(file.to_string().contains("(in the tenants file)"));
    }
}
