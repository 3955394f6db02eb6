//! `DossierEvent` v1: what an upstream one-stop system tells us about a dossier.
//!
//! Upstream JSON is parsed by [`DossierEvent::from_json`], which checks every field and
//! normalises it (phone numbers to `84…`, status names to codes) or names the field it
//! refuses. The result serialises to the canonical form that travels on `loa.events`.

use crate::{phone::PhoneNumber, DossierStatus, ValidationError};
use chrono::{DateTime, FixedOffset, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted dossier code (the national format is 25 characters).
pub const MAX_DOSSIER_CODE: usize = 50;
/// Longest accepted event id.
pub const MAX_EVENT_ID: usize = 100;
/// Longest accepted person, procedure or agency name.
pub const MAX_NAME: usize = 300;
/// Longest accepted free text (reason, document names).
pub const MAX_TEXT: usize = 2000;
/// Most required documents listed in one event.
pub const MAX_DOCUMENTS: usize = 50;

/// A change in a dossier's life, as upstream reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "DossierEvent", description = "Loa dossier event, version 1")]
pub struct DossierEvent {
    /// The source's unique id for this event: the idempotency key. 1..100 printable characters.
    pub event_id: String,
    /// The tenant (province or agency deployment) the event belongs to.
    pub tenant: String,
    /// The dossier code printed on the receipt (mã hồ sơ), 1..50 printable characters.
    pub dossier_code: String,
    /// National status code 1..10, or its name.
    pub status: DossierStatus,
    /// When the change happened, RFC 3339 with its zone.
    pub occurred_at: DateTime<FixedOffset>,
    /// Optional per-dossier sequence number; when present it orders events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// The administrative procedure (thủ tục hành chính).
    pub procedure: Procedure,
    /// The agency handling the dossier.
    pub agency: Agency,
    /// The dossier's owner (chủ hồ sơ).
    pub applicant: Person,
    /// The authorised filer (người được ủy quyền) when someone filed on the owner's
    /// behalf: notifications go to this person, not to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<Person>,
    /// When the desk received the dossier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<FixedOffset>>,
    /// The appointment for the result (ngày hẹn trả); null for procedures without one.
    /// It may move when a supplement is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<FixedOffset>>,
    /// Why (refusal, stop, supplement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Documents the citizen must supplement (status 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_documents: Option<Vec<String>>,
    /// Fees due (status 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Fee>,
    /// The citizen's opt-ins; absent means no opt-in (nothing is sent).
    #[serde(default)]
    pub channels: Channels,
    /// Set by intake when it accepted the event (never by upstream); measures
    /// event-to-send latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub accepted_at: Option<DateTime<Utc>>,
}

/// An administrative procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Procedure {
    /// Procedure code from the national catalogue (mã TTHC), e.g. `1.000894`.
    pub code: String,
    /// Procedure name, e.g. `Đăng ký khai sinh`.
    pub name: String,
}

/// An agency (cơ quan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Agency {
    /// Agency identifier (mã định danh), e.g. `000.00.06.H56`.
    pub code: String,
    /// Agency name, e.g. `UBND phường Đức Thắng`.
    pub name: String,
}

/// A citizen named on a dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Person {
    /// Full name.
    pub name: String,
    /// Mobile number; any common form is accepted and stored as `84` + 9 digits.
    #[schemars(with = "String", regex(pattern = r"^\+?[0-9 .()-]{9,20}$"))]
    pub phone: PhoneNumber,
    /// The citizen's Zalo user id for our OA, when known (they follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zalo_user_id: Option<String>,
}

/// Money due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Fee {
    /// Amount in đồng.
    pub amount_vnd: i64,
    /// What it is for (lệ phí, phí, thuế).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The citizen's opt-ins, recorded at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Channels {
    /// Case updates on Zalo.
    #[serde(default)]
    pub zalo: bool,
    /// Policy broadcasts (a separate purpose, a separate consent).
    #[serde(default)]
    pub broadcast: bool,
}

impl DossierEvent {
    /// Parses and validates upstream JSON. Every refusal names its field.
    pub fn from_json(value: &Value) -> Result<Self, ValidationError> {
        let obj = value.as_object().ok_or_else(|| {
            ValidationError::new("", "invalid_body", "the event must be a JSON object")
        })?;
        let r = Reader { obj, prefix: "" };
        let event_id = r.text("event_id", MAX_EVENT_ID)?;
        let tenant = r.text("tenant", 40)?;
        if !tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ValidationError::new(
                "tenant",
                "invalid_tenant",
                "a tenant id has only lowercase letters, digits, '-' and '_'",
            ));
        }
        let dossier_code = r.text("dossier_code", MAX_DOSSIER_CODE)?;
        let status = r.status("status")?;
        let occurred_at = r.timestamp("occurred_at")?;
        let sequence = r.opt_i64("sequence")?;
        let procedure = r.object("procedure", |r| {
            Ok(Procedure {
                code: r.text("code", 50)?,
                name: r.text("name", MAX_NAME)?,
            })
        })?;
        let agency = r.object("agency", |r| {
            Ok(Agency {
                code: r.text("code", 50)?,
                name: r.text("name", MAX_NAME)?,
            })
        })?;
        let applicant = r.object("applicant", |r| r.person())?;
        let on_behalf_of = r.opt_object("on_behalf_of", |r| r.person())?;
        let received_at = r.opt_timestamp("received_at")?;
        let due_at = r.opt_timestamp("due_at")?;
        let reason = r.opt_text("reason", MAX_TEXT)?;
        let required_documents = r.opt_text_list("required_documents")?;
        let fee = r.opt_object("fee", |r| {
            let amount_vnd = r
                .opt_i64("amount_vnd")?
                .ok_or_else(|| ValidationError::missing(r.path("amount_vnd")))?;
            if amount_vnd < 0 {
                return Err(ValidationError::new(
                    r.path("amount_vnd"),
                    "invalid_amount",
                    "must not be negative",
                ));
            }
            Ok(Fee {
                amount_vnd,
                description: r.opt_text("description", MAX_NAME)?,
            })
        })?;
        let channels = r
            .opt_object("channels", |r| {
                Ok(Channels {
                    zalo: r.opt_bool("zalo")?.unwrap_or(false),
                    broadcast: r.opt_bool("broadcast")?.unwrap_or(false),
                })
            })?
            .unwrap_or_default();
        Ok(Self {
            event_id,
            tenant,
            dossier_code,
            status,
            occurred_at,
            sequence,
            procedure,
            agency,
            applicant,
            on_behalf_of,
            received_at,
            due_at,
            reason,
            required_documents,
            fee,
            channels,
            accepted_at: None,
        })
    }

    /// The person to notify: the authorised filer when there is one, otherwise the owner.
    pub fn recipient(&self) -> &Person {
        self.on_behalf_of.as_ref().unwrap_or(&self.applicant)
    }

    /// Routing key on `loa.events`: `dossier.<tenant>.<status>`.
    pub fn routing_key(&self) -> String {
        format!("dossier.{}.{}", self.tenant, self.status.code())
    }
}

/// Reads fields of one JSON object, producing errors with full dotted paths.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Reader<'a> {
    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn text(&self, key: &str, max: usize) -> Result<String, ValidationError> {
        self.opt_text(key, max)?
            .ok_or_else(|| ValidationError::missing(self.path(key)))
    }

    fn opt_text(&self, key: &str, max: usize) -> Result<Option<String>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let s = v.as_str().ok_or_else(|| {
            ValidationError::new(self.path(key), "invalid_type", "must be a string")
        })?;
        check_text(s, max)
            .map_err(|why| ValidationError::new(self.path(key), "invalid_text", why))?;
        Ok(Some(s.trim().to_owned()))
    }

    fn opt_text_list(&self, key: &str) -> Result<Option<Vec<String>>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v.as_array().ok_or_else(|| {
            ValidationError::new(
                self.path(key),
                "invalid_type",
                "must be an array of strings",
            )
        })?;
        if items.len() > MAX_DOCUMENTS {
            return Err(ValidationError::new(
                self.path(key),
                "too_many_items",
                format!("at most {MAX_DOCUMENTS} items"),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("{}[{i}]", self.path(key));
                let s = item.as_str().ok_or_else(|| {
                    ValidationError::new(field.clone(), "invalid_type", "must be a string")
                })?;
                check_text(s, MAX_NAME)
                    .map_err(|why| ValidationError::new(field, "invalid_text", why))?;
                Ok(s.trim().to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn opt_i64(&self, key: &str) -> Result<Option<i64>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_i64().map(Some).ok_or_else(|| {
            ValidationError::new(self.path(key), "invalid_type", "must be an integer")
        })
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_bool().map(Some).ok_or_else(|| {
            ValidationError::new(self.path(key), "invalid_type", "must be true or false")
        })
    }

    fn status(&self, key: &str) -> Result<DossierStatus, ValidationError> {
        let v = self
            .get(key)
            .ok_or_else(|| ValidationError::missing(self.path(key)))?;
        let found = match v {
            Value::Number(n) => n.as_i64().and_then(DossierStatus::from_code),
            Value::String(s) => DossierStatus::from_name(s),
            _ => None,
        };
        found.ok_or_else(|| {
            ValidationError::new(
                self.path(key),
                "invalid_status",
                "must be a national status code 1..10 or its name (e.g. \"received\", \"result_ready\")",
            )
        })
    }

    fn timestamp(&self, key: &str) -> Result<DateTime<FixedOffset>, ValidationError> {
        self.opt_timestamp(key)?
            .ok_or_else(|| ValidationError::missing(self.path(key)))
    }

    fn opt_timestamp(&self, key: &str) -> Result<Option<DateTime<FixedOffset>>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let s = v.as_str().ok_or_else(|| {
            ValidationError::new(
                self.path(key),
                "invalid_type",
                "must be an RFC 3339 timestamp string",
            )
        })?;
        DateTime::parse_from_rfc3339(s).map(Some).map_err(|_| {
            ValidationError::new(
                self.path(key),
                "invalid_timestamp",
                "must be an RFC 3339 timestamp with a zone, e.g. 2026-11-28T09:30:00+07:00",
            )
        })
    }

    fn object<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Reader<'_>) -> Result<T, ValidationError>,
    ) -> Result<T, ValidationError> {
        self.opt_object(key, read)?
            .ok_or_else(|| ValidationError::missing(self.path(key)))
    }

    fn opt_object<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Reader<'_>) -> Result<T, ValidationError>,
    ) -> Result<Option<T>, ValidationError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let path = self.path(key);
        let obj = v.as_object().ok_or_else(|| {
            ValidationError::new(path.clone(), "invalid_type", "must be an object")
        })?;
        read(&Reader { obj, prefix: &path }).map(Some)
    }

    fn person(&self) -> Result<Person, ValidationError> {
        let name = self.text("name", MAX_NAME)?;
        let raw_phone = self.text("phone", 30)?;
        let phone = PhoneNumber::parse_field(&raw_phone, &self.path("phone"))?;
        let zalo_user_id = self.opt_text("zalo_user_id", 40)?;
        if let Some(id) = &zalo_user_id {
            if !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ValidationError::new(
                    self.path("zalo_user_id"),
                    "invalid_zalo_user_id",
                    "a Zalo user id is a string of digits",
                ));
            }
        }
        Ok(Person {
            name,
            phone,
            zalo_user_id,
        })
    }
}

/// Non-empty after trimming, at most `max` characters, no control characters.
fn check_text(s: &str, max: usize) -> Result<(), String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// The JSON Schema of [`DossierEvent`] v1 for upstream integrators, as committed at
/// `docs/schema/dossier-event.v1.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(DossierEvent);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn sample() -> Value {
        json!({
            "event_id": "evt-1",
            "tenant": "demo",
            "dossier_code": "000.00.06.H56-261128-0001",
            "status": "received",
            "occurred_at": "2026-11-28T09:30:00+07:00",
            "received_at": "2026-11-28T09:30:00+07:00",
            "due_at": "2026-12-03T17:00:00+07:00",
            "procedure": {"code": "1.000894", "name": "Đăng ký khai sinh"},
            "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "+84 903.123.456"},
            "channels": {"zalo": true, "broadcast": false}
        })
    }

    fn refusal(mutate: impl FnOnce(&mut Value)) -> ValidationError {
        let mut v = sample();
        mutate(&mut v);
        DossierEvent::from_json(&v).unwrap_err()
    }

    #[test]
    fn a_valid_event_is_normalised() {
        let e = DossierEvent::from_json(&sample()).unwrap();
        assert_eq!(e.status, DossierStatus::Received);
        assert_eq!(e.applicant.phone.as_str(), "84903123456");
        assert_eq!(
            e.occurred_at.offset().local_minus_utc(),
            7 * 3600,
            "zone kept"
        );
        assert_eq!(e.routing_key(), "dossier.demo.2");
        let back: DossierEvent = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn each_refusal_names_the_offending_field() {
        assert_eq!(
            refusal(|v| v["applicant"]["phone"] = json!("12345")).field,
            "applicant.phone"
        );
        assert_eq!(refusal(|v| v["status"] = json!(11)).field, "status");
        assert_eq!(
            refusal(|v| v["occurred_at"] = json!("yesterday")).field,
            "occurred_at"
        );
        assert_eq!(
            refusal(|v| v["dossier_code"] = json!("x".repeat(51))).field,
            "dossier_code"
        );
        assert_eq!(
            refusal(|v| v["dossier_code"] = json!("  ")).field,
            "dossier_code"
        );
        assert_eq!(
            refusal(|v| {
                v.as_object_mut().unwrap().remove("event_id");
            })
            .field,
            "event_id"
        );
        assert_eq!(refusal(|v| v["procedure"] = json!("x")).field, "procedure");
        assert_eq!(
            refusal(|v| v["agency"]["name"] = json!(3)).field,
            "agency.name"
        );
        assert_eq!(
            refusal(|v| v["required_documents"] = json!(["ok", 1])).field,
            "required_documents[1]"
        );
        assert_eq!(
            refusal(|v| v["fee"] = json!({"amount_vnd": -1})).field,
            "fee.amount_vnd"
        );
        assert_eq!(
            refusal(|v| v["tenant"] = json!("Demo Tenant")).field,
            "tenant"
        );
    }

    #[test]
    fn the_filer_is_notified_instead_of_the_owner() {
        let mut v = sample();
        v["on_behalf_of"] = json!({"name": "Lê Văn Cường", "phone": "0912 345 678"});
        let e = DossierEvent::from_json(&v).unwrap();
        assert_eq!(e.recipient().phone.as_str(), "84912345678");
    }
}
