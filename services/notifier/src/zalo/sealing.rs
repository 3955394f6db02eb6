//! Zalo tokens encrypted at rest.
//!
//! A province's refresh token is the key to its Zalo OA: whoever reads it from a
//! database backup can send as the province. So `notifier.oauth_tokens` holds sealed
//! values only: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`, audited, with a
//! 192-bit random nonce per value, so random nonces never collide in practice),
//! written as `sealed:v1:<key id>:<hex(nonce ‖ ciphertext ‖ tag)>`. The key id travels
//! with each value, so values sealed under an older key stay readable while that key is
//! configured, and `loa secrets rotate-key` re-seals them all under the current one.
//! The tenant and the column are the associated data: a value copied into another row
//! or column does not open.
//!
//! Keys come from `notifier.token_keys` (`LOA_NOTIFIER__TOKEN_KEYS`) or the file named
//! by `notifier.token_keys_file`: entries `<id>:<64 hex digits>` separated by commas,
//! spaces or lines, the **first** being the current key. Without either, the notifier
//! uses a development key whose bytes are in this source file (the tokens are still
//! never in clear in the table, but anyone can open them); production mode refuses
//! to start that way.

use anyhow::Context;
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    XChaCha20Poly1305, XNonce,
};
use deadpool_postgres::Pool;
use loa_platform::Secret;
use std::{fmt, path::Path};

/// What every sealed value starts with.
const PREFIX: &str = "sealed:v1:";

/// The key id of the development key.
pub const DEVELOPMENT_KEY_ID: &str = "dev";

/// The development key: public, for the demo and tests only.
const DEVELOPMENT_KEY: [u8; 32] = *b"loa-development-key-not-a-secret";

const NONCE_BYTES: usize = 24;

/// Why a keyring could not be built or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The keys setting is malformed; names the setting and the entry.
    #[error("{setting}: {why}")]
    Keys {
        /// `notifier.token_keys` or `notifier.token_keys_file`.
        setting: &'static str,
        /// What is wrong (never the key itself).
        why: String,
    },
    /// A value was sealed with a key this keyring does not hold.
    #[error(
        "a token is sealed with key `{0}`, which notifier.token_keys does not hold; \
         add that key back (after the current one) or re-authorise the OA"
    )]
    UnknownKey(String),
    /// A value did not open: wrong key bytes, another row's value, or tampering.
    #[error("a sealed token did not open (wrong key bytes for its id, or altered)")]
    Corrupt,
}

/// One key: its id and its bytes.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The configured keys; the first seals, all open. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// The keyring of the settings: `notifier.token_keys`, else the file of
    /// `notifier.token_keys_file`, else the development key.
    pub fn from_settings(
        keys: Option<&Secret>,
        keys_file: Option<&Path>,
    ) -> Result<Self, SealError> {
        match (keys, keys_file) {
            (Some(keys), _) => Self::parse(keys.expose(), "notifier.token_keys"),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| SealError::Keys {
                    setting: "notifier.token_keys_file",
                    why: format!("cannot read {}: {e}", path.display()),
                })?;
                Self::parse(&text, "notifier.token_keys_file")
            }
            (None, None) => Ok(Self::development()),
        }
    }

    /// The public development key alone.
    pub fn development() -> Self {
        Self {
            keys: vec![Key {
                id: DEVELOPMENT_KEY_ID.to_owned(),
                cipher: XChaCha20Poly1305::new(&DEVELOPMENT_KEY.into()),
            }],
        }
    }

    /// Parses `<id>:<64 hex digits>` entries separated by commas or white space; the
    /// first is the current key.
    pub fn parse(spec: &str, setting: &'static str) -> Result<Self, SealError> {
        let bad = |why: String| SealError::Keys { setting, why };
        let mut keys: Vec<Key> = Vec::new();
        for (i, entry) in spec
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let Some((id, hex_key)) = entry.split_once(':') else {
                return Err(bad(format!(
                    "entry {} is not `<id>:<64 hex digits>` (`loa secrets new-key` prints one)",
                    i + 1
                )));
            };
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(format!(
                    "entry {}: a key id is 1 to 32 letters, digits, `-` or `_`",
                    i + 1
                )));
            }
            let bytes: [u8; 32] = hex::decode(hex_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "key `{id}` is not 32 bytes written as 64 hex digits"
                    ))
                })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(bad(format!("key id `{id}` is given twice")));
            }
            keys.push(Key {
                id: id.to_owned(),
                cipher: XChaCha20Poly1305::new(&bytes.into()),
            });
        }
        if keys.is_empty() {
            return Err(bad("holds no key".to_owned()));
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Whether this keyring is the public development key.
    pub fn is_development(&self) -> bool {
        self.current_id() == DEVELOPMENT_KEY_ID
    }

    /// `value` sealed under the current key, bound to `tenant` and `column`.
    pub fn seal(&self, tenant: &str, column: &str, value: &str) -> String {
        let key = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(tenant, column);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, hex::encode(bytes))
    }

    /// Opens a value [`Keyring::seal`] wrote for `tenant` and `column`. A value without
    /// the sealed prefix is a plaintext one from before sealing, returned as it is
    /// (the notifier seals those at start-up: [`seal_plaintext_rows`]).
    pub fn open(&self, tenant: &str, column: &str, stored: &str) -> Result<Secret, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, hex_sealed) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let bytes = hex::decode(hex_sealed).map_err(|_| SealError::Corrupt)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::Corrupt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = associated_data(tenant, column);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SealError::Corrupt)
    }

    /// Whether `stored` is sealed under the current key already.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current_id())
    }
}

fn associated_data(tenant: &str, column: &str) -> Vec<u8> {
    format!("loa notifier.oauth_tokens\u{1f}{tenant}\u{1f}{column}").into_bytes()
}

/// A fresh key entry for `notifier.token_keys`: `<id>:<64 hex digits>`.
pub fn new_key(id: &str) -> String {
    let key = XChaCha20Poly1305::generate_key(&mut OsRng);
    format!("{id}:{}", hex::encode(key))
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Rows whose tokens were sealed again under the current key.
    pub resealed: u64,
    /// Rows already sealed under it, left alone.
    pub current: u64,
}

/// Seals every token not sealed under the current key, plaintext ones included, one
/// row at a time under its row lock (a refresh in flight finishes first, and the
/// refresh after this reads the resealed value). Idempotent.
pub async fn reseal_all(pool: &Pool, keyring: &Keyring) -> anyhow::Result<Resealed> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tenants: Vec<String> = client
        .query(
            "SELECT tenant FROM notifier.oauth_tokens ORDER BY tenant",
            &[],
        )
        .await
        .context("Failed to list the OAuth token rows")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Resealed::default();
    for tenant in tenants {
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        let Some(row) = tx
            .query_opt(
                "SELECT access_token, refresh_token FROM notifier.oauth_tokens
                  WHERE tenant = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .context("Failed to lock an OAuth token row")?
        else {
            continue;
        };
        let access: Option<String> = row.get(0);
        let refresh: String = row.get(1);
        if keyring.is_current(&refresh) && access.as_deref().is_none_or(|a| keyring.is_current(a)) {
            done.current += 1;
            continue;
        }
        let reseal = |column: &str, stored: &str| -> anyhow::Result<String> {
            let plain = keyring
                .open(&tenant, column, stored)
                .with_context(|| format!("tenant `{tenant}`, {column}"))?;
            Ok(keyring.seal(&tenant, column, plain.expose()))
        };
        let access = access
            .as_deref()
            .map(|a| reseal("access_token", a))
            .transpose()?;
        let refresh = reseal("refresh_token", &refresh)?;
        tx.execute(
            "UPDATE notifier.oauth_tokens SET access_token = $2, refresh_token = $3,
                    updated_at = now()
              WHERE tenant = $1",
            &[&tenant, &access, &refresh],
        )
        .await
        .context("Failed to store resealed tokens")?;
        tx.commit()
            .await
            .context("Failed to commit resealed tokens")?;
        done.resealed += 1;
    }
    Ok(done)
}

/// Seals the tokens stored in clear before sealing existed (run at start-up, after
/// the migrations): [`reseal_all`] limited to rows holding a plaintext value, so a
/// replica started with an older key list does not re-seal under it.
pub async fn seal_plaintext_rows(pool: &Pool, keyring: &Keyring) -> anyhow::Result<u64> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let plaintext: i64 = client
        .query_one(
            "SELECT count(*) FROM notifier.oauth_tokens
              WHERE refresh_token NOT LIKE 'sealed:v1:%'
                 OR access_token NOT LIKE 'sealed:v1:%'",
            &[],
        )
        .await
        .context("Failed to count plaintext tokens")?
        .get(0);
    drop(client);
    if plaintext == 0 {
        return Ok(0);
    }
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let rows = tx
        .query(
            "SELECT tenant, access_token, refresh_token FROM notifier.oauth_tokens
              WHERE refresh_token NOT LIKE 'sealed:v1:%'
                 OR access_token NOT LIKE 'sealed:v1:%'
              FOR UPDATE",
            &[],
        )
        .await
        .context("Failed to lock plaintext token rows")?;
    let mut sealed = 0;
    for row in rows {
        let tenant: String = row.get(0);
        let access: Option<String> = row.get(1);
        let refresh: String = row.get(2);
        let seal = |column: &str, stored: String| {
            if stored.starts_with(PREFIX) {
                stored
            } else {
                keyring.seal(&tenant, column, &stored)
            }
        };
        let access = access.map(|a| seal("access_token", a));
        let refresh = seal("refresh_token", refresh);
        tx.execute(
            "UPDATE notifier.oauth_tokens SET access_token = $2, refresh_token = $3
              WHERE tenant = $1",
            &[&tenant, &access, &refresh],
        )
        .await
        .context("Failed to store sealed tokens")?;
        sealed += 1;
    }
    tx.commit()
        .await
        .context("Failed to commit sealed tokens")?;
    Ok(sealed)
}

/// Fails, naming the tenant, when a stored token does not open with `keyring` (a key
/// dropped from the list too early, or the wrong key bytes): the notifier refuses to
/// start rather than fail every send of that tenant later.
pub async fn check_all_open(pool: &Pool, keyring: &Keyring) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT tenant, access_token, refresh_token FROM notifier.oauth_tokens",
            &[],
        )
        .await
        .context("Failed to read the OAuth token rows")?;
    for row in rows {
        let tenant: String = row.get(0);
        let access: Option<String> = row.get(1);
        let refresh: String = row.get(2);
        for (column, value) in [("access_token", access), ("refresh_token", Some(refresh))] {
            if let Some(value) = value {
                keyring
                    .open(&tenant, column, &value)
                    .with_context(|| format!("tenant `{tenant}`, {column}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(spec: &str) -> Keyring {
        Keyring::parse(spec, "notifier.token_keys").unwrap()
    }

    #[test]
    fn a_sealed_token_opens_for_its_row_and_column_only() {
        let ring = Keyring::development();
        let sealed = ring.seal("dong-nai", "refresh_token", "zalo-refresh-123");
        assert!(sealed.starts_with("sealed:v1:dev:"), "{sealed}");
        assert!(!sealed.contains("zalo-refresh-123"));
        assert_eq!(
            ring.open("dong-nai", "refresh_token", &sealed)
                .unwrap()
                .expose(),
            "zalo-refresh-123"
        );
        assert!(matches!(
            ring.open("binh-duong", "refresh_token", &sealed),
            Err(SealError::Corrupt)
        ));
        assert!(matches!(
            ring.open("dong-nai", "access_token", &sealed),
            Err(SealError::Corrupt)
        ));
        assert_ne!(
            sealed,
            ring.seal("dong-nai", "refresh_token", "zalo-refresh-123"),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn an_altered_value_does_not_open() {
        let ring = Keyring::development();
        let mut sealed = ring.seal("t", "refresh_token", "secret").into_bytes();
        let last = sealed.len() - 1;
        sealed[last] = if sealed[last] == b'0' { b'1' } else { b'0' };
        let sealed = String::from_utf8(sealed).unwrap();
        assert!(matches!(
            ring.open("t", "refresh_token", &sealed),
            Err(SealError::Corrupt)
        ));
    }

    #[test]
    fn an_older_key_still_opens_and_a_missing_one_is_named() {
        let (k1, k2) = (new_key("k1"), new_key("k2"));
        let old = keyring(&k1).seal("t", "refresh_token", "v");
        let rotated = keyring(&format!("{k2},\n{k1}"));
        assert_eq!(rotated.current_id(), "k2");
        assert!(!rotated.is_current(&old));
        assert_eq!(
            rotated.open("t", "refresh_token", &old).unwrap().expose(),
            "v"
        );
        let error = keyring(&k2).open("t", "refresh_token", &old).unwrap_err();
        assert!(error.to_string().contains("key `k1`"), "{error}");
    }

    #[test]
    fn malformed_key_lists_are_refused_naming_the_setting_without_the_key() {
        for (spec, expected) in [
            ("", "holds no key"),
            ("k1", "entry 1 is not"),
            ("k1:abcd", "key `k1` is not 32 bytes"),
            ("bad.id:00", "a key id is"),
        ] {
            let error = Keyring::parse(spec, "notifier.token_keys").unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with("notifier.token_keys: "), "{text}");
            assert!(text.contains(expected), "{spec:?}: {text}");
        }
        let k = new_key("k1");
        let twice = Keyring::parse(&format!("{k} {k}"), "notifier.token_keys").unwrap_err();
        assert!(twice.to_string().contains("given twice"));
        assert!(!twice.to_string().contains(&k[3..]), "never the key itself");
    }

    #[test]
    fn a_plaintext_value_from_before_sealing_reads_as_it_is() {
        let ring = Keyring::development();
        assert_eq!(
            ring.open("t", "refresh_token", "old-plain")
                .unwrap()
                .expose(),
            "old-plain"
        );
        assert!(!ring.is_current("old-plain"));
    }
}
