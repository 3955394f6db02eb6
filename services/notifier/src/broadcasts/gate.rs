//! What the sender asks before sending a broadcast's message: is it still wanted,
//! now, by this citizen, this month?
//!
//! One round trip per batch ([`verdicts`]) reads each message's broadcast and
//! subscriber; then the monthly cap is reserved for those that may go. A message is
//! - skipped (for good, counted, no error) when its broadcast was cancelled or its
//!   `end_at` passed, when the citizen opted out or unfollowed since the fan-out, or
//!   when they already had [`MONTHLY_CAP`] promotions from this OA this month;
//! - held back (deferred in the table) while its broadcast is paused (until a resume
//!   makes it due) or while the tenant's quiet hours last (until they end);
//! - sent otherwise.
//!
//! So pause and cancel take effect on messages already in the queue within one
//! batch, on every replica, without the fan-out having to chase them; and quiet
//! hours hold broadcast sends whatever Zalo would say, while case updates never come
//! here.
//!
//! The monthly cap is Zalo's rule: at most 4 promotion messages per citizen per month
//! from one OA. Each citizen's month lists the broadcasts that took a slot
//! (`notifier.promotion_sends`), so a retried or republished message of the same
//! broadcast finds its own slot again instead of taking a second one. A slot is taken
//! before the send and kept whatever Zalo answers: better one promotion too few than
//! one too many.

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use deadpool_postgres::Pool;
use loa_contracts::{time::vietnam, NotificationRequest};
use loa_platform::Tenants;
use std::collections::{HashMap, HashSet};

/// Promotions one citizen gets from one OA per calendar month (Vietnam time).
pub const MONTHLY_CAP: i32 = 4;

/// How long a paused broadcast's message waits unless a resume makes it due.
const PAUSED_FOR: Duration = Duration::days(365);

/// What to do with one broadcast message now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Defer it until then.
    Wait {
        /// When it is due again.
        until: DateTime<Utc>,
    },
    /// Never send it; the reason is counted in the broadcast's progress.
    Skip(&'static str),
}

/// The first day of `at`'s month in Vietnam: the monthly cap's key.
pub(crate) fn month_of(at: DateTime<Utc>) -> NaiveDate {
    let local = at.with_timezone(&vietnam()).date_naive();
    NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local)
}

/// Verdicts for the broadcast messages among `requests` (others are not in the map),
/// by notification id.
pub(crate) async fn verdicts(
    pool: &Pool,
    tenants: &Tenants,
    requests: &[&NotificationRequest],
    now: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, Verdict>> {
    let mine: Vec<&NotificationRequest> = requests
        .iter()
        .copied()
        .filter(|r| r.broadcast.is_some())
        .collect();
    let mut out = HashMap::new();
    if mine.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&str> = mine.iter().map(|r| r.notification_id.as_str()).collect();
    let tenant_ids: Vec<&str> = mine.iter().map(|r| r.tenant.as_str()).collect();
    let broadcasts: Vec<&str> = mine
        .iter()
        .filter_map(|r| r.broadcast.as_ref().map(|b| b.id.as_str()))
        .collect();
    let subscribers: Vec<i64> = mine
        .iter()
        .filter_map(|r| r.broadcast.as_ref().map(|b| b.subscriber))
        .collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let statement = client
        .prepare_cached(
            "SELECT m.id, b.state, b.end_at,
                    coalesce(s.announcements AND s.opted_out_at IS NULL
                             AND s.following IS DISTINCT FROM false, false)
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
                    AS m(id, tenant, broadcast_id, subscriber)
               LEFT JOIN notifier.broadcasts b ON b.id = m.broadcast_id AND b.tenant = m.tenant
               LEFT JOIN notifier.subscribers s ON s.id = m.subscriber AND s.tenant = m.tenant",
        )
        .await
        .context("Failed to prepare the broadcast gate")?;
    let rows = client
        .query(&statement, &[&ids, &tenant_ids, &broadcasts, &subscribers])
        .await
        .context("Failed to read the broadcasts of a batch")?;
    let mut may_send: Vec<&NotificationRequest> = Vec::new();
    let by_id: HashMap<&str, &NotificationRequest> = mine
        .iter()
        .map(|r| (r.notification_id.as_str(), *r))
        .collect();
    for row in &rows {
        let id: &str = row.get(0);
        let state: Option<&str> = row.get(1);
        let end_at: Option<DateTime<Utc>> = row.get(2);
        let reachable: bool = row.get(3);
        let Some(request) = by_id.get(id) else {
            continue;
        };
        let verdict = match broadcast_verdict(tenants, request, state, end_at, now) {
            Verdict::Send if !reachable => Verdict::Skip("opted_out"),
            Verdict::Send => {
                may_send.push(request);
                continue;
            }
            other => other,
        };
        out.insert(id.to_owned(), verdict);
    }
    let granted = reserve_monthly(&client, &may_send, month_of(now)).await?;
    for request in may_send {
        let verdict = if granted.contains(request.notification_id.as_str()) {
            Verdict::Send
        } else {
            Verdict::Skip("monthly_cap")
        };
        out.insert(request.notification_id.clone(), verdict);
    }
    Ok(out)
}

/// The verdict the broadcast alone gives (its state, its end, the tenant's quiet
/// hours); `Send` means the citizen's checks come next.
fn broadcast_verdict(
    tenants: &Tenants,
    request: &NotificationRequest,
    state: Option<&str>,
    end_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Verdict {
    let quiet = tenants
        .get(&request.tenant)
        .and_then(|t| t.broadcasts.quiet_hours.ends_after(now));
    match state {
        None => Verdict::Skip("unknown_broadcast"),
        Some("cancelled") => Verdict::Skip("cancelled"),
        _ if end_at.is_some_and(|end| end <= now) => Verdict::Skip("ended"),
        Some("paused") => Verdict::Wait {
            until: now + PAUSED_FOR,
        },
        _ => match quiet {
            Some(until) => Verdict::Wait { until },
            None => Verdict::Send,
        },
    }
}

/// Looks again at the broadcasts of messages a batch is still waiting to send (its
/// rate-limit slots come one by one): a pause, a cancel, an end or quiet hours that
/// began meanwhile stop them within one send round. Only the messages that must not
/// go now are in the map.
pub(crate) async fn recheck(
    pool: &Pool,
    tenants: &Tenants,
    requests: &[&NotificationRequest],
    now: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, Verdict>> {
    let ids: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.broadcast.as_ref().map(|b| b.id.as_str()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT id, tenant, state, end_at FROM notifier.broadcasts WHERE id = ANY($1::text[])",
            &[&ids],
        )
        .await
        .context("Failed to read broadcast states")?;
    // (id, tenant) → (state, end_at)
    type State<'r> = (&'r str, Option<DateTime<Utc>>);
    let states: HashMap<(&str, &str), State<'_>> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    for request in requests {
        let Some(b) = &request.broadcast else {
            continue;
        };
        let (state, end_at) = states
            .get(&(b.id.as_str(), request.tenant.as_str()))
            .map_or((None, None), |(s, e)| (Some(*s), *e));
        match broadcast_verdict(tenants, request, state, end_at, now) {
            Verdict::Send => {}
            other => {
                out.insert(request.notification_id.clone(), other);
            }
        }
    }
    Ok(out)
}

/// Takes a monthly promotion slot for each request's citizen (or finds the one its
/// broadcast already took); returns the notification ids that have one.
async fn reserve_monthly<'a>(
    client: &deadpool_postgres::Client,
    requests: &[&'a NotificationRequest],
    month: NaiveDate,
) -> anyhow::Result<HashSet<&'a str>> {
    let mut granted = HashSet::new();
    // One statement may touch a citizen's row once: rounds of distinct citizens.
    let mut left: Vec<&NotificationRequest> = requests.to_vec();
    while !left.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) = left.into_iter().partition(|r| {
            let b = r.broadcast.as_ref().map(|b| b.subscriber);
            seen.insert((r.tenant.as_str(), b))
        });
        left = later;
        let tenants: Vec<&str> = round.iter().map(|r| r.tenant.as_str()).collect();
        let subscribers: Vec<i64> = round
            .iter()
            .map(|r| r.broadcast.as_ref().map_or(0, |b| b.subscriber))
            .collect();
        let broadcasts: Vec<&str> = round
            .iter()
            .map(|r| r.broadcast.as_ref().map_or("", |b| b.id.as_str()))
            .collect();
        let statement = client
            .prepare_cached(
                "WITH m AS (
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[])
                         AS m(tenant, subscriber_id, broadcast_id)
                 ), taken AS (
                     INSERT INTO notifier.promotion_sends AS p (tenant, month, subscriber_id, broadcasts)
                     SELECT tenant, $4, subscriber_id, ARRAY[broadcast_id] FROM m
                     ON CONFLICT (tenant, month, subscriber_id) DO UPDATE
                        SET broadcasts = p.broadcasts || EXCLUDED.broadcasts
                      WHERE cardinality(p.broadcasts) < $5
                        AND NOT (EXCLUDED.broadcasts[1] = ANY(p.broadcasts))
                     RETURNING p.tenant, p.subscriber_id
                 )
                 SELECT m.tenant, m.subscriber_id,
                        EXISTS (SELECT 1 FROM taken t
                                 WHERE t.tenant = m.tenant AND t.subscriber_id = m.subscriber_id)
                        OR EXISTS (SELECT 1 FROM notifier.promotion_sends p
                                    WHERE p.tenant = m.tenant AND p.month = $4
                                      AND p.subscriber_id = m.subscriber_id
                                      AND m.broadcast_id = ANY(p.broadcasts))
                   FROM m",
            )
            .await
            .context("Failed to prepare the monthly cap")?;
        let rows = client
            .query(
                &statement,
                &[&tenants, &subscribers, &broadcasts, &month, &MONTHLY_CAP],
            )
            .await
            .context("Failed to reserve monthly promotion slots")?;
        let ok: HashSet<(String, i64)> = rows
            .iter()
            .filter(|r| r.get::<_, bool>(2))
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        for r in round {
            let key = (
                r.tenant.clone(),
                r.broadcast.as_ref().map_or(0, |b| b.subscriber),
            );
            if ok.contains(&key) {
                granted.insert(r.notification_id.as_str());
            }
        }
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_s_month_is_the_calendar_month_in_vietnam() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            month_of(at("2026-11-30T18:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            "01:00 on 1 December in Vietnam"
        );
        assert_eq!(
            month_of(at("2026-12-31T16:59:59Z")),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
    }
}
