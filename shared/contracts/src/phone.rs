//! Vietnamese mobile numbers.

use crate::ValidationError;
use serde::{Deserialize, Serialize};

/// A Vietnamese mobile number in the canonical gateway form `84` + 9 digits
/// (`84903123456`), which is what ZNS expects. Build it with [`PhoneNumber::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts the common written forms: `0903123456`, `+84903123456`, `84903123456`,
    /// with spaces, dots, dashes or parentheses in between. The subscriber part must
    /// start with 3, 5, 7, 8 or 9 (mobile ranges since the 2018 renumbering).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let mut digits = String::with_capacity(raw.len());
        let mut plus_seen = false;
        for c in raw.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                // A country-code plus, before any digit: "+84…" or "(+84) …".
                '+' if digits.is_empty() && !plus_seen => plus_seen = true,
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(
                    "a phone number may only contain digits, spaces, dots, dashes and a leading +",
                ),
            }
        }
        let national = if let Some(rest) = digits.strip_prefix("84") {
            rest
        } else if let Some(rest) = digits.strip_prefix('0') {
            rest
        } else {
            return Err("a Vietnamese mobile number starts with 0, 84 or +84");
        };
        if national.len() != 9 {
            return Err("a Vietnamese mobile number has 9 digits after 0 or 84");
        }
        if !matches!(national.as_bytes()[0], b'3' | b'5' | b'7' | b'8' | b'9') {
            return Err("not a Vietnamese mobile range (03x, 05x, 07x, 08x, 09x)");
        }
        Ok(Self(format!("84{national}")))
    }

    /// Parses and reports a failure against `field`.
    pub fn parse_field(raw: &str, field: &str) -> Result<Self, ValidationError> {
        Self::parse(raw).map_err(|why| ValidationError::new(field, "invalid_phone", why))
    }

    /// The canonical `84…` digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: `8490*****56`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Masks the middle of a phone-like string so logs never hold a full number.
pub fn mask_phone(phone: &str) -> String {
    let n = phone.chars().count();
    if n <= 6 {
        return "*".repeat(n);
    }
    phone
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 4 || i >= n - 2 { c } else { '*' })
        .collect()
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl std::fmt::Display for PhoneNumber {
    /// Displays masked: a phone number must never reach a log line by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_common_written_form_normalises_to_84_and_nine_digits() {
        for raw in [
            "0903123456",
            "+84903123456",
            "84903123456",
            "+84 903.123.456",
            "090 312 3456",
            "(+84) 903-123-456",
        ] {
            assert_eq!(
                PhoneNumber::parse(raw).unwrap().as_str(),
                "84903123456",
                "{raw}"
            );
        }
    }

    #[test]
    fn landlines_short_numbers_and_letters_are_rejected() {
        for raw in [
            "",
            "0243123456",
            "090312345",
            "09031234567",
            "abc",
            "+1 415 555 0100",
            "0903a23456",
            "1903123456",
        ] {
            assert!(PhoneNumber::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn display_never_shows_the_whole_number() {
        let p = PhoneNumber::parse("0903123456").unwrap();
        assert_eq!(p.to_string(), "8490*****56");
    }
}
