//! Stateless, signed OAuth tokens, so they survive a sandbox restart the way Zalo's do.
//!
//! - Refresh token of generation `n ≥ 1`: `zrt1.<n>.<mac>`, where `mac` is the first
//!   16 bytes, hex, of `HMAC-SHA256(app_secret, "refresh:<app_id>:<n>")`. Generation 0 is
//!   the seed configured for the tenant. A refresh is accepted when its generation is
//!   higher than every generation redeemed so far in this process, so each token is
//!   single-use and an old token is refused once a newer one was used; after a restart
//!   the newest token the client persisted still works.
//! - Access token: `zat1.<app_id>.<expires_ms>.<issued_us>.<mac>` with `mac` over
//!   `"access:<app_id>:<expires_ms>:<issued_us>"`. It validates without state: expiry is
//!   judged on the sandbox clock; `POST /_sandbox/tokens/expire` revokes every token
//!   issued before it by raising a cut-off on `issued_us` (real time).
//! - Authorization codes (an OA admin's consent, `/v4/oa/permission`): random,
//!   single-use, 10 minutes, bound to the app and the PKCE `code_challenge`; exchanged
//!   for a refresh token two generations above every one redeemed so far (newer than
//!   the one the client holds, so it works whatever happened to that one, and using it
//!   spends the older one).

use crate::{
    apps::{App, Apps},
    zalo::{codes, ZaloError},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};
use subtle::ConstantTimeEq;

const REFRESH_PREFIX: &str = "zrt1";
const ACCESS_PREFIX: &str = "zat1";

fn mac_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn macs_equal(expected: &str, got: &str) -> bool {
    expected.as_bytes().ct_eq(got.as_bytes()).into()
}

/// The refresh token of generation `generation` (≥ 1) for `app`.
pub fn refresh_token(app: &App, generation: u64) -> String {
    let mac = mac_hex(
        app.app_secret.expose(),
        &format!("refresh:{}:{generation}", app.app_id),
    );
    format!("{REFRESH_PREFIX}.{generation}.{mac}")
}

/// The generation of a refresh token of `app`: 0 for the configured seed, `None` for
/// anything not signed by this app.
pub fn refresh_generation(app: &App, token: &str) -> Option<u64> {
    if app.seed_refresh_token.matches(token) {
        return Some(0);
    }
    let mut parts = token.split('.');
    let (Some(REFRESH_PREFIX), Some(generation), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let generation: u64 = generation.parse().ok().filter(|g| *g >= 1)?;
    let expected = mac_hex(
        app.app_secret.expose(),
        &format!("refresh:{}:{generation}", app.app_id),
    );
    macs_equal(&expected, mac).then_some(generation)
}

/// An access token for `app`.
pub fn access_token(app: &App, expires_ms: i64, issued_us: u64) -> String {
    let mac = mac_hex(
        app.app_secret.expose(),
        &format!("access:{}:{expires_ms}:{issued_us}", app.app_id),
    );
    format!(
        "{ACCESS_PREFIX}.{}.{expires_ms}.{issued_us}.{mac}",
        app.app_id
    )
}

/// Why an access token was refused (all map to -124 on ZNS, -216 on OA paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `access_token` header.
    Missing,
    /// Not a token this sandbox signed.
    Invalid,
    /// Past its expiry on the sandbox clock.
    Expired,
    /// Issued before `POST /_sandbox/tokens/expire`.
    Revoked,
}

impl TokenProblem {
    /// The Zalo error for a ZNS (`oa == false`) or OA path.
    pub fn zalo_error(self, oa: bool) -> ZaloError {
        let code = if oa {
            codes::OA_INVALID_TOKEN
        } else {
            codes::ZNS_INVALID_TOKEN
        };
        match self {
            Self::Expired | Self::Revoked if oa => ZaloError::new(code, "Access token has expired"),
            _ => ZaloError::code(code),
        }
    }
}

/// Which refresh generations were redeemed and which access tokens are revoked. Not
/// cleared by `POST /_sandbox/reset`.
#[derive(Debug)]
pub struct TokenBook {
    highest_redeemed: Mutex<Vec<Option<u64>>>,
    revoked_before_us: AtomicU64,
    codes: Mutex<HashMap<String, PendingCode>>,
}

/// An authorization code waiting for its exchange.
#[derive(Debug)]
struct PendingCode {
    app_idx: usize,
    code_challenge: String,
    expires_ms: i64,
}

/// How long an authorization code can be exchanged (Zalo: 10 minutes).
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;

/// `base64url_nopad(SHA-256(verifier))`: the PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digest = <Sha256 as sha2::Digest>::digest(verifier.as_bytes());
    let mut out = String::with_capacity(43);
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

impl TokenBook {
    /// Nothing redeemed yet for `apps` apps.
    pub fn new(apps: usize) -> Self {
        Self {
            highest_redeemed: Mutex::new(vec![None; apps]),
            revoked_before_us: AtomicU64::new(0),
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// Grants an authorization code for `app` (the OA admin consented), bound to the
    /// PKCE challenge, valid until `now_ms + CODE_TTL_MS`.
    pub fn grant_code(&self, app: &App, code_challenge: &str, now_ms: i64) -> String {
        let code = format!("zac1.{:032x}", rand::random::<u128>());
        let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        codes.retain(|_, c| c.expires_ms > now_ms);
        codes.insert(
            code.clone(),
            PendingCode {
                app_idx: app.idx,
                code_challenge: code_challenge.to_owned(),
                expires_ms: now_ms + CODE_TTL_MS,
            },
        );
        code
    }

    /// Exchanges a code (once) for the generation of a new refresh token; the PKCE
    /// verifier must hash to the code's challenge.
    pub fn exchange_code(
        &self,
        app: &App,
        code: &str,
        code_verifier: &str,
        now_ms: i64,
    ) -> Result<u64, ZaloError> {
        let invalid = |why: &'static str| ZaloError::new(codes::OAUTH_INVALID_PARAM, why);
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(code)
            .ok_or_else(|| invalid("Invalid authorization code (unknown or already used)"))?;
        if pending.app_idx != app.idx {
            return Err(invalid("The authorization code belongs to another app"));
        }
        if pending.expires_ms <= now_ms {
            return Err(invalid("The authorization code has expired"));
        }
        if !macs_equal(&pending.code_challenge, &pkce_challenge(code_verifier)) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        let book = self
            .highest_redeemed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(book[app.idx].unwrap_or(0) + 2)
    }

    /// Redeems a refresh token: returns the next generation to issue, or -14014 when
    /// the token is unknown, forged or not newer than one already used.
    pub fn redeem(&self, app: &App, token: &str) -> Result<u64, ZaloError> {
        let Some(generation) = refresh_generation(app, token) else {
            return Err(ZaloError::new(
                codes::OAUTH_INVALID_REFRESH_TOKEN,
                "The refresh token is invalid or does not belong to this app",
            ));
        };
        let mut book = self
            .highest_redeemed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let highest = &mut book[app.idx];
        if highest.is_some_and(|h| generation <= h) {
            return Err(ZaloError::new(
                codes::OAUTH_INVALID_REFRESH_TOKEN,
                "The refresh token has already been used; refresh tokens are single-use",
            ));
        }
        *highest = Some(generation);
        Ok(generation + 1)
    }

    /// Issues an access token expiring at `expires_ms` (sandbox clock), always issued
    /// after the last revocation.
    pub fn issue_access(&self, app: &App, expires_ms: i64) -> String {
        let issued_us = real_now_us().max(self.revoked_before_us.load(Ordering::Acquire) + 1);
        access_token(app, expires_ms, issued_us)
    }

    /// Revokes every access token issued so far.
    pub fn expire_all(&self) {
        self.revoked_before_us
            .fetch_max(real_now_us(), Ordering::AcqRel);
    }

    /// The app an access token belongs to, if it is valid at `now_ms`.
    pub fn check_access(
        &self,
        apps: &Apps,
        token: Option<&str>,
        now_ms: i64,
    ) -> Result<Arc<App>, TokenProblem> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenProblem::Missing)?;
        let mut parts = token.split('.');
        let (Some(ACCESS_PREFIX), Some(app_id), Some(expires), Some(issued), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenProblem::Invalid);
        };
        let app = apps.get(app_id).ok_or(TokenProblem::Invalid)?;
        let (Ok(expires_ms), Ok(issued_us)) = (expires.parse::<i64>(), issued.parse::<u64>())
        else {
            return Err(TokenProblem::Invalid);
        };
        let expected = mac_hex(
            app.app_secret.expose(),
            &format!("access:{app_id}:{expires_ms}:{issued_us}"),
        );
        if !macs_equal(&expected, mac) {
            return Err(TokenProblem::Invalid);
        }
        if issued_us <= self.revoked_before_us.load(Ordering::Acquire) {
            return Err(TokenProblem::Revoked);
        }
        if expires_ms <= now_ms {
            return Err(TokenProblem::Expired);
        }
        Ok(Arc::clone(app))
    }
}

fn real_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loa_platform::Tenants;

    fn apps() -> Apps {
        let tenants = Tenants::new(vec![loa_platform::tenants::demo_tenant("http://x")]).unwrap();
        Apps::from_tenants(&tenants).unwrap()
    }

    #[test]
    fn refresh_tokens_are_single_use_and_only_newer_generations_are_accepted() {
        let apps = apps();
        let app = apps.first();
        let book = TokenBook::new(1);
        assert_eq!(book.redeem(app, "demo-refresh-token"), Ok(1));
        assert!(book.redeem(app, "demo-refresh-token").is_err());
        let first = refresh_token(app, 1);
        assert_eq!(book.redeem(app, &first), Ok(2));
        assert_eq!(book.redeem(app, &first).unwrap_err().code, -14014);
        assert!(book
            .redeem(app, &first.replace("zrt1.1.", "zrt1.9."))
            .is_err());
        // A restarted sandbox accepts the newest token the client kept.
        let restarted = TokenBook::new(1);
        assert_eq!(restarted.redeem(app, &refresh_token(app, 2)), Ok(3));
    }

    #[test]
    fn pkce_challenges_are_the_s256_of_rfc_7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn an_authorization_code_is_exchanged_once_with_its_verifier_for_a_newer_refresh_token() {
        let apps = apps();
        let app = apps.first();
        let book = TokenBook::new(1);
        assert_eq!(book.redeem(app, "demo-refresh-token"), Ok(1));
        let verifier = "a-verifier-of-forty-three-characters-000000";
        let code = book.grant_code(app, &pkce_challenge(verifier), 0);
        assert!(book
            .exchange_code(app, &code, "another verifier", 1)
            .is_err());
        let code = book.grant_code(app, &pkce_challenge(verifier), 0);
        // Generation 1 is the token the client holds; the new one is above it.
        assert_eq!(book.exchange_code(app, &code, verifier, 1), Ok(2));
        assert!(
            book.exchange_code(app, &code, verifier, 1).is_err(),
            "single use"
        );
        let late = book.grant_code(app, &pkce_challenge(verifier), 0);
        assert!(
            book.exchange_code(app, &late, verifier, CODE_TTL_MS)
                .is_err(),
            "expired"
        );
        assert_eq!(book.redeem(app, &refresh_token(app, 2)), Ok(3));
        assert!(
            book.redeem(app, &refresh_token(app, 1)).is_err(),
            "the old one is spent"
        );
    }

    #[test]
    fn access_tokens_validate_statelessly_and_expire_or_get_revoked() {
        let apps = apps();
        let app = apps.first();
        let book = TokenBook::new(1);
        let token = book.issue_access(app, 10_000);
        assert_eq!(
            book.check_access(&apps, Some(&token), 9_999)
                .unwrap()
                .app_id,
            app.app_id
        );
        assert_eq!(
            TokenBook::new(1)
                .check_access(&apps, Some(&token), 0)
                .unwrap()
                .idx,
            0
        );
        assert_eq!(
            book.check_access(&apps, Some(&token), 10_000).unwrap_err(),
            TokenProblem::Expired
        );
        assert_eq!(
            book.check_access(&apps, None, 0).unwrap_err(),
            TokenProblem::Missing
        );
        let last = if token.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &token[..token.len() - 1]);
        assert_eq!(
            book.check_access(&apps, Some(&forged), 0).unwrap_err(),
            TokenProblem::Invalid
        );
        book.expire_all();
        assert_eq!(
            book.check_access(&apps, Some(&token), 0).unwrap_err(),
            TokenProblem::Revoked
        );
        let fresh = book.issue_access(app, 10_000);
        assert!(book.check_access(&apps, Some(&fresh), 0).is_ok());
    }
}
