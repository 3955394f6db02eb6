//! Who a request is: bearer tokens (RFC 6750, the scheme matched case-insensitively
//! as RFC 7235 says), the tenant an admin or source token acts for, and a brake on
//! addresses that keep failing to authenticate.
//!
//! A token of the wrong kind (a source's token on an admin API, an admin's on intake)
//! is a `403 wrong_token_kind` saying which kind is expected: the caller holds a valid
//! secret and only needs to be told where it belongs. An unknown token is a `401`.

use super::{client::ClientAddr, ApiError};
use crate::{tenants::SourceSettings, TenantSettings, Tenants};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The bearer token of a request, if any. The scheme is case-insensitive (`bearer`,
/// `BEARER`) and may be followed by any run of spaces.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

/// The header naming the tenant a service-credential request acts for.
pub const TENANT_HEADER: &str = "x-loa-tenant";

fn wrong_kind(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "wrong_token_kind", message).with_field("Authorization")
}

/// The tenant an admin API request acts for, or 401 (403 for a source's token).
///
/// Two credentials are accepted: a tenant admin's bearer token (the tenant is the
/// token's), or the console's service token ([`Tenants::service_token`]) with the
/// tenant named in `X-Loa-Tenant`. The service token may act for any configured
/// tenant: only the console holds it, and the console names the tenant of the
/// signed-in account. An unknown or missing tenant header is a 400 naming it.
///
/// The tenant is returned as a copy, so a handler can keep it while the tenants file
/// is reloaded (pass `&live.current()`).
pub fn admin_tenant(tenants: &Tenants, headers: &HeaderMap) -> Result<TenantSettings, ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::unauthorized)?;
    if tenants.service_token().is_some_and(|s| s.matches(token)) {
        let named = headers
            .get(TENANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        return tenants.get(named).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "the service credential needs `X-Loa-Tenant` naming a configured tenant",
            )
            .with_field("X-Loa-Tenant")
        });
    }
    if let Some(tenant) = tenants.tenant_by_admin_token(token) {
        return Ok(tenant.clone());
    }
    if tenants.source_by_token(token).is_some() {
        return Err(wrong_kind(
            "this is an upstream source's token, for intake's /v1/events; the admin APIs \
             take a tenant admin token",
        ));
    }
    Err(ApiError::unauthorized())
}

/// The tenant and source whose token an intake request carries, or 401 (403 for an
/// admin's token or the service credential).
pub fn source_tenant(
    tenants: &Tenants,
    headers: &HeaderMap,
) -> Result<(TenantSettings, SourceSettings), ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::unauthorized)?;
    if let Some((tenant, source)) = tenants.source_by_token(token) {
        return Ok((tenant.clone(), source.clone()));
    }
    let is_admin = tenants.tenant_by_admin_token(token).is_some()
        || tenants.service_token().is_some_and(|s| s.matches(token));
    if is_admin {
        return Err(wrong_kind(
            "this is an admin token; events are published with an upstream source's token",
        ));
    }
    Err(ApiError::unauthorized())
}

/// How failed authentications from one address are slowed down.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay (a mistyped token must not lock anyone out).
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A failure older than this no longer counts.
    pub forget_after: Duration,
    /// Addresses remembered at most (the oldest are forgotten first), so a flood of
    /// addresses cannot grow the table without bound.
    pub max_addresses: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            max_addresses: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

/// Slows down addresses that keep failing to authenticate: after
/// [`ThrottlePolicy::free_failures`] failures, every request from the address is
/// refused (`429` with `Retry-After`) for a delay that doubles with each further
/// failure, up to [`ThrottlePolicy::max_delay`]; a success forgets the address. A
/// 256-bit token cannot be guessed anyway; the brake keeps a guesser from costing us
/// CPU (an argon2-hashed token costs tens of ms per check) and keeps the log quiet.
///
/// Counted per client address ([`ClientAddr`], an IPv6 client by its /64), in memory,
/// per process: each replica slows its own share of a guesser.
#[derive(Debug, Clone)]
pub struct AuthThrottle {
    policy: ThrottlePolicy,
    table: Arc<Mutex<HashMap<IpAddr, Failures>>>,
}

impl AuthThrottle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            table: Arc::default(),
        }
    }

    /// How long `addr` must still wait, if it must.
    pub fn wait_for(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let f = table.get(&addr)?;
        (f.blocked_until > now).then(|| f.blocked_until - now)
    }

    /// Counts a failed authentication from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let p = self.policy;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= p.max_addresses && !table.contains_key(&addr) {
            table.retain(|_, f| now.duration_since(f.last) < p.forget_after);
            if table.len() >= p.max_addresses {
                if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a) {
                    table.remove(&oldest);
                }
            }
        }
        let f = table.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: now,
        });
        if now.duration_since(f.last) >= p.forget_after {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > p.free_failures {
            let doublings = (f.count - p.free_failures - 1).min(20);
            let delay = p
                .first_delay
                .saturating_mul(1 << doublings)
                .min(p.max_delay);
            f.blocked_until = now + delay;
        }
    }

    /// Forgets `addr`'s failures (it authenticated).
    pub fn succeeded(&self, addr: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.remove(&addr);
    }
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

/// Middleware: refuses a request from an address the throttle holds back, and counts
/// each `401` answered to a request that carried credentials. Add it with
/// `axum::middleware::from_fn_with_state(throttle, throttle_failed_auth)`.
pub async fn throttle_failed_auth(
    State(throttle): State<AuthThrottle>,
    request: Request,
    next: Next,
) -> Response {
    let Some(addr) = request
        .extensions()
        .get::<ClientAddr>()
        .map(ClientAddr::key)
    else {
        return next.run(request).await;
    };
    if let Some(wait) = throttle.wait_for(addr, Instant::now()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_authentications",
            "too many failed authentications from this address; wait before trying again",
        )
        .with_field("Authorization");
        e.retry_after = Some(secs);
        return e.into_response();
    }
    let had_credentials = request.headers().contains_key(header::AUTHORIZATION);
    let response = next.run(request).await;
    if had_credentials {
        match response.status() {
            StatusCode::UNAUTHORIZED => {
                tracing::info!(client = %addr, "Failed authentication counted against its address.");
                throttle.failed(addr, Instant::now());
            }
            s if s.is_success() => throttle.succeeded(addr),
            _ => {}
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{credential::Credential, tenants::demo_tenant};
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn tenants() -> Tenants {
        let demo = demo_tenant("http://127.0.0.1:1");
        let mut other = demo.clone();
        other.id = "other".into();
        other.admin_tokens = vec![Credential::new("other-admin")];
        other.sources[0].token = Credential::new("other-source");
        Tenants::new(vec![demo, other])
            .unwrap()
            .with_service_token(crate::Secret::new("s".repeat(40)))
    }

    #[test]
    fn the_service_credential_acts_for_the_tenant_its_header_names() {
        let tenants = tenants();
        let service = format!("Bearer {}", "s".repeat(40));
        let as_other = headers(&[("authorization", &service), (TENANT_HEADER, "other")]);
        assert_eq!(admin_tenant(&tenants, &as_other).unwrap().id, "other");
        let unnamed = headers(&[("authorization", &service)]);
        let e = admin_tenant(&tenants, &unnamed).unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("X-Loa-Tenant"))
        );
        let unknown = headers(&[("authorization", &service), (TENANT_HEADER, "nowhere")]);
        assert_eq!(
            admin_tenant(&tenants, &unknown).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_tenant_admin_token_ignores_the_tenant_header() {
        let tenants = tenants();
        let h = headers(&[
            ("authorization", "Bearer demo-admin"),
            (TENANT_HEADER, "other"),
        ]);
        assert_eq!(admin_tenant(&tenants, &h).unwrap().id, "demo");
        let wrong = headers(&[("authorization", "Bearer nope"), (TENANT_HEADER, "other")]);
        assert_eq!(
            admin_tenant(&tenants, &wrong).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let without_service = Tenants::new(vec![demo_tenant("http://x")]).unwrap();
        let service = format!("Bearer {}", "s".repeat(40));
        let h = headers(&[("authorization", &service), (TENANT_HEADER, "demo")]);
        assert_eq!(
            admin_tenant(&without_service, &h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer demo-admin",
            "bearer demo-admin",
            "BEARER  demo-admin",
            "bEaReR\tdemo-admin ",
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(bearer_token(&h), Some("demo-admin"), "{value:?}");
        }
        for value in [
            "Basic demo-admin",
            "Bearer",
            "Bearer   ",
            "Bearerdemo-admin",
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(bearer_token(&h), None, "{value:?}");
        }
    }

    #[test]
    fn a_token_of_the_wrong_kind_is_told_which_kind_is_expected() {
        let tenants = tenants();
        let source_on_admin = headers(&[("authorization", "Bearer other-source")]);
        let e = admin_tenant(&tenants, &source_on_admin).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, "wrong_token_kind")
        );
        assert!(e.message.contains("source"), "{}", e.message);

        let admin_on_intake = headers(&[("authorization", "Bearer other-admin")]);
        let e = source_tenant(&tenants, &admin_on_intake).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, "wrong_token_kind")
        );
        let (tenant, source) = source_tenant(
            &tenants,
            &headers(&[("authorization", "bearer other-source")]),
        )
        .unwrap();
        assert_eq!(
            (tenant.id.as_str(), source.id.as_str()),
            ("other", "demo-one-stop")
        );
        let unknown = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            source_tenant(&tenants, &unknown).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn hashed_tokens_in_the_tenants_file_authenticate_their_admins_and_sources() {
        let (admin, admin_hash) = crate::credential::new_token();
        let (source, source_hash) = crate::credential::new_token();
        let mut t = demo_tenant("http://127.0.0.1:1");
        t.admin_tokens = vec![Credential::parse(&admin_hash).unwrap()];
        t.sources[0].token = Credential::parse(&source_hash).unwrap();
        let tenants = Tenants::new(vec![t]).unwrap();
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(admin_tenant(&tenants, &bearer(&admin)).unwrap().id, "demo");
        assert_eq!(
            source_tenant(&tenants, &bearer(&source)).unwrap().0.id,
            "demo"
        );
        let e = admin_tenant(&tenants, &bearer(&admin_hash)).unwrap_err();
        assert_eq!(
            e.status,
            StatusCode::UNAUTHORIZED,
            "the hash is not a token"
        );
    }

    #[test]
    fn failures_past_the_free_ones_hold_an_address_back_longer_each_time() {
        let throttle = AuthThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..5 {
            throttle.failed(a, t0);
        }
        assert_eq!(throttle.wait_for(a, t0), None, "five failures are free");
        throttle.failed(a, t0);
        assert_eq!(throttle.wait_for(a, t0), Some(Duration::from_secs(1)));
        throttle.failed(a, t0);
        assert_eq!(throttle.wait_for(a, t0), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            throttle.failed(a, t0);
        }
        assert_eq!(
            throttle.wait_for(a, t0),
            Some(Duration::from_secs(60)),
            "capped"
        );
        assert_eq!(
            throttle.wait_for(b, t0),
            None,
            "another address is not held back"
        );
        throttle.succeeded(a);
        assert_eq!(
            throttle.wait_for(a, t0),
            None,
            "a success forgets the failures"
        );
    }

    #[test]
    fn the_throttle_forgets_the_oldest_address_when_full() {
        let throttle = AuthThrottle::new(ThrottlePolicy {
            free_failures: 0,
            max_addresses: 2,
            ..ThrottlePolicy::default()
        });
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        throttle.failed(ip(1), t0);
        throttle.failed(ip(2), t0 + Duration::from_millis(1));
        throttle.failed(ip(3), t0 + Duration::from_millis(2));
        assert_eq!(throttle.table.lock().unwrap().len(), 2);
        assert_eq!(throttle.wait_for(ip(1), t0), None);
        assert!(throttle.wait_for(ip(3), t0).is_some());
    }
}
