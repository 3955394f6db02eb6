//! `notifier.deliveries` and `notifier.delivery_events`: one row per notification id
//! (the notifier's idempotency key and its record of what happened) and the history of
//! each.
//!
//! - [`status`]: [`DeliveryStatus`], the states a row can be in.
//! - [`store`]: claims (with leases), dispatch marks, copies parked behind a lease,
//!   and recording a batch's results, each one statement per batch.
//! - [`history`]: status transitions, appended to `notifier.delivery_events`.
//! - [`views`]: deliveries, receipt times and histories as the API shows them.

mod history;
mod status;
mod store;
mod views;

pub(crate) use history::{record_transitions, Transition};
pub use status::DeliveryStatus;
pub use store::{claim, mark_dispatched, record, Claim, NewDelivery, Outcome, Prior, Status};
pub(crate) use store::{park_behind_lease, record_batch_with_history, DispatchMarks, Record};
pub use views::{list_for_dossier, views_for, DeliveryView, HistoryEntry, ReceiptView};
