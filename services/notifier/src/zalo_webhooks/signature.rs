//! The signature Zalo puts on every webhook: `X-ZEvent-Signature: mac=<hex>`, the
//! lowercase hex of the plain SHA-256 (not an HMAC) of `app_id + raw body + timestamp +
//! OA secret key`, where `timestamp` is the body's `timestamp` string.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header carrying Zalo's signature.
pub(crate) const SIGNATURE_HEADER: &str = "X-ZEvent-Signature";

/// The lowercase hex SHA-256 Zalo signs a webhook with (without the `mac=` prefix).
pub(crate) fn expected_signature(
    app_id: &str,
    raw_body: &[u8],
    timestamp: &str,
    oa_secret_key: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(app_id.as_bytes());
    hasher.update(raw_body);
    hasher.update(timestamp.as_bytes());
    hasher.update(oa_secret_key.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether an `X-ZEvent-Signature` value (`mac=<hex>`, or the bare hex, any case)
/// signs this body; compared in constant time.
pub(crate) fn signature_matches(
    header: &str,
    app_id: &str,
    raw_body: &[u8],
    timestamp: &str,
    oa_secret_key: &str,
) -> bool {
    let value = header.trim();
    let hex = match value.split_once('=') {
        Some((scheme, hex)) if scheme.trim().eq_ignore_ascii_case("mac") => hex.trim(),
        Some(_) => return false,
        None => value,
    };
    let expected = expected_signature(app_id, raw_body, timestamp, oa_secret_key);
    expected
        .as_bytes()
        .ct_eq(hex.to_ascii_lowercase().as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_plain_sha256_of_app_id_body_timestamp_and_oa_secret_key() {
        // printf '%s' '123{"a":1}1700000000000secret' | sha256sum
        let vector = "9250931b5910c27c398934788bf72f7c92b5414cabd937e946c76dd2c50f5fc4";
        assert_eq!(
            expected_signature("123", br#"{"a":1}"#, "1700000000000", "secret"),
            vector
        );
        let body = br#"{"a":1}"#;
        for header in [
            format!("mac={vector}"),
            format!("MAC = {}", vector.to_uppercase()),
            vector.to_owned(),
        ] {
            assert!(
                signature_matches(&header, "123", body, "1700000000000", "secret"),
                "{header}"
            );
        }
        for header in [
            format!("sha256={vector}"),
            format!("mac={}", &vector[..63]),
            "mac=".to_owned(),
        ] {
            assert!(
                !signature_matches(&header, "123", body, "1700000000000", "secret"),
                "{header}"
            );
        }
        assert!(!signature_matches(
            &format!("mac={vector}"),
            "123",
            br#"{"a":2}"#,
            "1700000000000",
            "secret"
        ));
    }
}
