//! What the gate in front of every send asks: is the tenant paused ([`pause`]), does
//! the ZNS quota allow it ([`quota`]), and when may it leave ([`ratelimit`], one GCRA
//! row per tenant shared by every lane and replica). One statement answers all three
//! for a batch (`notifier.take_send_slots`).

pub(crate) mod pacer;
pub(crate) mod pause;
pub(crate) mod quota;
pub(crate) mod ratelimit;
