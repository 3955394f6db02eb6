//! A request rate limit per client address, in memory: what keeps one client from
//! walking the public lookup page's token space or loading its database alone.
//!
//! GCRA (one timestamp per address: the theoretical arrival time of its next request),
//! so a client may burst, then gets one request per interval; a refused request costs
//! nothing and says when to come back (`429` with `Retry-After`). Each replica counts
//! its own clients: behind a load balancer spreading one client over `n` replicas the
//! effective limit is up to `n` times the setting, which is what a brake on scraping
//! needs (the tokens are unguessable; see ARCHITECTURE.md, "Personal data in messages").

use super::{client::ClientAddr, ApiError};
use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Requests allowed per address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePolicy {
    /// Sustained requests per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed at once on top of the sustained rate.
    pub burst: u32,
    /// Addresses remembered at most (idle ones are forgotten first).
    pub max_addresses: usize,
}

/// The per-address limiter. Cheap to clone: clones share the table.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    policy: RatePolicy,
    table: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

impl RateLimiter {
    /// A limiter with `policy`.
    pub fn new(policy: RatePolicy) -> Self {
        Self {
            policy,
            table: Arc::default(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.policy.per_minute.max(1)
    }

    /// Takes one request for `addr` at `now`, or says how long it must wait.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.policy.per_minute == 0 {
            return Ok(());
        }
        let interval = self.interval();
        let tolerance = interval * self.policy.burst;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= self.policy.max_addresses && !table.contains_key(&addr) {
            // An address whose arrival time has passed is back to a full burst:
            // forgetting it changes nothing.
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.policy.max_addresses {
                if let Some(oldest) = table.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                    table.remove(&oldest);
                }
            }
        }
        let tat = table.get(&addr).copied().unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        table.insert(addr, tat + interval);
        Ok(())
    }
}

/// Middleware: answers `429 rate_limited` with `Retry-After` to an address over its
/// rate. Add it with `axum::middleware::from_fn_with_state(limiter, limit_rate)`.
pub async fn limit_rate(
    State(limiter): State<RateLimiter>,
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
    match limiter.check(addr, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; try again later",
            );
            e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RatePolicy {
            per_minute,
            burst,
            max_addresses: 1000,
        })
    }

    #[test]
    fn an_address_may_burst_then_gets_one_request_per_interval() {
        let l = limiter(60, 4);
        let a = IpAddr::from([192, 0, 2, 1]);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.check(a, t0).is_ok(), "request {i} of the burst");
        }
        let wait = l.check(a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(l.check(a, t0 + Duration::from_millis(999)).is_err());
        assert!(l.check(a, t0 + Duration::from_secs(1)).is_ok());
        assert!(
            l.check(IpAddr::from([192, 0, 2, 2]), t0).is_ok(),
            "others are not held"
        );
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let l = limiter(0, 0);
        let a = IpAddr::from([192, 0, 2, 1]);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| l.check(a, t0).is_ok()));
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let l = RateLimiter::new(RatePolicy {
            per_minute: 60,
            burst: 0,
            max_addresses: 100,
        });
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.table.lock().unwrap().len() <= 100);
    }
}
