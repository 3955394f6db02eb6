//! The tracker's wall clock ([`loa_platform::clock::Clock`]).
//!
//! Everything the tracker decides by the date reads it: when an event was applied,
//! "today" for early / on time / overdue on the lookup page and in the APIs, the
//! overdue sweep, retention, and the window in which a rating may still be changed.

pub use loa_platform::clock::Clock;
