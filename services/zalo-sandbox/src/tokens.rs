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

use crate::{
    apps::{App, Apps},
    zalo::{codes, ZaloError},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, PoisonError,
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
}

impl TokenBook {
    /// Nothing redeemed yet for `apps` apps.
    pub fn new(apps: usize) -> Self {
        Self {
            highest_redeemed: Mutex::new(vec![None; apps]),
            revoked_before_us: AtomicU64::new(0),
        }
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
