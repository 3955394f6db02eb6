//! What Zalo pushes to each tenant's app: delivery receipts, follows, shared phones,
//! chat and ratings. Dependencies run one way: the webhook is checked
//! ([`signature`], [`parse`]), stored with its effect ([`store`]), and the effect is
//! a receipt moving a delivery on ([`receipts`] → [`crate::deliveries`]) or a change
//! to the OA's users ([`subscribers`]). A citizen's chat message is read by
//! [`command`]: "huỷ" opts out of broadcasts, a dossier lookup is kept and relayed to
//! the tracker ([`lookups`]), any other text is kept and the user's first of the day
//! answered ([`texts`]). A rating given in Zalo (`user_feedback`) is kept and
//! relayed to the tracker as its dossier's rating ([`feedback`]). The three relays are
//! one loop ([`relay`]). A citizen's answer to a delivered ZNS (a rating, a tapped
//! button) links the phone it reached to them, for chat lookups ([`zns_links`]).

pub mod command;
#[cfg(test)]
mod command_fuzz;
pub(crate) mod feedback;
mod fields;
#[cfg(test)]
mod fuzz;
pub(crate) mod lookups;
mod parse;
mod receipts;
pub(crate) mod relay;
mod signature;
mod store;
mod subscribers;
pub(crate) mod texts;
pub(crate) mod zns_links;

pub(crate) use feedback::RATINGS;
pub use lookups::LookupLimit;
pub(crate) use lookups::CHAT_LOOKUPS;
pub(crate) use parse::{authenticate, event_label, Freshness, KNOWN_EVENTS};
pub(crate) use receipts::{run_reconciler, settle_from_stored_receipts};
pub(crate) use relay::run_relay;
pub use store::prune_events;
pub(crate) use store::{run_pruner, store, Stored};
pub(crate) use texts::TEXT_REPLIES;
