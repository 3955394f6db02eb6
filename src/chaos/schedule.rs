//! The chaos schedule: which fault strikes when, drawn from a seed, so that a run that
//! found something can be repeated with the same faults at the same moments.
//!
//! Pure: [`schedule`] turns a seed, the load's duration and the variant into a list
//! of [`Step`]s; [`super::faults`] carries them out. The faults are spread over the
//! load, one per slot of equal length in shuffled order, so each strikes while events
//! flow and none is crowded out by another; a window fault (Zalo answering 5xx,
//! hanging or rate-limiting) is a pair of steps, on and off.
//!
//! The generator is SplitMix64, written out here rather than taken from `rand`:
//! `rand` does not promise the same stream across versions, and a seed printed in a
//! report must replay the same schedule after an upgrade.

use std::{fmt, time::Duration};

/// A service the run can kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `loa run intake`.
    Intake,
    /// `loa run tracker`.
    Tracker,
    /// `loa run notifier`.
    Notifier,
    /// `loa run zalo-sandbox`: Zalo itself going away.
    Sandbox,
}

impl Service {
    /// The `loa run` target.
    pub fn target(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Tracker => "tracker",
            Self::Notifier => "notifier",
            Self::Sandbox => "zalo-sandbox",
        }
    }
}

/// A misbehaviour of Zalo's API, turned on for a while (a sandbox fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ZaloFault {
    /// A share of sends answered HTTP 502 with an HTML body, as a proxy in front of
    /// Zalo does when Zalo is down.
    ServerErrors,
    /// A share of accepted sends whose answer never comes in time (the message
    /// reached Zalo; the sender cannot know).
    Hangs,
    /// A share of sends answered `-32` (rate limit exceeded).
    RateLimited,
}

impl ZaloFault {
    /// Every window fault.
    pub const ALL: [ZaloFault; 3] = [Self::ServerErrors, Self::Hangs, Self::RateLimited];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServerErrors => "Zalo 5xx",
            Self::Hangs => "Zalo hangs",
            Self::RateLimited => "Zalo -32",
        }
    }
}

/// One thing the run does to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// SIGKILL a service, then start it again after a short downtime.
    Kill(Service),
    /// `rabbitmqctl close_all_connections` for the run's vhost.
    CloseAmqp,
    /// `pg_terminate_backend` of every service backend of the run's database.
    TerminatePostgres,
    /// Turn a Zalo fault on.
    FaultOn(ZaloFault),
    /// Turn it off again.
    FaultOff(ZaloFault),
    /// Every access token the sandbox issued stops working (`/_sandbox/tokens/expire`).
    ExpireTokens,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(s) => write!(f, "SIGKILL {}, restart", s.target()),
            Self::CloseAmqp => f.write_str("close the vhost's AMQP connections"),
            Self::TerminatePostgres => f.write_str("terminate the database's backends"),
            Self::FaultOn(z) => write!(f, "{} on", z.name()),
            Self::FaultOff(z) => write!(f, "{} off", z.name()),
            Self::ExpireTokens => f.write_str("expire Zalo access tokens"),
        }
    }
}

/// An action and when it happens, from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What happens.
    pub action: Action,
}

/// Something that strikes once: a single action, or a window of a Zalo fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incident {
    Once(Action),
    Window(ZaloFault),
}

/// The incidents of a run: every kind at least once, the notifier killed more than
/// once (it is the service with the most in flight), more of each in the full run.
fn incidents(short: bool) -> Vec<Incident> {
    use Incident::{Once, Window};
    let each = |n: usize, i: Incident| std::iter::repeat_n(i, n);
    let (kills_notifier, others) = if short { (2, 1) } else { (3, 2) };
    let mut list: Vec<Incident> = Vec::new();
    list.extend(each(kills_notifier, Once(Action::Kill(Service::Notifier))));
    for service in [Service::Tracker, Service::Intake, Service::Sandbox] {
        list.extend(each(others, Once(Action::Kill(service))));
    }
    list.extend(each(others + 1, Once(Action::CloseAmqp)));
    list.extend(each(others + 1, Once(Action::TerminatePostgres)));
    list.extend(each(others, Once(Action::ExpireTokens)));
    for fault in ZaloFault::ALL {
        list.extend(each(others, Window(fault)));
    }
    list
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator with a stable stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..n` (`n ≥ 1`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// How long a Zalo fault window lasts.
pub fn window_length(short: bool) -> Duration {
    if short {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(8)
    }
}

/// The steps of a run of `load` length: the incidents shuffled by `seed`, one per
/// equal slot between 10 % and 85 % of the load (the start lets the pipeline fill,
/// the end leaves load after the last fault), at a seeded point in the first half of
/// its slot. Sorted by time.
pub fn schedule(seed: u64, load: Duration, short: bool) -> Vec<Step> {
    let mut rng = SplitMix64::new(seed);
    let mut list = incidents(short);
    for i in (1..list.len()).rev() {
        let j = rng.below(i + 1);
        list.swap(i, j);
    }
    let start = load.mul_f64(0.10);
    let span = load.mul_f64(0.75);
    let slot = span / list.len().max(1) as u32;
    let window = window_length(short);
    let mut steps = Vec::with_capacity(list.len() * 2);
    for (i, incident) in list.into_iter().enumerate() {
        let at = start + slot * i as u32 + slot.mul_f64(rng.unit() * 0.5);
        match incident {
            Incident::Once(action) => steps.push(Step { at, action }),
            Incident::Window(fault) => {
                steps.push(Step {
                    at,
                    action: Action::FaultOn(fault),
                });
                steps.push(Step {
                    at: at + window,
                    action: Action::FaultOff(fault),
                });
            }
        }
    }
    steps.sort_by_key(|s| s.at);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn kinds(steps: &[Step]) -> HashSet<String> {
        steps
            .iter()
            .map(|s| match s.action {
                Action::Kill(service) => format!("kill {}", service.target()),
                other => format!("{other}"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let load = Duration::from_secs(120);
        assert_eq!(schedule(7, load, false), schedule(7, load, false));
        assert_ne!(schedule(7, load, false), schedule(8, load, false));
    }

    #[test]
    fn every_fault_kind_strikes_in_both_variants_and_the_notifier_dies_more_than_once() {
        for short in [true, false] {
            let steps = schedule(42, Duration::from_secs(30), short);
            let k = kinds(&steps);
            for expected in [
                "kill intake",
                "kill tracker",
                "kill notifier",
                "kill zalo-sandbox",
                "close the vhost's AMQP connections",
                "terminate the database's backends",
                "expire Zalo access tokens",
                "Zalo 5xx on",
                "Zalo 5xx off",
                "Zalo hangs on",
                "Zalo hangs off",
                "Zalo -32 on",
                "Zalo -32 off",
            ] {
                assert!(k.contains(expected), "{expected} missing (short: {short})");
            }
            let notifier_kills = steps
                .iter()
                .filter(|s| s.action == Action::Kill(Service::Notifier))
                .count();
            assert!(notifier_kills >= 2, "short: {short}");
        }
    }

    #[test]
    fn steps_are_sorted_inside_the_load_and_each_window_closes_after_it_opens() {
        let load = Duration::from_secs(100);
        let steps = schedule(3, load, false);
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        let once: Vec<&Step> = steps
            .iter()
            .filter(|s| !matches!(s.action, Action::FaultOff(_)))
            .collect();
        assert!(once
            .iter()
            .all(|s| s.at >= Duration::from_secs(10) && s.at < Duration::from_secs(85)));
        for fault in ZaloFault::ALL {
            let on: Vec<Duration> = steps
                .iter()
                .filter(|s| s.action == Action::FaultOn(fault))
                .map(|s| s.at)
                .collect();
            let off: Vec<Duration> = steps
                .iter()
                .filter(|s| s.action == Action::FaultOff(fault))
                .map(|s| s.at)
                .collect();
            assert_eq!(on.len(), off.len());
            for (a, b) in on.iter().zip(&off) {
                assert_eq!(*b - *a, window_length(false));
            }
        }
    }

    #[test]
    fn splitmix64_gives_its_published_first_values() {
        // The reference implementation's output for seed 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }
}
