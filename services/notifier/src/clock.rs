//! The notifier's wall clock ([`loa_platform::clock::Clock`]).
//!
//! Every wall-clock decision of the delivery engine reads it: night-ban and quota-day
//! deferrals (06:05 and 00:05 Asia/Ho_Chi_Minh), `not_before`, the quota day a Zalo
//! answer is counted on, when an ambiguous send is rechecked, when a deferred request is
//! due, and broadcasts' quiet hours and schedules.

pub use loa_platform::clock::Clock;
