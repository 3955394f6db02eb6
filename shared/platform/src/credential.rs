//! Bearer tokens as the tenants file holds them: in clear, or only as a hash, so a
//! copy of the file (a backup, a Kubernetes Secret read by the wrong pod, a support
//! ticket) does not hand out the province's credentials.
//!
//! A value in the file is read as:
//!
//! | form | meaning |
//! |---|---|
//! | `sha256:<64 hex digits>` | the SHA-256 of the token (recommended: `loa tokens new`) |
//! | `$argon2id$…` (any argon2 PHC string) | an argon2 hash of the token |
//! | anything else | the token itself |
//!
//! Every comparison is constant-time: a token in clear is compared by digest (so not
//! even its length leaks), a SHA-256 hash digest to digest with `subtle`, and argon2
//! compares inside the crate. A token is 256 random bits, so SHA-256 is as safe as a
//! slow hash for it and costs a microsecond; argon2 costs tens of milliseconds of CPU
//! per check, so a token once verified is remembered (as its SHA-256) and checked the
//! fast way after that, and a wrong one costs a full argon2 check each time (which is
//! why failed admin authentications are slowed down, [`crate::http::AuthThrottle`]).

use crate::Secret;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;

/// Prefix of a SHA-256 hash in the tenants file.
pub const SHA256_PREFIX: &str = "sha256:";

/// A bearer credential from the tenants file: the token itself or a hash of it.
#[derive(Clone)]
pub struct Credential(Form);

#[derive(Clone)]
enum Form {
    /// The token in clear, and its digest (what candidates are compared with).
    Plain(Secret, [u8; 32]),
    /// Only the token's SHA-256.
    Sha256([u8; 32]),
    /// An argon2 PHC string, and the digest of the token once one verified.
    Argon2(Secret, Arc<OnceLock<[u8; 32]>>),
}

/// Why a tenants-file value is not a usable credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `sha256:` followed by something other than 64 hex digits.
    #[error("`sha256:` must be followed by 64 hexadecimal digits")]
    BadSha256,
    /// A `$argon2…` value that is not a valid PHC string.
    #[error("not a valid argon2 PHC string: {0}")]
    BadArgon2(String),
    /// An empty value.
    #[error("a token may not be empty")]
    Empty,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Credential {
    /// A token in clear (tests, the demo tenant, generated files).
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        let d = digest(&token);
        Self(Form::Plain(Secret::new(token), d))
    }

    /// Reads a tenants-file value: a `sha256:` hash, an argon2 PHC string or a token.
    pub fn parse(value: &str) -> Result<Self, CredentialError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(CredentialError::Empty);
        }
        if let Some(hex_digest) = value.strip_prefix(SHA256_PREFIX) {
            let mut d = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut d).map_err(|_| CredentialError::BadSha256)?;
            return Ok(Self(Form::Sha256(d)));
        }
        if value.starts_with("$argon2") {
            let hash = argon2::PasswordHash::new(value)
                .map_err(|e| CredentialError::BadArgon2(e.to_string()))?;
            if hash.hash.is_none() || hash.salt.is_none() {
                return Err(CredentialError::BadArgon2("no salt or hash".into()));
            }
            return Ok(Self(Form::Argon2(
                Secret::new(value),
                Arc::new(OnceLock::new()),
            )));
        }
        Ok(Self::new(value))
    }

    /// Whether `candidate` is this credential's token, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let d = digest(candidate);
        match &self.0 {
            Form::Plain(_, known) | Form::Sha256(known) => bool::from(known.ct_eq(&d)),
            Form::Argon2(phc, verified) => {
                if let Some(known) = verified.get() {
                    if bool::from(known.ct_eq(&d)) {
                        return true;
                    }
                }
                let ok = argon2_verifies(phc.expose(), candidate);
                if ok {
                    let _ = verified.set(d);
                }
                ok
            }
        }
    }

    /// The token itself when the file holds it in clear; `None` for a hash. Only the
    /// replay of an AMQP ingress dead letter needs it (it re-presents the source's
    /// token to intake).
    pub fn plain(&self) -> Option<&Secret> {
        match &self.0 {
            Form::Plain(s, _) => Some(s),
            _ => None,
        }
    }

    /// What to write in a tenants file to get this credential back (the token in
    /// clear, or its hash as read); for programs that write tenants files.
    pub fn file_value(&self) -> String {
        match &self.0 {
            Form::Plain(s, _) => s.expose().to_owned(),
            Form::Sha256(d) => format!("{SHA256_PREFIX}{}", hex::encode(d)),
            Form::Argon2(phc, _) => phc.expose().to_owned(),
        }
    }

    /// Whether the file holds only a hash (no length can be checked then).
    pub fn is_hashed(&self) -> bool {
        !matches!(self.0, Form::Plain(..))
    }
}

fn argon2_verifies(phc: &str, candidate: &str) -> bool {
    use argon2::PasswordVerifier;
    let Ok(hash) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(candidate.as_bytes(), &hash)
        .is_ok()
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Form::Plain(..) => "Credential(***)",
            Form::Sha256(_) => "Credential(sha256:***)",
            Form::Argon2(..) => "Credential($argon2…)",
        })
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A fresh token (256 random bits, 64 hex digits) and the `sha256:` hash to put in
/// the tenants file in its place (`loa tokens new`).
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    let hash = sha256_of(&token);
    (token, hash)
}

/// The `sha256:<hex>` form of a token.
pub fn sha256_of(token: &str) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(digest(token)))
}

/// The argon2id PHC string of a token (the crate's defaults), for operators whose
/// policy asks for a slow hash.
pub fn argon2_of(token: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes always encode as a salt");
    argon2::Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_clear_matches_itself_only() {
        let c = Credential::parse("dn-source-token").unwrap();
        assert!(c.matches("dn-source-token"));
        assert!(!c.matches("dn-source-tokem"));
        assert!(!c.matches("dn-source"));
        assert!(!c.matches(""));
        assert_eq!(c.plain().unwrap().expose(), "dn-source-token");
    }

    #[test]
    fn a_sha256_hash_matches_the_token_it_was_made_from() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 64);
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        let c = Credential::parse(&hash).unwrap();
        assert!(c.matches(&token));
        assert!(!c.matches(&hash), "the hash itself is not the token");
        assert!(!c.matches(&token[1..]));
        assert!(c.plain().is_none() && c.is_hashed());
    }

    #[test]
    fn an_argon2_hash_matches_its_token_and_remembers_it() {
        let c = Credential::parse(&argon2_of("a-long-random-token")).unwrap();
        assert!(!c.matches("another-token"));
        assert!(c.matches("a-long-random-token"));
        assert!(
            c.matches("a-long-random-token"),
            "the second check is the fast one"
        );
        assert!(!c.matches("another-token"));
    }

    #[test]
    fn malformed_hashes_are_refused_when_the_file_is_read() {
        for bad in ["sha256:abc", "sha256:", "$argon2id$garbage", "  "] {
            assert!(Credential::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_credential_never_prints_its_value() {
        let shown = format!("{:?}", Credential::new("demo-token"));
        assert!(!shown.contains("demo-token"), "{shown}");
    }
}
