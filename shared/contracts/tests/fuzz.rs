//! Fuzzing the one place upstream input is validated and normalised: events, phone
//! numbers and texts. `cargo fuzz` needs a nightly compiler, so these are proptest
//! properties on stable: arbitrary and mutated inputs, each property checked on
//! `PROPTEST_CASES` inputs (256 in the test suite; `scripts/fuzz` runs many more).

use loa_contracts::{text, DossierEvent, PhoneNumber};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A valid event, the base the mutations start from.
fn sample() -> Value {
    json!({
        "event_id": "evt-1",
        "tenant": "demo",
        "dossier_code": "000.00.06.H56-261128-0001",
        "status": "received",
        "occurred_at": "2026-11-28T09:30:00+07:00",
        "received_at": "2026-11-28T09:30:00+07:00",
        "due_at": "2026-12-03T17:00:00+07:00",
        "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
        "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
        "applicant": {"name": "Trần Thị Bích", "phone": "+84 903.123.456"},
        "on_behalf_of": {"name": "Lê Văn Tám", "phone": "0912 345 678"},
        "required_documents": ["CCCD"],
        "fee": {"amount_vnd": 50000},
        "reason": "Thiếu giấy tờ",
        "sequence": 3,
        "channels": {"zalo": true, "broadcast": false}
    })
}

/// Any JSON value, nested a few levels, with strings drawn from everything Unicode
/// has (controls, bidi overrides, surrogates' neighbours, Vietnamese).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[0-9 +.()-]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every field path of the sample, to mutate one of them.
const PATHS: &[&[&str]] = &[
    &["event_id"],
    &["tenant"],
    &["dossier_code"],
    &["status"],
    &["occurred_at"],
    &["received_at"],
    &["due_at"],
    &["procedure"],
    &["procedure", "name"],
    &["agency", "name"],
    &["applicant"],
    &["applicant", "name"],
    &["applicant", "phone"],
    &["on_behalf_of", "phone"],
    &["required_documents"],
    &["fee", "amount_vnd"],
    &["reason"],
    &["sequence"],
    &["channels", "zalo"],
];

fn set(value: &mut Value, path: &[&str], new: Value) {
    let (last, parents) = path.split_last().expect("a path has a field");
    let mut v = value;
    for p in parents {
        v = &mut v[*p];
    }
    v[*last] = new;
}

proptest! {
    #[test]
    fn any_json_is_either_an_event_or_a_refusal_naming_a_field(value in any_json()) {
        if let Err(e) = DossierEvent::from_json(&value) {
            prop_assert!(!e.field.is_empty() || (e.code == "invalid_body" && !value.is_object()), "{e:?}");
        }
    }

    #[test]
    fn a_valid_event_with_one_field_replaced_by_anything_never_panics_and_stays_normalised(
        path in prop::sample::select(PATHS),
        new in any_json(),
    ) {
        let mut value = sample();
        set(&mut value, path, new);
        match DossierEvent::from_json(&value) {
            Ok(event) => {
                // Normalised: its own serialised form reads back as itself, with the
                // same content digest, and no text in it can trick a reader.
                let again = DossierEvent::from_json(&serde_json::to_value(&event).unwrap());
                let again = again.expect("a normalised event reads back");
                prop_assert_eq!(again.content_digest(), event.content_digest());
                prop_assert_eq!(&again, &event);
                let content = event.content().to_string();
                prop_assert!(text::first_invisible(&content.replace(['\n', '\t'], " ")).is_none());
            }
            Err(e) => prop_assert!(!e.field.is_empty(), "{e:?}"),
        }
    }

    #[test]
    fn a_phone_number_parses_to_84_and_nine_digits_or_is_refused(raw in ".{0,24}") {
        if let Ok(phone) = PhoneNumber::parse(&raw) {
            let s = phone.as_str();
            prop_assert_eq!(s.len(), 11);
            prop_assert!(s.starts_with("84") && s.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(PhoneNumber::parse(s).unwrap(), phone.clone());
            prop_assert!(!phone.masked().contains(&s[4..9]));
        }
    }

    #[test]
    fn every_written_form_of_a_mobile_number_normalises_to_the_same_number(
        first in prop::sample::select(vec!['3', '5', '7', '8', '9']),
        rest in "[0-9]{8}",
        prefix in prop::sample::select(vec!["0", "84", "+84", "(+84) ", "+84 "]),
        separator in prop::sample::select(vec!["", " ", ".", "-"]),
    ) {
        let national = format!("{first}{rest}");
        let written = format!(
            "{prefix}{}{separator}{}{separator}{}",
            &national[..3],
            &national[3..6],
            &national[6..]
        );
        let phone = PhoneNumber::parse(&written).unwrap();
        prop_assert_eq!(phone.as_str(), format!("84{national}"));
    }

    #[test]
    fn stripped_text_has_nothing_invisible_left_and_refusal_agrees_with_detection(
        raw in ".{0,60}",
    ) {
        let stripped = text::strip_invisible(&raw);
        prop_assert!(stripped
            .chars()
            .all(|c| matches!(c, '\n' | '\t') || !text::is_invisible(c)));
        prop_assert_eq!(
            text::invisible_refusal(&raw).is_some(),
            raw.chars().any(text::is_invisible)
        );
    }
}

#[test]
fn the_event_the_mutations_start_from_is_valid() {
    // Otherwise every mutation would be refused and the properties above prove little.
    DossierEvent::from_json(&sample()).expect("the base event is valid");
}
