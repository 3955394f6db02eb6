//! Which Zalo channel carries a request, and the fallback to the other one.
//!
//! A citizen known to follow the tenant's OA (a Zalo user id on the request, or a
//! following subscriber with the request's phone in `notifier.subscribers`) gets the
//! tenant's template by user id on the OA (`POST /v3.0/oa/message/template`); anyone
//! else gets the ZNS template by phone. When Zalo answers that this recipient cannot
//! get it on the first channel (a recipient-permanent error: not a follower any more,
//! no Zalo account on that phone, …), the request is tried once on the other channel,
//! if it has what that channel needs. `deliveries.channel` records the channel that
//! delivered (or was tried last).

use anyhow::Context;
use deadpool_postgres::Pool;
use loa_contracts::NotificationRequest;
use std::collections::HashMap;

/// Which Zalo channel carried (or was to carry) a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    /// ZNS template by phone number.
    Zns,
    /// ZBS template by Zalo user id (followers).
    OaTemplate,
    /// Consultation text by Zalo user id (chat replies, inside Zalo's 7-day window).
    OaCs,
    /// No channel could be chosen (no recipient, no template).
    None,
}

impl Channel {
    /// Stable name, stored and used as a metrics label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Zns => "zns",
            Self::OaTemplate => "oa_template",
            Self::OaCs => "oa_cs",
            Self::None => "none",
        }
    }

    /// The channel a request will be tried on first, from the request alone: the OA
    /// template when it names a Zalo user id, else ZNS by phone.
    pub(crate) fn for_request(request: &NotificationRequest) -> Self {
        Route::plan(request, None).first()
    }
}

/// The channels to try for one request, in order, with the recipient on each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// The citizen's user id for the OA (from the request or the subscribers).
    pub user_id: Option<String>,
    /// The citizen's phone.
    pub phone: Option<String>,
    /// Channels in the order to try them (at most two, no repeats).
    pub channels: Vec<Channel>,
}

impl Route {
    /// Plans a request's route; `follower` is the user id found for its phone among
    /// the OA's following subscribers.
    pub(crate) fn plan(request: &NotificationRequest, follower: Option<&str>) -> Self {
        let user_id = request
            .recipient
            .zalo_user_id
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| follower.map(str::to_owned));
        let phone = request
            .recipient
            .phone
            .clone()
            .filter(|p| !p.trim().is_empty());
        let mut channels = Vec::with_capacity(2);
        if request.kind.is_consultation() {
            // Free text to the user who wrote: there is no other channel for it.
            if user_id.is_some() {
                channels.push(Channel::OaCs);
            }
            return Self {
                user_id,
                phone,
                channels,
            };
        }
        if user_id.is_some() {
            channels.push(Channel::OaTemplate);
        }
        if phone.is_some() {
            channels.push(Channel::Zns);
        }
        Self {
            user_id,
            phone,
            channels,
        }
    }

    /// The route without ZNS: for a message not worth a paid ZNS (a rating request
    /// without a rating template, see the sender).
    pub(crate) fn without_zns(mut self) -> Self {
        self.channels.retain(|c| *c != Channel::Zns);
        self
    }

    /// The first channel (`None` when the request names no recipient).
    pub(crate) fn first(&self) -> Channel {
        self.channels.first().copied().unwrap_or(Channel::None)
    }

    /// The channel after `current`, if any.
    pub(crate) fn after(&self, current: Channel) -> Option<Channel> {
        let at = self.channels.iter().position(|c| *c == current)?;
        self.channels.get(at + 1).copied()
    }
}

/// The following subscribers' user ids for `(tenant, phone)` pairs, one query. Before
/// the subscribers table exists (an older schema) nobody is known to follow.
pub(crate) async fn followers_by_phone(
    pool: &Pool,
    wanted: &[(&str, &str)],
) -> anyhow::Result<HashMap<(String, String), String>> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<&str> = wanted.iter().map(|(t, _)| *t).collect();
    let phones: Vec<&str> = wanted.iter().map(|(_, p)| *p).collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let statement = match client
        .prepare_cached(
            "SELECT DISTINCT ON (s.tenant, s.phone) s.tenant, s.phone, s.zalo_user_id
               FROM notifier.subscribers s
               JOIN UNNEST($1::text[], $2::text[]) AS i(tenant, phone)
                 ON s.tenant = i.tenant AND s.phone = i.phone
              WHERE s.following
              ORDER BY s.tenant, s.phone, s.updated_at DESC",
        )
        .await
    {
        Ok(statement) => statement,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Ok(HashMap::new())
        }
        Err(e) => return Err(e).context("Failed to look up followers"),
    };
    let rows = client
        .query(&statement, &[&tenants, &phones])
        .await
        .context("Failed to look up followers")?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loa_contracts::{Lane, NotificationKind, Recipient};

    fn request(phone: Option<&str>, user: Option<&str>) -> NotificationRequest {
        NotificationRequest {
            notification_id: "n".into(),
            tenant: "demo".into(),
            kind: NotificationKind::Receipt,
            recipient: Recipient {
                phone: phone.map(Into::into),
                zalo_user_id: user.map(Into::into),
            },
            params: Default::default(),
            lane: Lane::Transactional,
            dossier_code: None,
            not_before: None,
            trace_context: None,
            event_accepted_at: None,
            created_at: chrono::Utc::now(),
            broadcast: None,
        }
    }

    #[test]
    fn followers_get_the_oa_template_first_and_zns_as_the_fallback() {
        let route = Route::plan(&request(Some("84903123456"), Some("u1")), None);
        assert_eq!(route.channels, vec![Channel::OaTemplate, Channel::Zns]);
        assert_eq!(route.after(Channel::OaTemplate), Some(Channel::Zns));
        assert_eq!(route.after(Channel::Zns), None);

        let found = Route::plan(&request(Some("84903123456"), None), Some("u2"));
        assert_eq!(found.user_id.as_deref(), Some("u2"));
        assert_eq!(found.first(), Channel::OaTemplate);
    }

    #[test]
    fn others_get_zns_by_phone_and_nobody_gets_no_channel() {
        let route = Route::plan(&request(Some("84903123456"), None), None);
        assert_eq!(route.channels, vec![Channel::Zns]);
        assert_eq!(
            Route::plan(&request(None, Some("u")), None).first(),
            Channel::OaTemplate
        );
        assert_eq!(
            Route::plan(&request(None, None), None).first(),
            Channel::None
        );
    }
}
