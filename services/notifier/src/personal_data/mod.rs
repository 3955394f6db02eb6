//! Personal data the notifier holds, and how it lets go of it (Decree 13/2023):
//!
//! - [`retention`]: a tenant's `retention_days` after a row's last change, parked
//!   requests are given up (their bodies hold the recipient's phone and name), dead
//!   letters' bodies reduced to masked forms, chat lookups and texts deleted once done with; one
//!   replica at a time, in batches, counted in `loa_notifier_personal_data_erased_total`.
//! - [`erasure`]: a citizen's erasure request (`POST /v1/subjects/erase`): their
//!   subscriber row, opt-ins and tags, parked requests, chat lookups and texts (theirs,
//!   and anyone's naming their phone), webhooks, ratings and the dead letters naming
//!   their phone, audited in `notifier.erasures`.
//!
//! The notifier keeps no dossier history: what it holds of a person sits in parked
//! request bodies (`deliveries.request`, only while a delivery waits), dead-letter
//! bodies, the audience (`subscribers`), chat lookups, texts and ratings, and webhook
//! bodies (stored with the phone masked and a text's words dropped, deleted after 7
//! days). Retention is keyed on each
//! row's own last change: a delivery's `updated_at`, a dead letter's last death
//! (`dead_at`), a lookup's `received_at`. The audience is not subject to retention: a
//! citizen stays in it until they unfollow, opt out or ask to be erased.

pub mod erasure;
pub mod retention;

use loa_contracts::personal::mask_personal_data;

/// A stored message body with its persons masked ([`mask_personal_data`]); a body that
/// is not JSON cannot be read for persons, so nothing of it is kept.
pub(crate) fn masked_body(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            mask_personal_data(&mut value);
            serde_json::to_vec(&value).unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_body_keeps_its_shape_with_persons_masked_and_anything_else_is_dropped() {
        let body = br#"{"applicant":{"name":"Tr\u1ea7n Th\u1ecb B\u00edch","phone":"84903123456"},"status":4}"#;
        let masked = String::from_utf8(masked_body(body)).unwrap();
        assert_eq!(
            masked,
            r#"{"applicant":{"name":"Trần T. B.","phone":"8490*****56"},"status":4}"#
        );
        assert!(masked_body(b"phone=84903123456").is_empty());
    }
}
