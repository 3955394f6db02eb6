//! OAuth access tokens per tenant, refreshed from single-use, rotating refresh tokens.
//!
//! Zalo's refresh token works exactly once: the refresh that uses it returns the next
//! one. Lose that answer and an OA admin must re-authorise the app in a browser. So:
//!
//! - the pair lives in `notifier.oauth_tokens`, seeded from the tenants file only when
//!   the tenant has no row yet (the file's token is dead after the first refresh);
//! - a refresh runs inside one transaction holding the tenant's row lock
//!   (`SELECT … FOR UPDATE`), so replicas refresh one at a time; it re-checks whether
//!   another replica refreshed while it waited, calls Zalo, stores the new pair and
//!   commits **before** the new access token is handed to anyone;
//! - if that commit fails, the new pair is kept in memory and written again before any
//!   other use (and before any further refresh, which would fail with the dead token);
//! - inside one process a per-tenant mutex makes concurrent senders wait for a single
//!   refresh instead of each starting one.
//!
//! Access tokens are cached in memory and refreshed `margin` ahead of expiry (by a
//! background loop, so an idle tenant's refresh token keeps rotating too) and on demand
//! after Zalo refused one. Tokens never reach a log line: they are [`Secret`]s; in the
//! table they are sealed ([`crate::zalo::sealing`]).
//!
//! A reloaded tenants file reaches the manager through [`TokenManager::sync`]: a new
//! tenant gets its token state (its row is seeded at its first refresh), a changed
//! Zalo app (a rotated app secret, another OAuth URL) is used from the next refresh
//! on, and a removed tenant is no longer refreshed. Cached tokens survive a reload.
//!
//! Every failed refresh counts in `loa_notifier_token_refresh_failures_total{class}`;
//! one that needs an operator (the refresh token is refused, or Zalo's token endpoint
//! answered without tokens in any other shape, see [`crate::zalo::parse_token_answer`]:
//! an OA admin must re-authorise the app) also pauses the tenant's sending
//! ([`crate::limits::pause`]) until `POST /v1/pause/resume`, so its messages are held, not
//! failed or retried as if the failure would pass.

use crate::{
    metrics,
    zalo::{sealing::Keyring, ErrorClass, TokenPair, ZaloClient, ZaloFailure},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_platform::{Secret, TenantSettings, Tenants};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How often the background loop looks for tokens to refresh ahead of expiry.
const REFRESH_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// After Zalo refused a refresh, wait this long before asking again.
const REFUSAL_COOL_DOWN: Duration = Duration::from_secs(30);

/// An access token is not handed out in its last minute: a send may take a while.
const EXPIRY_SAFETY: chrono::Duration = chrono::Duration::seconds(60);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The tenant is not configured in this process.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// Zalo refused the refresh (or its answer was lost); see the failure's class.
    #[error("Zalo refused the token refresh: {0}")]
    Refused(#[from] ZaloFailure),
    /// The database failed; the refresh token is safe (or, after a lost commit, held
    /// in memory until it is written).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl TokenError {
    /// What the failure means for a message waiting for the token.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownTenant(_) => ErrorClass::PermanentPayload,
            Self::Refused(f) => match f.class {
                // A refresh that was refused as a token problem means the refresh
                // token is dead: a human must re-authorise.
                ErrorClass::RefreshToken
                | ErrorClass::PermanentPayload
                | ErrorClass::PermanentRecipient => ErrorClass::NeedsOperator,
                other => other,
            },
            Self::Unexpected(_) => ErrorClass::Transient,
        }
    }
}

#[derive(Clone)]
struct Cached {
    access_token: Secret,
    expires_at: DateTime<Utc>,
}

struct TenantTokens {
    /// The tenant as the tenants file says now ([`TokenManager::sync`] replaces it).
    settings: RwLock<TenantSettings>,
    cached: RwLock<Option<Cached>>,
    /// Held for the whole refresh.
    refresh: Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    /// A pair Zalo issued that could not be stored yet: it must be written before
    /// anything else happens.
    pending: Option<TokenPair>,
    /// Zalo's last refusal, so a dead refresh token is not retried on every send.
    last_refusal: Option<(Instant, ZaloFailure)>,
}

impl TenantTokens {
    fn new(settings: TenantSettings) -> Self {
        Self {
            settings: RwLock::new(settings),
            cached: RwLock::new(None),
            refresh: Mutex::new(RefreshState::default()),
        }
    }

    /// A copy of the tenant's settings, as they are now.
    fn settings(&self) -> TenantSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn cached(&self) -> Option<Cached> {
        self.cached.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn set_cached(&self, access_token: Secret, expires_at: DateTime<Utc>) {
        if let Ok(mut c) = self.cached.write() {
            *c = Some(Cached {
                access_token,
                expires_at,
            });
        }
        metrics::token_expiry(&self.settings().id, expires_at);
    }
}

/// Why a refresh is attempted; decides what counts as "someone else already did it".
enum Need<'a> {
    /// The cached token is missing or close to expiry.
    Fresh,
    /// Zalo refused this token.
    Replace(&'a Secret),
}

/// Hands out valid access tokens per tenant. Cheap to share (`Arc`).
pub struct TokenManager {
    pool: Pool,
    /// Seals the tokens before they are written and opens them after they are read:
    /// the table never holds one in clear.
    keyring: Keyring,
    zalo: ZaloClient,
    margin: chrono::Duration,
    /// By tenant id; read briefly, never held across an await.
    tenants: RwLock<HashMap<String, Arc<TenantTokens>>>,
}

impl TokenManager {
    /// `margin`: refresh this long before the access token expires; `keyring` seals
    /// the tokens at rest ([`crate::zalo::sealing`]).
    pub fn new(
        pool: Pool,
        zalo: ZaloClient,
        tenants: &Tenants,
        margin: Duration,
        keyring: Keyring,
    ) -> Self {
        let tenants = tenants
            .all()
            .iter()
            .map(|t| (t.id.clone(), Arc::new(TenantTokens::new(t.clone()))))
            .collect();
        Self {
            pool,
            keyring,
            zalo,
            margin: chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::hours(5)),
            tenants: RwLock::new(tenants),
        }
    }

    /// Follows a reloaded tenants file: adds the new tenants, gives the others their
    /// current settings (keeping their cached tokens) and forgets the removed ones.
    pub(crate) fn sync(&self, tenants: &Tenants) {
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, _| tenants.get(id).is_some());
        for t in tenants.all() {
            match map.get(&t.id) {
                Some(state) => {
                    *state.settings.write().unwrap_or_else(|e| e.into_inner()) = t.clone();
                }
                None => {
                    map.insert(t.id.clone(), Arc::new(TenantTokens::new(t.clone())));
                }
            }
        }
    }

    /// Every tenant's token state, as of now.
    fn all(&self) -> Vec<(String, Arc<TenantTokens>)> {
        let map = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(id, t)| (id.clone(), t.clone())).collect()
    }

    /// Stores each tenant's configured refresh token, only for tenants without a row:
    /// once rotated, the configured one is dead and the stored one rules.
    pub async fn seed(&self) -> anyhow::Result<()> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        for (_, t) in self.all() {
            let settings = t.settings();
            let sealed = self.keyring.seal(
                &settings.id,
                "refresh_token",
                settings.zalo.refresh_token.expose(),
            );
            client
                .execute(
                    "INSERT INTO notifier.oauth_tokens (tenant, refresh_token) VALUES ($1, $2)
                     ON CONFLICT (tenant) DO NOTHING",
                    &[&settings.id, &sealed],
                )
                .await
                .context("Failed to seed the OAuth tokens")?;
        }
        Ok(())
    }

    fn tenant(&self, id: &str) -> Result<Arc<TenantTokens>, TokenError> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| TokenError::UnknownTenant(id.to_owned()))
    }

    /// A valid access token for `tenant`, refreshing it when it is missing or within
    /// the margin of its expiry.
    pub async fn access_token(&self, tenant: &str) -> Result<Secret, TokenError> {
        let t = self.tenant(tenant)?;
        let now = Utc::now();
        if let Some(c) = t.cached() {
            if c.expires_at - self.margin > now {
                return Ok(c.access_token);
            }
            if c.expires_at - EXPIRY_SAFETY > now {
                // Still usable: refresh if nobody is at it, and keep sending with the
                // current token if that fails or someone else is refreshing.
                let Ok(mut guard) = t.refresh.try_lock() else {
                    return Ok(c.access_token);
                };
                return match self.refresh_locked(&t, &mut guard, Need::Fresh).await {
                    Ok(token) => Ok(token),
                    Err(e) => {
                        tracing::warn!(tenant, error.message = %e, "Failed to refresh the Zalo access token ahead of expiry; using the current one.");
                        Ok(c.access_token)
                    }
                };
            }
        }
        let mut guard = t.refresh.lock().await;
        if let Some(c) = t.cached() {
            if c.expires_at - self.margin > Utc::now() {
                return Ok(c.access_token);
            }
        }
        self.refresh_locked(&t, &mut guard, Need::Fresh).await
    }

    /// A replacement for an access token Zalo refused (-216, -220, -124, HTTP 401).
    /// When another task or replica already replaced it, returns that one without
    /// calling Zalo again.
    pub async fn replace_rejected(
        &self,
        tenant: &str,
        rejected: &Secret,
    ) -> Result<Secret, TokenError> {
        let t = self.tenant(tenant)?;
        let mut guard = t.refresh.lock().await;
        if let Some(c) = t.cached() {
            if c.access_token != *rejected && c.expires_at - EXPIRY_SAFETY > Utc::now() {
                return Ok(c.access_token);
            }
        }
        self.refresh_locked(&t, &mut guard, Need::Replace(rejected))
            .await
    }

    /// Refreshes tokens ahead of expiry for every tenant until cancelled, and keeps the
    /// expiry gauge current. A failure is logged and counted (an alert), and retried on
    /// the next round.
    pub(crate) async fn run_refresher(&self, cancel: CancellationToken) {
        loop {
            // The tenants as of this round: a reload shows in the next one.
            for (id, t) in self.all() {
                let id = id.as_str();
                if cancel.is_cancelled() {
                    return;
                }
                match self.access_token(id).await {
                    Ok(_) => {
                        if let Some(c) = t.cached() {
                            metrics::token_expiry(id, c.expires_at);
                        }
                    }
                    Err(e) => {
                        tracing::error!(tenant = %id, error.class = %e.class(), error.message = %e, "No valid Zalo access token for the tenant.");
                        if e.class() == ErrorClass::NeedsOperator {
                            // Only a human can re-authorise the OA: stop sending for
                            // it (and alert) instead of failing its messages.
                            let code = match &e {
                                TokenError::Refused(f) => f.code,
                                _ => None,
                            };
                            let reason = format!("token refresh failed: {e}");
                            if let Err(pe) =
                                crate::limits::pause::pause(&self.pool, id, code, &reason).await
                            {
                                tracing::error!(tenant = %id, error.message = %pe, "Failed to store the tenant's pause.");
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_CHECK_INTERVAL) => {}
            }
        }
    }

    /// The refresh itself; the caller holds the tenant's mutex (`state`).
    async fn refresh_locked(
        &self,
        t: &TenantTokens,
        state: &mut RefreshState,
        need: Need<'_>,
    ) -> Result<Secret, TokenError> {
        let settings = t.settings();
        let tenant = settings.id.as_str();
        let pending = &mut state.pending;
        // A pair Zalo issued earlier but we could not store: it is the only valid one.
        if let Some(pair) = pending.as_ref() {
            self.store_with_retries(tenant, pair).await?;
            let pair = pending.take().expect("checked above");
            t.set_cached(pair.access_token.clone(), pair.expires_at);
            let usable = match need {
                Need::Fresh => true,
                Need::Replace(rejected) => pair.access_token != *rejected,
            };
            if usable {
                return Ok(pair.access_token);
            }
        }

        // A refresh Zalo refused moments ago would be refused again.
        if let Some((at, failure)) = &state.last_refusal {
            if at.elapsed() < REFUSAL_COOL_DOWN {
                return Err(failure.clone().into());
            }
        }

        let mut client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        // Another replica refreshing holds the lock for at most one Zalo call.
        tx.batch_execute("SET LOCAL lock_timeout = '30s'")
            .await
            .context("Failed to set lock_timeout")?;
        let seed = self.keyring.seal(
            tenant,
            "refresh_token",
            settings.zalo.refresh_token.expose(),
        );
        tx.execute(
            "INSERT INTO notifier.oauth_tokens (tenant, refresh_token) VALUES ($1, $2)
             ON CONFLICT (tenant) DO NOTHING",
            &[&tenant, &seed],
        )
        .await
        .context("Failed to seed the OAuth token row")?;
        let row = tx
            .query_one(
                "SELECT access_token, access_expires_at, refresh_token
                   FROM notifier.oauth_tokens WHERE tenant = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .context("Failed to lock the OAuth token row")?;
        let open = |column: &str, stored: &str| {
            self.keyring
                .open(tenant, column, stored)
                .with_context(|| format!("Failed to open the stored {column}"))
        };
        let stored_access = row
            .get::<_, Option<String>>(0)
            .map(|a| open("access_token", &a))
            .transpose()?;
        let stored_expiry: Option<DateTime<Utc>> = row.get(1);
        let refresh_token = open("refresh_token", row.get(2))?;

        // Did another replica (or an earlier run of this one) refresh meanwhile?
        if let (Some(access), Some(expires_at)) = (stored_access, stored_expiry) {
            let now = Utc::now();
            let good = match need {
                Need::Fresh => expires_at - self.margin > now,
                Need::Replace(rejected) => access != *rejected && expires_at - EXPIRY_SAFETY > now,
            };
            if good {
                tx.commit()
                    .await
                    .context("Failed to release the OAuth token row")?;
                t.set_cached(access.clone(), expires_at);
                return Ok(access);
            }
        }

        let pending = &mut state.pending;
        let pair = match self
            .zalo
            .refresh_access_token(&settings.zalo, refresh_token.expose())
            .await
        {
            Ok(pair) => {
                state.last_refusal = None;
                pair
            }
            Err(failure) => {
                state.last_refusal = Some((Instant::now(), failure.clone()));
                // Nothing to store; the transaction rolls back on drop. After an
                // ambiguous failure the stored token may be dead: only a retry tells.
                metrics::token_refresh_failed(tenant, failure.class);
                tracing::error!(
                    tenant,
                    error.class = %failure.class,
                    error.message = %failure.reason(),
                    "Zalo refused to refresh the access token."
                );
                return Err(failure.into());
            }
        };

        let (access, refresh) = self.sealed_pair(tenant, &pair);
        let stored = match tx
            .execute(
                "UPDATE notifier.oauth_tokens
                    SET access_token = $2, access_expires_at = $3, refresh_token = $4,
                        refreshed_at = now(), updated_at = now()
                  WHERE tenant = $1",
                &[&tenant, &access, &pair.expires_at, &refresh],
            )
            .await
        {
            Ok(_) => tx.commit().await,
            Err(e) => {
                // Release the row lock before writing again on another connection.
                drop(tx);
                Err(e)
            }
        };
        drop(client);
        if let Err(e) = stored {
            // The old refresh token is dead at Zalo now; this pair is the only way on.
            tracing::error!(tenant, error.message = %e, "Failed to store a rotated Zalo refresh token; retrying.");
            *pending = Some(pair.clone());
            self.store_with_retries(tenant, &pair).await?;
            *pending = None;
        }
        t.set_cached(pair.access_token.clone(), pair.expires_at);
        tracing::info!(tenant, expires_at = %pair.expires_at, "Refreshed the Zalo access token.");
        Ok(pair.access_token)
    }

    /// Writes a pair outside the refresh transaction (after its commit failed).
    async fn store_with_retries(&self, tenant: &str, pair: &TokenPair) -> Result<(), TokenError> {
        let mut last = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
            }
            match self.store(tenant, pair).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        metrics::token_refresh_failed(tenant, ErrorClass::Transient);
        let e = last.unwrap_or_else(|| anyhow::anyhow!("no attempt made"));
        tracing::error!(tenant, error.message = %e, "Could not store a rotated Zalo refresh token; holding it in memory until the database answers.");
        Err(TokenError::Unexpected(
            e.context("Failed to store a rotated refresh token"),
        ))
    }

    /// The pair's access and refresh tokens, sealed for `tenant`'s row.
    fn sealed_pair(&self, tenant: &str, pair: &TokenPair) -> (String, String) {
        (
            self.keyring
                .seal(tenant, "access_token", pair.access_token.expose()),
            self.keyring
                .seal(tenant, "refresh_token", pair.refresh_token.expose()),
        )
    }

    async fn store(&self, tenant: &str, pair: &TokenPair) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        let (access, refresh) = self.sealed_pair(tenant, pair);
        client
            .execute(
                "UPDATE notifier.oauth_tokens
                    SET access_token = $2, access_expires_at = $3, refresh_token = $4,
                        refreshed_at = now(), updated_at = now()
                  WHERE tenant = $1",
                &[&tenant, &access, &pair.expires_at, &refresh],
            )
            .await?;
        Ok(())
    }
}
