//! Policy broadcasts: a province's announcements to every citizen who agreed to hear
//! them, through the tenant's OA, without delaying a single case update.
//!
//! - [`audience`]: reading an import of subscribers (ndjson or CSV), line by line;
//! - [`subscribers`]: the audience table: imports, phones joined to Zalo users,
//!   opt-outs;
//! - [`opt_out`]: a citizen's "huỷ" in chat, recognised by a pure function;
//! - [`gate`]: what the sender asks before a broadcast message: cancelled, paused,
//!   ended, quiet hours, opted out, the monthly cap;
//! - [`targeting`]: tag expressions (`ward:a AND (topic:b OR topic:c)`);
//! - [`store`]: the broadcasts table: states, checkpoints, progress counts;
//! - [`fanout`]: expands running broadcasts into per-recipient requests on the
//!   broadcast lane (keyset pages, confirmed publishes, checkpoints, leases);
//! - [`api`]: the `/v1/broadcasts` routes;
//! - [`subscribers_api`]: `POST /v1/subscribers/import`, `POST /v1/subscribers/opt-out`;
//! - [`subscribers_search`]: `GET /v1/subscribers`, masked, for the console.
//!
//! The audience is `notifier.subscribers`: one row per citizen of a tenant, known by
//! Zalo user id (follow webhooks), by phone (imports, shared phones) or both. Opt-in
//! (`announcements`) is separate from following; an unfollow or an opt-out takes a
//! citizen out of every later broadcast.

pub(crate) mod api;
pub mod audience;
pub(crate) mod fanout;
#[cfg(test)]
mod fuzz;
pub(crate) mod gate;
pub mod opt_out;
pub(crate) mod store;
mod subscribers;
pub(crate) mod subscribers_api;
pub(crate) mod subscribers_search;
pub mod targeting;

pub use opt_out::is_opt_out;
pub(crate) use subscribers::{join_phones, opt_out, Citizen};
