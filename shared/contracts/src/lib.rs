//! Message contracts shared by every Loa service, and the one place where upstream input
//! is validated and normalised.
//!
//! Services only talk over RabbitMQ; what they say to each other is defined here, so a
//! change to a message is a change to this crate, reviewed once.
//!
//! # Layout
//!
//! - [`status`]: the national dossier status codes 1..10 with their Vietnamese labels.
//! - [`phone`]: Vietnamese mobile numbers, normalised to `84` + 9 digits.
//! - [`personal`]: names, phones and Zalo ids in stored messages reduced to masked
//!   forms (retention, erasure).
//! - [`event`]: [`DossierEvent`] v1 (upstream → intake → tracker) and its validation.
//! - [`notification`]: [`NotificationRequest`] (tracker → notifier) and its kinds.
//! - [`citizen`]: [`ChatLookup`], a citizen's chat lookup (notifier → tracker).
//! - [`feedback`]: [`CitizenFeedback`], a rating given in Zalo (notifier → tracker).
//! - [`envelope`]: the versioned, tagged envelope every AMQP body is wrapped in.
//! - [`error`]: [`ValidationError`], which always names the offending field.
//! - [`text`]: invisible and text-direction characters, refused or stripped.
//! - [`time`]: Vietnamese local time and `dd/MM/yyyy` formatting.
//! - [`templates`]: what citizens read: each kind's Zalo template text and parameters.

pub mod citizen;
pub mod envelope;
pub mod error;
pub mod event;
pub mod feedback;
pub mod notification;
pub mod personal;
pub mod phone;
pub mod status;
pub mod templates;
pub mod text;
pub mod time;

pub use citizen::ChatLookup;
pub use envelope::{DossierEventBatch, Envelope, NotificationBatch, PackedEvent};
pub use error::ValidationError;
pub use event::{
    Agency, ApplicantKind, Channels, DossierEvent, Fee, Person, Procedure, ResultDocument,
};
pub use feedback::CitizenFeedback;
pub use notification::{BroadcastRef, Lane, NotificationKind, NotificationRequest, Recipient};
pub use phone::PhoneNumber;
pub use status::DossierStatus;
