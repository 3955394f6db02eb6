//! A citizen's erasure request (Decree 13/2023, art. 16): what the tracker's and the
//! notifier's `POST /v1/subjects/erase` share, so both read the same request, answer
//! the same report and keep the same audit row.
//!
//! Each service erases what it holds and records it in its own schema's `erasures`
//! table (who asked, with which credential, when, which tenant, a hash of the phone,
//! what was removed): the services share no database, and an audit row beside the
//! data it speaks of is written in the same transaction as the erasure. `loa subjects
//! erase` calls both services; a repeated request finds nothing left and is audited
//! again with zero counts.

use crate::{
    http::{ApiError, TENANT_HEADER},
    Tenants,
};
use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use loa_contracts::PhoneNumber;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The path both services serve the request on.
pub const PATH: &str = "/v1/subjects/erase";

/// Longest `requested_by`: a name and a case reference, not a letter.
pub const MAX_REQUESTED_BY: usize = 200;

/// A validated erasure request.
#[derive(Debug, Clone)]
pub struct ErasureRequest {
    /// The citizen's phone, canonical (`84…`).
    pub phone: PhoneNumber,
    /// Who asked: the official handling the citizen's request and its reference.
    pub requested_by: String,
}

impl ErasureRequest {
    /// Reads `{"phone", "requested_by"}`; a `422` names the field that is wrong.
    pub fn parse(body: &Value) -> Result<Self, ApiError> {
        let invalid = |field: &str, message: &str| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                .with_field(field)
        };
        if !body.is_object() {
            return Err(invalid("body", "the body is a JSON object"));
        }
        let phone = match &body["phone"] {
            Value::String(p) => PhoneNumber::parse(p).map_err(|m| invalid("phone", m))?,
            Value::Null => return Err(invalid("phone", "`phone` is required")),
            _ => return Err(invalid("phone", "a phone number as a string")),
        };
        let requested_by = match &body["requested_by"] {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
            Value::Null => {
                return Err(invalid(
                    "requested_by",
                    "`requested_by` is required: who asked",
                ))
            }
            _ => return Err(invalid("requested_by", "a non-empty string")),
        };
        if requested_by.chars().count() > MAX_REQUESTED_BY
            || requested_by.chars().any(char::is_control)
            || loa_contracts::text::first_invisible(&requested_by).is_some()
        {
            return Err(invalid(
                "requested_by",
                "at most 200 visible characters, no control or invisible ones",
            ));
        }
        // The audit keeps `requested_by`: it must not bring back the number it erases.
        let digits: String = requested_by.chars().filter(char::is_ascii_digit).collect();
        if digits.contains(&phone.as_str()[2..]) {
            return Err(invalid(
                "requested_by",
                "who asked, without the citizen's phone number (the audit keeps this text)",
            ));
        }
        Ok(Self {
            phone,
            requested_by,
        })
    }
}

/// What the erase endpoints take (documentation; the handler reads the body field by
/// field, naming the one that is wrong).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErasureRequestBody {
    /// The citizen's mobile number, in any written form (`0903 123 456`, `+84…`).
    #[schema(example = "0903 123 456", pattern = "^[0-9 +.()-]{9,20}$")]
    phone: String,
    /// Who asked: the official handling the citizen's request and its reference
    /// (kept in the audit, at most 200 characters, without the citizen's number).
    #[schema(
        example = "Nguyễn Văn An, PYC-2026-17",
        min_length = 1,
        max_length = 200
    )]
    requested_by: String,
}

/// What one service erased for one request: the answer, and its audit row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErasureReport {
    /// The audit row's id in this service's `erasures` table.
    pub audit_id: i64,
    /// `tracker` or `notifier`.
    pub service: String,
    /// The caller's tenant.
    pub tenant: String,
    /// [`phone_hash`] of the phone: the audit never holds the phone.
    pub phone_hash: String,
    /// When it was erased (UTC).
    pub erased_at: DateTime<Utc>,
    /// Rows erased or masked, by what they were (zero when nothing was left).
    pub removed: BTreeMap<String, u64>,
}

/// The phone's hash in the audit: SHA-256 of the tenant and the canonical number,
/// hex. It lets an auditor check that a given citizen's request was carried out, by
/// hashing the number they are asked about; it is not a secret (a number is one of a
/// billion), so the audit table is guarded like the rest of the database.
pub fn phone_hash(tenant: &str, phone: &PhoneNumber) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"loa-subject\x1f");
    hasher.update(tenant.as_bytes());
    hasher.update(b"\x1f");
    hasher.update(phone.as_str().as_bytes());
    hex::encode(hasher.finalize())
}

/// Which credential an admin request came with, for the audit: `console` (the
/// console's service credential, for the tenant it names) or `admin_token`.
pub fn credential_kind(tenants: &Tenants, headers: &HeaderMap) -> &'static str {
    let token = crate::http::bearer_token(headers);
    let console = token.is_some_and(|t| tenants.service_token().is_some_and(|s| s.matches(t)))
        && headers.contains_key(TENANT_HEADER);
    if console {
        "console"
    } else {
        "admin_token"
    }
}

/// Writes the audit row of an erasure in `tx` (the erasure's own transaction) and
/// returns the report. Each service's migrations create `<schema>.erasures (id,
/// tenant, phone_hash, requested_by, credential, erased_at, removed jsonb)`.
pub async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    request: &ErasureRequest,
    tenant: &str,
    credential: &str,
    erased_at: DateTime<Utc>,
    removed: BTreeMap<String, u64>,
) -> anyhow::Result<ErasureReport> {
    let hash = phone_hash(tenant, &request.phone);
    let removed_json = serde_json::to_value(&removed).context("counts are JSON")?;
    let id: i64 = tx
        .query_one(
            &format!(
                "INSERT INTO {schema}.erasures
                        (tenant, phone_hash, requested_by, credential, erased_at, removed)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
            ),
            &[
                &tenant,
                &hash,
                &request.requested_by,
                &credential,
                &erased_at,
                &removed_json,
            ],
        )
        .await
        .context("Failed to record the erasure in the audit")?
        .get(0);
    Ok(ErasureReport {
        audit_id: id,
        service: schema.to_owned(),
        tenant: tenant.to_owned(),
        phone_hash: hash,
        erased_at,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_names_the_field_that_is_wrong() {
        let field = |body: Value| ErasureRequest::parse(&body).unwrap_err().field;
        assert_eq!(field(json!([])), Some("body".into()));
        assert_eq!(field(json!({"requested_by": "x"})), Some("phone".into()));
        assert_eq!(
            field(json!({"phone": "12", "requested_by": "x"})),
            Some("phone".into())
        );
        assert_eq!(
            field(json!({"phone": 84903123456_u64})),
            Some("phone".into())
        );
        assert_eq!(
            field(json!({"phone": "0903123456"})),
            Some("requested_by".into())
        );
        assert_eq!(
            field(json!({"phone": "0903123456", "requested_by": "  "})),
            Some("requested_by".into())
        );
        assert_eq!(
            field(json!({"phone": "0903123456", "requested_by": "a\u{202e}b"})),
            Some("requested_by".into())
        );
        assert_eq!(
            field(json!({"phone": "0903123456", "requested_by": "x".repeat(201)})),
            Some("requested_by".into())
        );
        assert_eq!(
            field(json!({"phone": "0903123456", "requested_by": "A, for 0903 123 456"})),
            Some("requested_by".into())
        );
    }

    #[test]
    fn a_valid_request_carries_the_canonical_phone() {
        let r = ErasureRequest::parse(
            &json!({"phone": "0903 123 456", "requested_by": " Nguyễn Văn A, PYC-12 "}),
        )
        .unwrap();
        assert_eq!(r.phone.as_str(), "84903123456");
        assert_eq!(r.requested_by, "Nguyễn Văn A, PYC-12");
    }

    #[test]
    fn the_phone_hash_is_stable_per_tenant_and_never_holds_the_number() {
        let p = PhoneNumber::parse("0903123456").unwrap();
        let h = phone_hash("demo", &p);
        assert_eq!(h, phone_hash("demo", &p));
        assert_eq!(h.len(), 64);
        assert!(!h.contains("903123456"));
        assert_ne!(h, phone_hash("other", &p));
    }
}
