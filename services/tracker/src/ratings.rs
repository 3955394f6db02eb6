//! Citizens' satisfaction ratings of a dossier whose result was returned (status 10).
//!
//! Three levels, as the provinces' one-stop systems record them ("RẤT HÀI LÒNG" /
//! "HÀI LÒNG" / "KHÔNG HÀI LÒNG"), and an optional comment. One rating per dossier
//! (`tracker.ratings`, keyed by the dossier): a citizen may change it for the tenant's
//! `rating_window_days` after first giving it, then it is final. Ratings come from the
//! lookup page's form (no JavaScript; a form token bound to the lookup token and
//! signed with the lookup secret refuses forged posts) and from Zalo's `user_feedback`
//! webhook on a ZNS rating template (stars mapped to the three levels,
//! [`RatingLevel::from_stars`]), which the notifier forwards over RabbitMQ.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Pool;
use hmac::{Hmac, Mac};
use loa_contracts::text::strip_invisible;
use loa_platform::Secret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Most characters a comment keeps (after control characters are removed).
pub const MAX_COMMENT: usize = 500;

/// How long a form token stays valid after the page that carried it was served.
pub const FORM_TOKEN_TTL: Duration = Duration::hours(24);

/// A satisfaction level.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RatingLevel {
    /// Rất hài lòng.
    VerySatisfied,
    /// Hài lòng.
    Satisfied,
    /// Không hài lòng.
    Dissatisfied,
}

impl RatingLevel {
    /// Every level, best first (the form's order, the metric's series).
    pub const ALL: [RatingLevel; 3] = [Self::VerySatisfied, Self::Satisfied, Self::Dissatisfied];

    /// The name stored, sent by the form and used as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerySatisfied => "very_satisfied",
            Self::Satisfied => "satisfied",
            Self::Dissatisfied => "dissatisfied",
        }
    }

    /// A level by its name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The wording citizens read.
    pub fn label_vi(self) -> &'static str {
        match self {
            Self::VerySatisfied => "Rất hài lòng",
            Self::Satisfied => "Hài lòng",
            Self::Dissatisfied => "Không hài lòng",
        }
    }

    /// Whether the level counts as satisfied in the statistics' satisfied share.
    pub fn is_satisfied(self) -> bool {
        self != Self::Dissatisfied
    }

    /// The level a ZNS rating template's stars (1..5) stand for: 5 very satisfied,
    /// 3-4 satisfied, 1-2 dissatisfied (a three-star answer is not a complaint).
    pub fn from_stars(stars: i64) -> Option<Self> {
        match stars {
            5 => Some(Self::VerySatisfied),
            3 | 4 => Some(Self::Satisfied),
            1 | 2 => Some(Self::Dissatisfied),
            _ => None,
        }
    }
}

/// Where a rating came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingSource {
    /// The lookup page's form.
    Page,
    /// A ZNS rating template, through Zalo's `user_feedback` webhook.
    Zalo,
}

impl RatingSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Zalo => "zalo",
        }
    }
}

/// A dossier's rating as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    /// The level given last.
    pub level: RatingLevel,
    /// The comment given last ("" for none).
    pub comment: String,
    /// When it was first given: the change window starts here.
    pub first_rated_at: DateTime<Utc>,
    /// When it was last given or changed.
    pub rated_at: DateTime<Utc>,
}

impl Rating {
    /// The last instant the rating may still be changed.
    pub fn changeable_until(&self, window_days: u32) -> DateTime<Utc> {
        self.first_rated_at + Duration::days(i64::from(window_days))
    }
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The dossier had no rating: this is it.
    Recorded(Rating),
    /// The rating was changed (inside the window), or given again as it was.
    Changed(Rating),
    /// The rating is final: its change window has passed. Nothing changed.
    WindowClosed(Rating),
    /// This very rating given in Zalo (the same rated message) was recorded already:
    /// a redelivery. Nothing changed.
    Duplicate(Rating),
}

/// Cleans a citizen's comment: line breaks and tabs become spaces, every other
/// control or invisible character is removed ([`strip_invisible`], as for chat
/// messages), spaces are trimmed. `None` when it is still longer than [`MAX_COMMENT`].
pub fn clean_comment(raw: &str) -> Option<String> {
    let spaced: String = raw
        .chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = strip_invisible(&spaced).trim().to_owned();
    (cleaned.chars().count() <= MAX_COMMENT).then_some(cleaned)
}

/// The form token of a lookup token's rating form served at `issued` (Unix seconds):
/// HMAC-SHA256(lookup secret, "rating" ␟ lookup token ␟ issued), 32 hex characters.
/// A forged post from another site cannot know it without the page.
pub fn form_token(secret: &Secret, lookup_token: &str, issued: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(b"rating\x1f");
    mac.update(lookup_token.as_bytes());
    mac.update(b"\x1f");
    mac.update(issued.to_string().as_bytes());
    let mut token = hex::encode(mac.finalize().into_bytes());
    token.truncate(32);
    token
}

/// Whether `candidate` is the form token of `lookup_token` issued at `issued`, and
/// `issued` lies within [`FORM_TOKEN_TTL`] before `now` (a few minutes ahead allowed
/// for clocks of other replicas). Compared in constant time.
pub fn check_form_token(
    secret: &Secret,
    lookup_token: &str,
    issued: i64,
    candidate: &str,
    now: DateTime<Utc>,
) -> bool {
    let age = now.timestamp() - issued;
    if age < -300 || age > FORM_TOKEN_TTL.num_seconds() {
        return false;
    }
    let expected = form_token(secret, lookup_token, issued);
    use subtle_eq::ct_eq;
    ct_eq(expected.as_bytes(), candidate.as_bytes())
}

mod subtle_eq {
    /// Constant-time equality of two byte strings (length is not secret).
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The rating of a dossier, if it has one.
pub async fn rating_of(
    pool: &Pool,
    tenant: &str,
    dossier_code: &str,
) -> anyhow::Result<Option<Rating>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT level, comment, first_rated_at, rated_at FROM tracker.ratings
             WHERE tenant = $1 AND dossier_code = $2",
            &[&tenant, &dossier_code],
        )
        .await?;
    row.map(|r| rating_from_row(&r)).transpose()
}

fn rating_from_row(row: &tokio_postgres::Row) -> anyhow::Result<Rating> {
    let level: &str = row.get(0);
    Ok(Rating {
        level: RatingLevel::from_name(level)
            .ok_or_else(|| anyhow::anyhow!("stored rating level {level:?} is unknown"))?,
        comment: row.get(1),
        first_rated_at: row.get(2),
        rated_at: row.get(3),
    })
}

/// A rating to record.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The dossier's tenant.
    pub tenant: &'a str,
    /// The dossier.
    pub dossier_code: &'a str,
    /// The level.
    pub level: RatingLevel,
    /// The comment, already cleaned ([`clean_comment`]).
    pub comment: &'a str,
    /// The page or Zalo.
    pub source: RatingSource,
    /// For a Zalo rating, the rated message's id.
    pub zalo_msg_id: Option<&'a str>,
    /// When it was given.
    pub at: DateTime<Utc>,
    /// The tenant's `rating_window_days`.
    pub window_days: u32,
}

/// Records a rating: the dossier's first, or a change inside the window (one
/// statement, so two posts at once cannot both count as the first); a rating given
/// in Zalo that was recorded already (same rated message) changes nothing. The caller has
/// checked that the dossier's result was returned. Counts what it recorded in
/// `loa_tracker_ratings_total`.
pub async fn submit(pool: &Pool, s: &Submission<'_>) -> anyhow::Result<Submitted> {
    let client = pool.get().await?;
    let window = Duration::days(i64::from(s.window_days));
    let row = client
        .query_opt(
            "INSERT INTO tracker.ratings AS r
                 (tenant, dossier_code, level, comment, source, zalo_msg_id, first_rated_at, rated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (tenant, dossier_code) DO UPDATE
                SET level = EXCLUDED.level, comment = EXCLUDED.comment, source = EXCLUDED.source,
                    zalo_msg_id = EXCLUDED.zalo_msg_id, rated_at = EXCLUDED.rated_at,
                    changes = r.changes + 1
              WHERE r.first_rated_at + $8::bigint * interval '1 second' >= EXCLUDED.rated_at
                AND (EXCLUDED.zalo_msg_id IS NULL OR r.zalo_msg_id IS DISTINCT FROM EXCLUDED.zalo_msg_id)
             RETURNING level, comment, first_rated_at, rated_at, (xmax = 0) AS inserted",
            &[
                &s.tenant,
                &s.dossier_code,
                &s.level.as_str(),
                &s.comment,
                &s.source.as_str(),
                &s.zalo_msg_id,
                &s.at,
                &window.num_seconds(),
            ],
        )
        .await?;
    match row {
        Some(row) => {
            let rating = rating_from_row(&row)?;
            crate::metrics::rating(s.tenant, rating.level);
            Ok(if row.get::<_, bool>(4) {
                Submitted::Recorded(rating)
            } else {
                Submitted::Changed(rating)
            })
        }
        None => {
            let row = client
                .query_one(
                    "SELECT level, comment, first_rated_at, rated_at, zalo_msg_id FROM tracker.ratings
                     WHERE tenant = $1 AND dossier_code = $2",
                    &[&s.tenant, &s.dossier_code],
                )
                .await?;
            let kept = rating_from_row(&row)?;
            let same_message =
                s.zalo_msg_id.is_some() && row.get::<_, Option<&str>>(4) == s.zalo_msg_id;
            Ok(if same_message {
                Submitted::Duplicate(kept)
            } else {
                Submitted::WindowClosed(kept)
            })
        }
    }
}

/// What became of a rating given in Zalo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Recorded as the dossier's rating (its first, or a change inside the window).
    Recorded,
    /// The same rating again (a redelivery): nothing changed.
    Duplicate,
    /// The dossier's rating is final: nothing changed.
    WindowClosed,
    /// The dossier's result was not returned: not a rating of the service.
    NotRateable,
    /// No such dossier, or no readable star count.
    Ignored,
}

impl FeedbackOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Duplicate => "duplicate",
            Self::WindowClosed => "window_closed",
            Self::NotRateable => "not_rateable",
            Self::Ignored => "ignored",
        }
    }

    /// Every outcome, for the series at zero.
    pub const ALL: [FeedbackOutcome; 5] = [
        Self::Recorded,
        Self::Duplicate,
        Self::WindowClosed,
        Self::NotRateable,
        Self::Ignored,
    ];
}

/// Records a rating a citizen gave in Zalo (forwarded by the notifier) as its
/// dossier's rating, under the same rules as the page's: only once the result was
/// returned, one per dossier, changeable inside the tenant's window, which counts
/// from Zalo's time of the rating. Counted in `loa_tracker_zalo_feedback_total`.
pub async fn apply_zalo_feedback(
    pool: &Pool,
    feedback: &loa_contracts::CitizenFeedback,
    window_days: u32,
) -> anyhow::Result<FeedbackOutcome> {
    let outcome = match (
        RatingLevel::from_stars(i64::from(feedback.stars)),
        crate::store::dossier_by_code(pool, &feedback.tenant, &feedback.dossier_code).await?,
    ) {
        (Some(level), Some(dossier)) => {
            if dossier.status != loa_contracts::DossierStatus::ResultReturned {
                FeedbackOutcome::NotRateable
            } else {
                let comment = clean_comment(&feedback.note).unwrap_or_else(|| {
                    clean_comment(&feedback.note.chars().take(MAX_COMMENT).collect::<String>())
                        .unwrap_or_default()
                });
                let submitted = submit(
                    pool,
                    &Submission {
                        tenant: &feedback.tenant,
                        dossier_code: &feedback.dossier_code,
                        level,
                        comment: &comment,
                        source: RatingSource::Zalo,
                        zalo_msg_id: Some(&feedback.msg_id),
                        at: feedback.submitted_at,
                        window_days,
                    },
                )
                .await?;
                match submitted {
                    Submitted::Recorded(_) | Submitted::Changed(_) => FeedbackOutcome::Recorded,
                    Submitted::Duplicate(_) => FeedbackOutcome::Duplicate,
                    Submitted::WindowClosed(_) => FeedbackOutcome::WindowClosed,
                }
            }
        }
        _ => FeedbackOutcome::Ignored,
    };
    crate::metrics::zalo_feedback(&feedback.tenant, outcome);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_form_token_is_bound_to_its_lookup_token_and_its_issue_time() {
        let secret = Secret::new("s");
        let now = at("2026-12-04T10:00:00Z");
        let issued = now.timestamp() - 60;
        let token = form_token(&secret, "0123456789abcdef01234567", issued);
        assert_eq!(token.len(), 32);
        assert!(check_form_token(
            &secret,
            "0123456789abcdef01234567",
            issued,
            &token,
            now
        ));
        assert!(!check_form_token(
            &secret,
            "0123456789abcdef01234568",
            issued,
            &token,
            now
        ));
        assert!(!check_form_token(
            &secret,
            "0123456789abcdef01234567",
            issued + 1,
            &token,
            now
        ));
        assert!(!check_form_token(
            &Secret::new("other"),
            "0123456789abcdef01234567",
            issued,
            &token,
            now
        ));
    }

    #[test]
    fn a_form_token_expires_a_day_after_its_page() {
        let secret = Secret::new("s");
        let issued = at("2026-12-04T10:00:00Z").timestamp();
        let token = form_token(&secret, "t", issued);
        let later = at("2026-12-05T10:00:00Z");
        assert!(check_form_token(&secret, "t", issued, &token, later));
        assert!(!check_form_token(
            &secret,
            "t",
            issued,
            &token,
            later + Duration::seconds(1)
        ));
        let early = at("2026-12-04T09:50:00Z");
        assert!(!check_form_token(&secret, "t", issued, &token, early));
    }

    #[test]
    fn a_comment_loses_control_characters_and_is_length_limited() {
        assert_eq!(
            clean_comment("  Nhanh\r\nchóng\u{202E}, \u{0007}tận tình ").as_deref(),
            Some("Nhanh  chóng, tận tình")
        );
        assert_eq!(
            clean_comment(&"á".repeat(MAX_COMMENT)).map(|c| c.chars().count()),
            Some(MAX_COMMENT)
        );
        assert_eq!(clean_comment(&"á".repeat(MAX_COMMENT + 1)), None);
        assert_eq!(clean_comment("").as_deref(), Some(""));
    }

    #[test]
    fn stars_map_to_the_three_levels() {
        assert_eq!(RatingLevel::from_stars(5), Some(RatingLevel::VerySatisfied));
        assert_eq!(RatingLevel::from_stars(4), Some(RatingLevel::Satisfied));
        assert_eq!(RatingLevel::from_stars(3), Some(RatingLevel::Satisfied));
        assert_eq!(RatingLevel::from_stars(2), Some(RatingLevel::Dissatisfied));
        assert_eq!(RatingLevel::from_stars(1), Some(RatingLevel::Dissatisfied));
        assert_eq!(RatingLevel::from_stars(0), None);
        assert_eq!(RatingLevel::from_stars(6), None);
    }

    #[test]
    fn levels_round_trip_by_name_and_read_in_vietnamese() {
        for level in RatingLevel::ALL {
            assert_eq!(RatingLevel::from_name(level.as_str()), Some(level));
        }
        assert_eq!(RatingLevel::VerySatisfied.label_vi(), "Rất hài lòng");
        assert_eq!(RatingLevel::Dissatisfied.label_vi(), "Không hài lòng");
        assert_eq!(RatingLevel::from_name("Hài lòng"), None);
    }
}
