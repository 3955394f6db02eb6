//! The notifier: turns notification requests into Zalo messages, exactly once per
//! notification id as far as Zalo lets anyone know, and records every delivery.
//!
//! It consumes `notifier.transactional` (case updates) and `notifier.broadcast`
//! (policy announcements) in batches, claims each request in `notifier.deliveries`
//! (so a redelivered request that was sent is acked, not resent), passes the tenant's
//! gate (pause, ZNS quota, a shared rate limit), sends it as the OA template to a
//! follower or a ZNS template by phone with the tenant's template for its kind and an
//! access token from the tenant's rotating refresh token, records the batch's results
//! in one statement and only then acks, retries through a delay queue, parks it in the
//! table (deferred, held, ambiguous) or dead-letters it.
//!
//! # Layout
//!
//! Each concern has a room; dependencies run one way (webhooks → receipts →
//! deliveries; engine → limits, deliveries, zalo).
//!
//! - [`configuration`]: [`NotifierSettings`], validated at start-up.
//! - [`startup`]: migrations and [`Application`], which wires the rooms together.
//! - [`engine`]: the send path: the sender (the unit of work), the retry policy, the
//!   delay queues, channels, claim leases, the scheduler of parked requests.
//! - [`limits`]: what the gate asks before a send: pause, ZNS quota, rate limit.
//! - [`deliveries`]: the deliveries table (claims, records, the status vocabulary),
//!   every delivery's history, and the views the API shows.
//! - [`zalo`]: the Zalo HTTP client, the one table that classifies every Zalo answer,
//!   and OAuth tokens.
//! - [`zalo_webhooks`]: webhooks from Zalo: signature, parsing, storage, receipts,
//!   the OA's users (follows, shared phones, chat lookups, ratings).
//! - [`broadcasts`]: policy broadcasts: the audience (imports, opt-outs), tag
//!   targeting, the broadcasts and their fan-out, the sender's broadcast gate.
//! - [`dead_letters`]: every service's dead letters: consume, store, list, replay.
//! - [`personal_data`]: retention (`retention_days` after a row's last change) and a
//!   citizen's erasure request, audited in `erasures`.
//! - [`routes`]: the HTTP API, one router.
//! - [`clock`]: the wall clock of deferrals, movable in tests.
//! - [`metrics`]: the notifier's Prometheus metrics.
//!
//! # Tables (schema `notifier`)
//!
//! - `oauth_tokens (tenant PK, access_token, access_expires_at, refresh_token,
//!   refreshed_at, created_at, updated_at)`: both tokens sealed ([`zalo::sealing`]).
//! - `deliveries (notification_id PK, tenant, kind, lane, dossier_code, channel,
//!   status sending|sent|delivered|seen|failed|retrying|deferred|held|ambiguous|skipped,
//!   zalo_msg_id, attempts, last_error_code, last_error, lease_until, not_before,
//!   recheck_at, request (parked body), event_accepted_at, created_at, sent_at,
//!   updated_at)`.
//! - `rate_limits (tenant PK, tat)`: the GCRA per tenant; `zns_quota ((tenant, day)
//!   PK, daily_quota, remaining, exhausted)`; `tenant_pauses (tenant PK, paused,
//!   error_code, reason, paused_at, resumed_at)`; function `take_send_slots`.
//! - `webhook_events ((tenant, event_name, dedup_key) PK, msg_id, occurred_at,
//!   received_at, body, outcome, attempts, next_attempt_at)`: every webhook, once.
//! - `delivery_events (id, notification_id, tenant, status, at, detail)`: history.
//! - `subscribers (id PK, tenant, zalo_user_id UNIQUE per tenant, phone UNIQUE per
//!   tenant, following, updated_at, tags, announcements, opted_out_at, name,
//!   imported_at)`: the OA's users and the broadcasts' audience.
//! - `citizen_messages (id, tenant, zalo_user_id, kind lookup|text, dossier_code,
//!   msg_id, received_at, forwarded_at, outcome forward|rate_limited|answered_today,
//!   body, body_truncated)`: "tra cứu" chat lookups for the tracker, and the other
//!   texts citizens sent (sanitized, at most 2,000 characters) with their reply.
//! - `citizen_feedback ((tenant, msg_id) PK, tracking_id, rating, note, feedbacks,
//!   submitted_at, received_at)`: ratings from `user_feedback`, for the ratings feature.
//! - `broadcasts (id PK, tenant, title, audience_tags, template, params, state
//!   scheduled|running|paused|completed|cancelled, start_at, end_at, audience, cursor,
//!   queued, expanded_at, left_out, left_out_reason, runner_owner, runner_until,
//!   rate_*)`: broadcasts with their fan-out checkpoint and lease;
//!   `broadcast_counts ((broadcast_id, key, shard) PK, n)`: their deliveries by state,
//!   kept by a trigger on `deliveries` (which carry `broadcast_id`);
//!   `promotion_sends ((tenant, month, subscriber_id) PK, broadcasts)`: the monthly
//!   cap of promotions per citizen.
//! - `dead_letters (id PK, content_hash UNIQUE, tenant, source_queue, exchange,
//!   routing_key, reason, headers jsonb, body bytea, message_id, dead_at, deaths,
//!   replayed_at, replay_count, created_at, personal_data_erased_at)`: every dead
//!   letter, once, replayable until its persons are masked.
//! - `erasures (id PK, tenant, phone_hash, requested_by, credential, erased_at,
//!   removed)`: the audit of citizens' erasure requests.

pub mod broadcasts;
pub mod clock;
mod configuration;
pub mod dead_letters;
pub mod deliveries;
pub mod engine;
mod limits;
mod metrics;
pub mod openapi;
pub mod personal_data;
mod routes;
mod startup;
pub mod zalo;
pub mod zalo_webhooks;

pub use configuration::NotifierSettings;
pub use startup::{migrate, Application, SCHEMA};
