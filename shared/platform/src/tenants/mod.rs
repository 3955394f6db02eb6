//! Tenants: each province (or agency deployment) with its Zalo app / OA, its upstream
//! sources and its admins. Loaded from a TOML tenants file; without one, a single `demo`
//! tenant wired to the local Zalo sandbox.
//!
//! [`Tenants`] is one immutable, validated version of the file; [`LiveTenants`] holds
//! the version in force and swaps it when the file is reloaded ([`live`]).

pub mod broadcasts;
pub mod live;

pub use broadcasts::{BroadcastSettings, QuietHours};
pub use live::LiveTenants;

use crate::{config::ConfigError, credential::Credential, Secret};
use loa_contracts::NotificationKind;
use serde::Deserialize;
use std::{collections::BTreeMap, path::Path, sync::Arc};

/// One tenant.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantSettings {
    /// Short id used in events, routing keys and metrics labels (`demo`, `dong-nai`).
    pub id: String,
    /// Display name, in Vietnamese (`Trung tâm Phục vụ hành chính công tỉnh Đồng Nai`).
    pub name: String,
    /// Upstream systems allowed to publish events for this tenant.
    #[serde(default)]
    pub sources: Vec<SourceSettings>,
    /// Bearer tokens of this tenant's admins (dossier API, broadcasts, dead letters),
    /// each in clear or as a hash ([`Credential`]: `sha256:<hex>`, an argon2 string).
    #[serde(default)]
    pub admin_tokens: Vec<Credential>,
    /// The tenant's Zalo app and OA.
    pub zalo: ZaloAppSettings,
    /// Policy broadcasts: quiet hours, Article broadcasts.
    #[serde(default)]
    pub broadcasts: BroadcastSettings,
    /// Days after a dossier's last event its personal data is kept: then the names and
    /// phones in its history are reduced to masked forms and its phone search keys
    /// removed (Decree 13/2023: no longer than the purpose needs). Unset: kept.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Days a citizen may still change the rating they gave a dossier, counted from
    /// the first rating (one rating per dossier; a change replaces it).
    #[serde(default = "default_rating_window_days")]
    pub rating_window_days: u32,
}

fn default_rating_window_days() -> u32 {
    7
}

/// An upstream one-stop system and its credential.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSettings {
    /// Name for logs and metrics (`mot-cua-dong-nai`).
    pub id: String,
    /// Bearer token it presents to intake, in clear or as a hash ([`Credential`]).
    pub token: Credential,
}

/// A Zalo app linked to an Official Account.
#[derive(Debug, Clone, Deserialize)]
pub struct ZaloAppSettings {
    /// Zalo app id (decimal string).
    pub app_id: String,
    /// App secret key, sent as `secret_key` when refreshing tokens.
    pub app_secret: Secret,
    /// Official Account id.
    pub oa_id: String,
    /// OA secret key, which signs webhooks (not the app secret).
    pub oa_secret_key: Secret,
    /// The refresh token an admin obtained by authorising the OA. Only a seed: the
    /// notifier stores every rotated token in its database and uses that from then on.
    pub refresh_token: Secret,
    /// Base URL of the OA API (`https://openapi.zalo.me`).
    pub openapi_url: String,
    /// Base URL of the ZNS API (`https://business.openapi.zalo.me`).
    pub business_url: String,
    /// Base URL of OAuth (`https://oauth.zaloapp.com`).
    pub oauth_url: String,
    /// Approved ZNS template id per notification kind (`receipt = "410001"`).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Sustained request rate allowed towards Zalo for this app.
    #[serde(default = "default_rate")]
    pub rate_per_second: f64,
    /// Burst on top of the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Share of the daily ZNS quota kept for case updates; broadcasts stop first.
    #[serde(default = "default_reserve")]
    pub transactional_reserve: f64,
    /// Whether the `rating_request` template is registered as Zalo's service-rating
    /// template (type 5), so a citizen rates inside Zalo. Only then is the rating
    /// request sent by ZNS (paid per message); otherwise a ZNS-only citizen gets one
    /// message at status 10, the result's, which links to the rating form, and the
    /// rating request goes to followers of the OA only (free).
    #[serde(default)]
    pub zns_rating_template: bool,
}

fn default_rate() -> f64 {
    50.0
}
fn default_burst() -> u32 {
    50
}
fn default_reserve() -> f64 {
    0.2
}

impl ZaloAppSettings {
    /// The template id for a kind, if the tenant has one approved.
    pub fn template_for(&self, kind: NotificationKind) -> Option<&str> {
        self.templates.get(kind.as_str()).map(String::as_str)
    }

    /// Points every Zalo base URL at one host (the sandbox).
    pub fn point_at(&mut self, base_url: &str) {
        let base = base_url.trim_end_matches('/').to_owned();
        self.openapi_url = base.clone();
        self.business_url = base.clone();
        self.oauth_url = base;
    }
}

/// The file shape: `[[tenants]]` tables.
#[derive(Debug, Deserialize)]
struct TenantsFile {
    tenants: Vec<TenantSettings>,
}

/// All tenants, with the look-ups the services need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tenants {
    list: Arc<Vec<TenantSettings>>,
    /// The console's service credential: with it and an `X-Loa-Tenant` header, the
    /// admin APIs act for that tenant (see [`crate::http::admin_tenant`]).
    service_token: Option<Secret>,
}

impl Tenants {
    /// Wraps a validated list.
    pub fn new(list: Vec<TenantSettings>) -> Result<Self, ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for t in &list {
            if !seen.insert(t.id.clone()) {
                return Err(ConfigError::Value {
                    key: format!("tenants.{}", t.id),
                    why: "duplicate tenant id".into(),
                });
            }
            for key in t.zalo.templates.keys() {
                if NotificationKind::from_name(key).is_none() {
                    return Err(ConfigError::Value {
                        key: format!("tenants.{}.zalo.templates.{key}", t.id),
                        why: "unknown notification kind".into(),
                    });
                }
            }
        }
        Ok(Self {
            list: Arc::new(list),
            service_token: None,
        })
    }

    /// The same tenants, whose admin APIs also accept `token` (the console's service
    /// credential) together with an explicit tenant header.
    pub fn with_service_token(mut self, token: Secret) -> Self {
        self.service_token = Some(token);
        self
    }

    /// The service credential the admin APIs accept, if one is configured.
    pub fn service_token(&self) -> Option<&Secret> {
        self.service_token.as_ref()
    }

    /// Loads the tenants file, or the demo tenant when there is none.
    pub fn load(file: Option<&Path>, sandbox_url: &str) -> Result<Self, ConfigError> {
        match file {
            None => Self::new(vec![demo_tenant(sandbox_url)]),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Value {
                    key: "tenants_file".into(),
                    why: format!("cannot read {}: {e}", path.display()),
                })?;
                let file: TenantsFile = toml::from_str(&text).map_err(|e| ConfigError::Value {
                    key: "tenants_file".into(),
                    why: e.to_string(),
                })?;
                Self::new(file.tenants)
            }
        }
    }

    /// Every tenant.
    pub fn all(&self) -> &[TenantSettings] {
        &self.list
    }

    /// A tenant by id.
    pub fn get(&self, id: &str) -> Option<&TenantSettings> {
        self.list.iter().find(|t| t.id == id)
    }

    /// The tenant and source that own a bearer token presented to intake.
    pub fn source_by_token(&self, token: &str) -> Option<(&TenantSettings, &SourceSettings)> {
        self.list.iter().find_map(|t| {
            t.sources
                .iter()
                .find(|s| s.token.matches(token))
                .map(|s| (t, s))
        })
    }

    /// The tenant whose admin presents this bearer token.
    pub fn tenant_by_admin_token(&self, token: &str) -> Option<&TenantSettings> {
        self.list
            .iter()
            .find(|t| t.admin_tokens.iter().any(|a| a.matches(token)))
    }

    /// The tenant owning a Zalo app id (webhooks carry it).
    pub fn by_app_id(&self, app_id: &str) -> Option<&TenantSettings> {
        self.list.iter().find(|t| t.zalo.app_id == app_id)
    }

    /// Points every tenant's Zalo URLs at `base_url`; for tests and the demo.
    pub fn pointed_at(&self, base_url: &str) -> Self {
        let list = self
            .list
            .iter()
            .cloned()
            .map(|mut t| {
                t.zalo.point_at(base_url);
                t
            })
            .collect();
        Self {
            list: Arc::new(list),
            service_token: self.service_token.clone(),
        }
    }
}

/// The built-in demo tenant: upstream token `demo-token`, admin token `demo-admin`,
/// a Zalo app pointing at the sandbox with a template for every notification kind.
pub fn demo_tenant(sandbox_url: &str) -> TenantSettings {
    let mut zalo = ZaloAppSettings {
        app_id: "1000000000000000001".into(),
        app_secret: Secret::new("demo-app-secret"),
        oa_id: "2000000000000000001".into(),
        oa_secret_key: Secret::new("demo-oa-secret-key"),
        refresh_token: Secret::new("demo-refresh-token"),
        openapi_url: String::new(),
        business_url: String::new(),
        oauth_url: String::new(),
        templates: NotificationKind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), k.default_template_id().to_owned()))
            .collect(),
        rate_per_second: default_rate(),
        burst: default_burst(),
        transactional_reserve: default_reserve(),
        // The sandbox's demo rating template (410012) stands for a type-5 one.
        zns_rating_template: true,
    };
    zalo.point_at(sandbox_url);
    TenantSettings {
        id: "demo".into(),
        name: "Trung tâm Phục vụ hành chính công (demo)".into(),
        sources: vec![SourceSettings {
            id: "demo-one-stop".into(),
            token: Credential::new("demo-token"),
        }],
        admin_tokens: vec![Credential::new("demo-admin")],
        zalo,
        broadcasts: BroadcastSettings::default(),
        retention_days: None,
        rating_window_days: default_rating_window_days(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_file_parses_and_tokens_resolve_to_their_tenant() {
        let text = r#"
            [[tenants]]
            id = "dong-nai"
            name = "Đồng Nai"
            admin_tokens = ["dn-admin"]
            sources = [{ id = "mot-cua", token = "dn-source" }]
            [tenants.zalo]
            app_id = "1"
            app_secret = "s"
            oa_id = "2"
            oa_secret_key = "k"
            refresh_token = "r"
            openapi_url = "https://openapi.zalo.me"
            business_url = "https://business.openapi.zalo.me"
            oauth_url = "https://oauth.zaloapp.com"
            templates = { receipt = "1234" }
        "#;
        let file: TenantsFile = toml::from_str(text).unwrap();
        let tenants = Tenants::new(file.tenants).unwrap();
        assert_eq!(
            tenants.source_by_token("dn-source").unwrap().0.id,
            "dong-nai"
        );
        assert!(tenants.source_by_token("dn-admin").is_none());
        assert_eq!(
            tenants.tenant_by_admin_token("dn-admin").unwrap().id,
            "dong-nai"
        );
        assert_eq!(
            tenants
                .get("dong-nai")
                .unwrap()
                .zalo
                .template_for(NotificationKind::Receipt),
            Some("1234")
        );
    }
}
