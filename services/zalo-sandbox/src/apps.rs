//! The Zalo apps (each linked to one OA) the sandbox knows, registered from the tenants
//! with their approved templates, so sender and fake cannot drift apart.

use crate::zalo::{codes, ZaloError};
use loa_contracts::NotificationKind;
use loa_platform::{Secret, Tenants};
use serde_json::{Map, Value};
use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

/// One Zalo app and its OA. Immutable after start-up.
#[derive(Debug)]
pub struct App {
    /// Position in [`Apps`]; indexes the per-app runtime state.
    pub idx: usize,
    /// The tenant it was registered from (for logs and `getoa`).
    pub tenant_id: String,
    /// OA display name.
    pub name: String,
    /// Zalo app id.
    pub app_id: String,
    /// App secret: checked on refresh, keys the token MACs.
    pub app_secret: Secret,
    /// OA id, the sender of every webhook.
    pub oa_id: String,
    /// OA secret key: signs webhooks.
    pub oa_secret_key: Secret,
    /// The configured seed refresh token (generation 0).
    pub seed_refresh_token: Secret,
    /// Approved template id → the parameters it requires.
    pub templates: HashMap<String, Vec<&'static str>>,
    /// Approved template id → the kind it was registered for (the first, when kinds
    /// share one), whose text [`loa_contracts::templates`] renders.
    pub template_kinds: HashMap<String, NotificationKind>,
}

impl App {
    /// What the citizen reads for a template message: the registered kind's text with
    /// the message's parameters filled in. `None` for a template no kind registered.
    pub fn render(&self, template_id: &str, data: &Map<String, Value>) -> Option<String> {
        let kind = *self.template_kinds.get(template_id)?;
        let params = data
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        Some(loa_contracts::templates::render(kind, &params))
    }
}

/// Longest value ZNS accepts for a parameter a template did not register, in
/// characters.
pub const MAX_PARAM_CHARS: usize = 400;

impl App {
    /// Checks a template id and its data the way ZNS does: the template must be
    /// registered for this app (-109), the data an object (-111 when absent or empty,
    /// -112 otherwise), every required parameter a non-empty string (-1122), no value
    /// longer than its registered parameter's max length (the lengths of
    /// `docs/zalo-templates.md`, as Zalo keeps them per template), or than
    /// [`MAX_PARAM_CHARS`] for another (-1121).
    pub fn check_template(
        &self,
        template_id: Option<&Value>,
        data: Option<&Value>,
    ) -> Result<(String, Map<String, Value>), ZaloError> {
        let template_id = match template_id {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let Some(required) = self.templates.get(&template_id) else {
            return Err(ZaloError::code(codes::INVALID_TEMPLATE));
        };
        let data = match data {
            None | Some(Value::Null) => return Err(ZaloError::code(codes::TEMPLATE_DATA_EMPTY)),
            Some(Value::Object(map)) if map.is_empty() && !required.is_empty() => {
                return Err(ZaloError::code(codes::TEMPLATE_DATA_EMPTY))
            }
            Some(Value::Object(map)) => map,
            Some(_) => return Err(ZaloError::code(codes::TEMPLATE_DATA_INVALID)),
        };
        for param in required {
            let present =
                matches!(data.get(*param), Some(Value::String(v)) if !v.trim().is_empty());
            if !present {
                return Err(ZaloError::new(
                    codes::PARAM_MISSING,
                    format!("Template data is missing parameter `{param}`"),
                ));
            }
        }
        for (name, value) in data {
            if let Value::String(v) = value {
                let max = Some(name.as_str())
                    .filter(|n| required.contains(n))
                    .and_then(loa_contracts::templates::param_spec)
                    .map_or(MAX_PARAM_CHARS, |spec| spec.max_chars);
                if v.chars().count() > max {
                    return Err(ZaloError::new(
                        codes::PARAM_TOO_LONG,
                        format!("Parameter `{name}` exceeds {max} characters"),
                    ));
                }
            }
        }
        Ok((template_id, data.clone()))
    }
}

/// The canonical `84…` form of a ZNS `phone`, in any form Zalo delivers to: `84…`
/// (canonical), `+84…`, `0…`, or the 9 national digits alone (a leading zero lost
/// to a spreadsheet), each with 9 digits of a mobile range after the prefix. `None`
/// when Zalo would answer `-108`. Zalo's guide for `-108` names these forms; a
/// stricter sandbox would teach clients a rule Zalo does not have.
pub fn zns_phone(phone: &str) -> Option<String> {
    let national = phone
        .strip_prefix("+84")
        .or_else(|| phone.strip_prefix("84").filter(|rest| rest.len() == 9))
        .or_else(|| phone.strip_prefix('0'))
        .unwrap_or(phone);
    let bytes = national.as_bytes();
    let mobile = bytes.len() == 9
        && bytes.iter().all(u8::is_ascii_digit)
        && matches!(bytes[0], b'3' | b'5' | b'7' | b'8' | b'9');
    mobile.then(|| format!("84{national}"))
}

/// Every registered app. Cheap to share.
#[derive(Debug)]
pub struct Apps {
    list: Vec<Arc<App>>,
    by_app_id: HashMap<String, usize>,
}

impl Apps {
    /// Registers one app per tenant; a second tenant reusing an app id is ignored with
    /// a warning (Zalo has one webhook and one token chain per app).
    pub fn from_tenants(tenants: &Tenants) -> anyhow::Result<Self> {
        let mut list: Vec<Arc<App>> = Vec::new();
        let mut by_app_id = HashMap::new();
        for tenant in tenants.all() {
            let zalo = &tenant.zalo;
            if by_app_id.contains_key(&zalo.app_id) {
                tracing::warn!(tenant = %tenant.id, app_id = %zalo.app_id, "Zalo app id already registered by another tenant; ignoring this one.");
                continue;
            }
            let mut templates: HashMap<String, BTreeSet<&'static str>> = HashMap::new();
            let mut template_kinds: HashMap<String, NotificationKind> = HashMap::new();
            for (kind, template_id) in &zalo.templates {
                let Some(kind) = NotificationKind::from_name(kind) else {
                    tracing::warn!(tenant = %tenant.id, kind = %kind, "Unknown notification kind in templates; ignoring it.");
                    continue;
                };
                let params: BTreeSet<&'static str> =
                    kind.required_params().iter().copied().collect();
                template_kinds.entry(template_id.clone()).or_insert(kind);
                // A template shared by two kinds can only require what both send.
                templates
                    .entry(template_id.clone())
                    .and_modify(|p| p.retain(|x| params.contains(x)))
                    .or_insert(params);
            }
            let idx = list.len();
            by_app_id.insert(zalo.app_id.clone(), idx);
            list.push(Arc::new(App {
                idx,
                tenant_id: tenant.id.clone(),
                name: tenant.name.clone(),
                app_id: zalo.app_id.clone(),
                app_secret: zalo.app_secret.clone(),
                oa_id: zalo.oa_id.clone(),
                oa_secret_key: zalo.oa_secret_key.clone(),
                seed_refresh_token: zalo.refresh_token.clone(),
                templates: templates
                    .into_iter()
                    .map(|(id, p)| (id, p.into_iter().collect()))
                    .collect(),
                template_kinds,
            }));
        }
        anyhow::ensure!(
            !list.is_empty(),
            "the Zalo sandbox needs at least one tenant with a Zalo app"
        );
        Ok(Self { list, by_app_id })
    }

    /// An app by its Zalo app id.
    pub fn get(&self, app_id: &str) -> Option<&Arc<App>> {
        self.by_app_id.get(app_id).map(|&i| &self.list[i])
    }

    /// The first tenant's app: the default of the `/_sandbox/users/…` helpers.
    pub fn first(&self) -> &Arc<App> {
        &self.list[0]
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never true: construction requires one app.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tenant_registers_every_kind_template_with_its_params() {
        let tenants = Tenants::new(vec![loa_platform::tenants::demo_tenant("http://x")]).unwrap();
        let apps = Apps::from_tenants(&tenants).unwrap();
        let app = apps.first();
        let receipt = &app.templates[NotificationKind::Receipt.default_template_id()];
        assert!(receipt.contains(&"due_date") && receipt.contains(&"lookup_url"));
        assert_eq!(app.templates.len(), NotificationKind::ALL.len());
        assert!(apps.get(&app.app_id).is_some());
    }

    #[test]
    fn a_demo_template_message_renders_as_the_drafts_say() {
        let tenants = Tenants::new(vec![loa_platform::tenants::demo_tenant("http://x")]).unwrap();
        let apps = Apps::from_tenants(&tenants).unwrap();
        let kind = NotificationKind::ResultReadyEarly;
        let data: Map<String, Value> = kind
            .required_params()
            .iter()
            .map(|p| ((*p).to_owned(), Value::from(format!("[{p}]"))))
            .collect();
        let text = apps
            .first()
            .render(kind.default_template_id(), &data)
            .unwrap();
        let params = data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(text, loa_contracts::templates::render(kind, &params));
        assert!(text.contains("đã có kết quả trước ngày hẹn trả ([due_date])"));
        assert_eq!(apps.first().render("999", &data), None);
    }

    /// The demo tenant's apps, the id of its `withdrawn` template, and that template's
    /// parameters, each "x".
    fn withdrawn() -> (Apps, Value, Map<String, Value>) {
        let tenants = Tenants::new(vec![loa_platform::tenants::demo_tenant("http://x")]).unwrap();
        let apps = Apps::from_tenants(&tenants).unwrap();
        let id = serde_json::json!(NotificationKind::Withdrawn.default_template_id());
        let data = NotificationKind::Withdrawn
            .required_params()
            .iter()
            .map(|p| ((*p).to_owned(), Value::from("x")))
            .collect();
        (apps, id, data)
    }

    #[test]
    fn a_registered_parameter_longer_than_its_template_allows_is_minus_1121() {
        let (apps, id, valid) = withdrawn();
        let app = apps.first();
        let data = |name: &str, value: String| {
            let mut data = valid.clone();
            data.insert(name.to_owned(), Value::from(value));
            Value::Object(data)
        };
        let check = |name: &str, value: String| {
            app.check_template(Some(&id), Some(&data(name, value)))
                .map_err(|e| e.code)
        };
        // docs/zalo-templates.md: dossier_code 30, agency_name 200, customer_name 30.
        assert!(check("agency_name", "Ủ".repeat(200)).is_ok());
        assert_eq!(check("agency_name", "Ủ".repeat(201)).unwrap_err(), -1121);
        assert!(check("dossier_code", "x".repeat(30)).is_ok());
        assert_eq!(check("dossier_code", "x".repeat(31)).unwrap_err(), -1121);
        assert_eq!(check("customer_name", "x".repeat(31)).unwrap_err(), -1121);
    }

    #[test]
    fn template_checks_follow_zns_codes_in_order() {
        let (apps, id, mut data) = withdrawn();
        let app = apps.first();
        assert!(app
            .check_template(Some(&id), Some(&Value::Object(data.clone())))
            .is_ok());
        let code =
            |id: &Value, d: Option<&Value>| app.check_template(Some(id), d).unwrap_err().code;
        assert_eq!(code(&serde_json::json!("999"), None), -109);
        assert_eq!(code(&id, None), -111);
        assert_eq!(code(&id, Some(&serde_json::json!([1]))), -112);
        data.insert("extra".into(), Value::from("y".repeat(401)));
        assert_eq!(code(&id, Some(&Value::Object(data.clone()))), -1121);
        data.insert("status".into(), Value::from(" "));
        assert_eq!(code(&id, Some(&Value::Object(data))), -1122);
    }

    #[test]
    fn zns_phones_are_taken_in_every_form_zalo_delivers_to() {
        for form in ["84903123456", "+84903123456", "0903123456", "903123456"] {
            assert_eq!(zns_phone(form).as_deref(), Some("84903123456"), "{form}");
        }
        for bad in [
            "84243123456",
            "0243123456",
            "8490312345",
            "849031234567",
            "84a03123456",
            "+0903123456",
            "0903 123 456",
            "",
        ] {
            assert_eq!(zns_phone(bad), None, "{bad}");
        }
    }
}
