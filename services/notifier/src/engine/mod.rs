//! The send path: a batch of requests in, one disposition per AMQP delivery out.
//!
//! - [`sender`]: the unit of work (decode, claim under a lease, gate, send, record,
//!   settle).
//! - [`policy`]: [`policy::decide`], the one retry policy for every outcome and error
//!   class (a pure function with its decision table in its docs).
//! - [`delay_queues`]: the broker queues retries wait in.
//! - [`channel`]: OA template for followers, ZNS by phone, the fallback between them.
//! - [`leases`]: short claim leases, renewed while their sender lives.
//! - [`scheduler`]: republishes parked requests when they are due.

mod channel;
mod delay_queues;
mod leases;
mod policy;
mod scheduler;
mod sender;

pub(crate) use channel::Channel;
pub use delay_queues::tier_queue;
pub(crate) use delay_queues::DelayQueues;
pub(crate) use leases::Leases;
pub(crate) use policy::RetrySettings;
pub(crate) use scheduler::Scheduler;
pub(crate) use sender::Sender;
pub(crate) use sender::SenderParts;
