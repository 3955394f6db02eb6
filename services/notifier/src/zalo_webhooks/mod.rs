//! What Zalo pushes to each tenant's app: delivery receipts, follows, shared phones,
//! chat and ratings. Dependencies run one way: the webhook is checked
//! ([`signature`], [`parse`]), stored with its effect ([`store`]), and the effect is
//! a receipt moving a delivery on ([`receipts`] → [`crate::deliveries`]) or a change
//! to the OA's users ([`subscribers`]).

mod fields;
#[cfg(test)]
mod fuzz;
mod parse;
mod receipts;
mod signature;
mod store;
mod subscribers;

pub(crate) use parse::{authenticate, event_label, Freshness, KNOWN_EVENTS};
pub(crate) use receipts::{run_reconciler, settle_from_stored_receipts};
pub use store::prune_events;
pub(crate) use store::{run_pruner, store, Stored};
