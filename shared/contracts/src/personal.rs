//! Personal data in stored messages, reduced to masked forms: what retention and a
//! citizen's erasure leave of a name, a phone or a Zalo user id.
//!
//! The tracker's history, the notifier's parked requests and every service's dead
//! letters hold the same message shapes (events, batches of them, notification
//! requests, the upstream's own body); [`mask_personal_data`] walks any of them, so a
//! new message type carrying a `phone` or a person is masked without a change here.

use crate::phone::mask_phone;
use serde_json::Value;

/// Masks a Vietnamese full name: the family name stays, every other word becomes its
/// initial (`Trần Thị Bích` → `Trần T. B.`). A single word becomes its initial.
/// Masking a masked name gives it back, so erasing twice changes nothing.
pub fn mask_name(full_name: &str) -> String {
    let words: Vec<&str> = full_name.split_whitespace().collect();
    let initial = |w: &str| {
        w.chars()
            .next()
            .map(|c| format!("{}.", c.to_uppercase()))
            .unwrap_or_default()
    };
    match words.as_slice() {
        [] => String::new(),
        [only] => initial(only),
        [family, rest @ ..] => {
            let mut out = (*family).to_owned();
            for w in rest {
                out.push(' ');
                out.push_str(&initial(w));
            }
            out
        }
    }
}

/// Keys whose object is a person: its `name` is masked.
const PERSON_KEYS: [&str; 3] = ["applicant", "on_behalf_of", "recipient"];
/// Keys whose text is a person's name wherever they are (template parameters).
const NAME_KEYS: [&str; 1] = ["customer_name"];
/// Keys whose text is a phone number wherever they are.
const PHONE_KEYS: [&str; 3] = ["phone", "phone_number", "applicant_phone"];
/// Keys that identify a person on Zalo: dropped.
const ZALO_ID_KEYS: [&str; 2] = ["zalo_user_id", "user_id"];

/// Reduces every person in `value` to masked forms, at any depth: phones
/// (`8490*****56`), persons' names and `customer_name` (`Trần T. B.`); Zalo user ids
/// are removed. Returns whether anything changed. Idempotent.
pub fn mask_personal_data(value: &mut Value) -> bool {
    match value {
        Value::Array(items) => {
            // Every item, not up to the first that changed.
            let mut changed = false;
            for item in items {
                changed |= mask_personal_data(item);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for key in ZALO_ID_KEYS {
                changed |= map.remove(key).is_some();
            }
            for (key, field) in map.iter_mut() {
                let key = key.as_str();
                match field {
                    Value::String(text) if PHONE_KEYS.contains(&key) => {
                        if !text.contains('*') && !text.is_empty() {
                            *text = mask_phone(text);
                            changed = true;
                        }
                    }
                    Value::String(text) if NAME_KEYS.contains(&key) => {
                        changed |= mask_in_place(text);
                    }
                    Value::Object(person) if PERSON_KEYS.contains(&key) => {
                        if let Some(Value::String(name)) = person.get_mut("name") {
                            changed |= mask_in_place(name);
                        }
                        changed |= mask_personal_data(field);
                    }
                    _ => changed |= mask_personal_data(field),
                }
            }
            changed
        }
        _ => false,
    }
}

fn mask_in_place(name: &mut String) -> bool {
    let masked = mask_name(name);
    let changed = masked != *name;
    *name = masked;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_masked_to_family_name_and_initials_and_masking_twice_changes_nothing() {
        assert_eq!(mask_name("Trần Thị Bích"), "Trần T. B.");
        assert_eq!(mask_name("Trần T. B."), "Trần T. B.");
        assert_eq!(mask_name("Bích"), "B.");
        assert_eq!(mask_name("ông/bà Lê Văn Cường"), "ông/bà L. V. C.");
        assert_eq!(mask_name(""), "");
    }

    #[test]
    fn every_person_at_any_depth_is_masked_and_zalo_ids_dropped() {
        let mut batch = json!({
            "type": "dossier_event_batch.v1",
            "events": [{
                "applicant": {"name": "Trần Thị Bích", "phone": "84903123456", "zalo_user_id": "123"},
                "on_behalf_of": {"name": "Lê Văn Tám", "phone": "0912 345 678"},
                "reason": "Thiếu giấy tờ"
            }],
            "request": {
                "recipient": {"phone": "84903123456", "zalo_user_id": "987"},
                "params": {"customer_name": "ông/bà Trần Thị Bích", "dossier_code": "H56-1"}
            }
        });
        assert!(mask_personal_data(&mut batch));
        let once = batch.clone();
        assert!(
            !mask_personal_data(&mut batch),
            "a second pass changes nothing"
        );
        assert_eq!(batch, once);
        assert_eq!(
            batch,
            json!({
                "type": "dossier_event_batch.v1",
                "events": [{
                    "applicant": {"name": "Trần T. B.", "phone": "8490*****56"},
                    "on_behalf_of": {"name": "Lê V. T.", "phone": "0912******78"},
                    "reason": "Thiếu giấy tờ"
                }],
                "request": {
                    "recipient": {"phone": "8490*****56"},
                    "params": {"customer_name": "ông/bà T. T. B.", "dossier_code": "H56-1"}
                }
            })
        );
    }

    #[test]
    fn text_without_persons_is_left_as_it_is() {
        let mut value = json!({"status": 4, "agency": {"name": "UBND phường Bến Nghé"}});
        let before = value.clone();
        assert!(!mask_personal_data(&mut value));
        assert_eq!(value, before);
    }
}
