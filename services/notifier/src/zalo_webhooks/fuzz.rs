//! Fuzzing the webhook door: the parser and the signature check see whatever anyone on
//! the internet posts. `cargo fuzz` needs a nightly compiler, so these are proptest
//! properties on stable (`PROPTEST_CASES` inputs each: 256 in the suite, many more
//! with `scripts/fuzz`).
//!
//! Properties: nothing panics; whatever is refused is a 4xx; nothing unsigned or
//! signed with another secret gets past the signature; a signed, fresh webhook of any
//! shape is either understood or refused as invalid (400), and what would be stored
//! of it holds no phone number in clear.

use super::{
    parse::{authenticate, Freshness},
    signature::{expected_signature, SIGNATURE_HEADER},
};
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use loa_contracts::PhoneNumber;
use loa_platform::{tenants::demo_tenant, Tenants};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::time::Duration;

const APP: &str = "1000000000000000001";
const SECRET: &str = "demo-oa-secret-key";
const NOW_MS: i64 = 1_700_000_000_000;

fn tenants() -> Tenants {
    Tenants::new(vec![demo_tenant("http://127.0.0.1:1")]).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(NOW_MS).unwrap()
}

fn freshness() -> Freshness {
    Freshness {
        max_age: Duration::from_secs(900),
        max_ahead: Duration::from_secs(300),
    }
}

fn headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(signature) {
        h.insert(SIGNATURE_HEADER, v);
    }
    h
}

/// Field values as Zalo writes them and as an attacker might.
fn any_field() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,24}".prop_map(Value::String),
        "[0-9]{1,20}".prop_map(Value::String),
        Just(json!("84903123456")),
        Just(json!("0903123456")),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A webhook body of our app with a fresh timestamp and any event and fields.
fn any_webhook() -> impl Strategy<Value = Value> {
    let event = prop_oneof![
        prop::sample::select(super::KNOWN_EVENTS.to_vec()).prop_map(str::to_owned),
        "[a-z_]{0,20}",
    ];
    (
        event,
        -800_000i64..200_000,
        any_field(),
        any_field(),
        any_field(),
        any_field(),
    )
        .prop_map(|(event, offset, sender, recipient, message, info)| {
            json!({
                "app_id": APP,
                "event_name": event,
                "timestamp": (NOW_MS + offset).to_string(),
                "sender": sender,
                "recipient": recipient,
                "message": message,
                "info": info,
            })
        })
}

proptest! {
    #[test]
    fn any_bytes_with_any_signature_are_refused_with_a_4xx_and_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..300),
        signature in ".{0,80}",
    ) {
        let tenants = tenants();
        if let Err(refusal) = authenticate(&tenants, &headers(&signature), &body, now(), freshness()) {
            prop_assert!(refusal.error.status.is_client_error());
        } else {
            // Only a body signed with the OA's secret passes: bytes found by chance
            // would mean the check is broken.
            prop_assert!(false, "random bytes passed the signature check");
        }
    }

    #[test]
    fn a_webhook_signed_with_another_secret_or_not_signed_is_refused(
        body in any_webhook(),
        secret in ".{0,30}",
    ) {
        prop_assume!(secret != SECRET);
        let raw = serde_json::to_vec(&body).unwrap();
        let ts = body["timestamp"].as_str().unwrap();
        let forged = format!("mac={}", expected_signature(APP, &raw, ts, &secret));
        let tenants = tenants();
        for h in [headers(&forged), HeaderMap::new()] {
            let refusal = authenticate(&tenants, &h, &raw, now(), freshness()).unwrap_err();
            prop_assert_eq!(refusal.outcome, "bad_signature");
            prop_assert_eq!(refusal.error.status.as_u16(), 401);
        }
    }

    #[test]
    fn a_signed_webhook_of_any_shape_is_understood_or_refused_as_invalid_and_stored_without_phones(
        body in any_webhook(),
        flip in any::<prop::sample::Index>(),
    ) {
        let raw = serde_json::to_vec(&body).unwrap();
        let ts = body["timestamp"].as_str().unwrap();
        let signed = headers(&format!("mac={}", expected_signature(APP, &raw, ts, SECRET)));
        let tenants = tenants();
        match authenticate(&tenants, &signed, &raw, now(), freshness()) {
            Ok((tenant, webhook)) => {
                prop_assert_eq!(&tenant.id, "demo");
                let stored = &webhook.stored_body;
                if let Some(id) = stored.pointer("/recipient/id").and_then(Value::as_str) {
                    prop_assert!(PhoneNumber::parse(id).is_err(), "a phone kept in clear: {id}");
                }
                prop_assert!(stored.get("info").is_none_or(|i| i == "redacted"));
            }
            Err(refusal) => {
                prop_assert!(refusal.error.status.is_client_error());
                prop_assert!(matches!(refusal.outcome, "invalid" | "stale"), "{}", refusal.outcome);
            }
        }
        // One byte changed after signing: never accepted.
        let mut tampered = raw.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(authenticate(&tenants, &signed, &tampered, now(), freshness()).is_err());
    }
}
