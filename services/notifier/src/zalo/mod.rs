//! A typed client for the three Zalo calls the notifier makes: ZNS template by phone,
//! ZBS template by Zalo user id, and refreshing the OA access token; the one table
//! that classifies Zalo's answers ([`errors`]); the OA access tokens ([`tokens`]),
//! sealed at rest ([`sealing`]).
//!
//! Zalo answers almost everything with HTTP 200 and an `error` code, writes numbers as
//! strings (`"remainingQuota": "480"`, `"expires_in": "90000"`) and may answer with an
//! HTML page from a gateway. This module turns all of that into either a typed success
//! or a [`ZaloFailure`] carrying its [`ErrorClass`]; callers never see raw bodies.
//! Tokens and phone numbers are never logged here.

pub mod errors;
pub mod sealing;
pub(crate) mod tokens;

pub(crate) use errors::{classify_http, classify_transport, ErrorClass, TransportFailure};
pub(crate) use tokens::TokenError;
pub use tokens::TokenManager;

use chrono::{DateTime, Utc};
use loa_platform::tenants::ZaloAppSettings;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    sync::LazyLock,
    time::{Duration, Instant},
};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_zalo_requests_total",
        "Calls to Zalo by API (zns, oa_template, oauth) and answer code (0, a negative Zalo code, http_<status>, timeout, connect, …).",
        &["api", "code"]
    )
    .expect("metric registers once")
});
static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "loa_notifier_zalo_request_duration_seconds",
        "Time from sending a request to Zalo to reading its whole answer, by API.",
        &["api"],
        vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registers once")
});

/// Which Zalo API a call went to (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST {business_url}/message/template`.
    Zns,
    /// `POST {openapi_url}/v3.0/oa/message/template`.
    OaTemplate,
    /// `POST {openapi_url}/v3.0/oa/message/cs`: consultation text (chat replies).
    OaCs,
    /// `POST {oauth_url}/v4/oa/access_token`.
    OAuth,
}

impl Api {
    /// Every API, for creating the metrics' series at zero.
    pub const ALL: [Api; 4] = [Self::Zns, Self::OaTemplate, Self::OaCs, Self::OAuth];

    /// Stable label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Zns => "zns",
            Self::OaTemplate => "oa_template",
            Self::OaCs => "oa_cs",
            Self::OAuth => "oauth",
        }
    }
}

/// Creates each API's latency histogram and its success count (`code="0"`) at zero,
/// so the dashboard's Zalo panels have series before the first call.
pub(crate) fn init_metrics() {
    for api in Api::ALL {
        REQUESTS.with_label_values(&[api.as_str(), "0"]);
        DURATION.with_label_values(&[api.as_str()]);
    }
}

/// Why a Zalo call did not succeed, already classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Zalo {api} call failed ({class}): {detail}", api = api.as_str())]
pub struct ZaloFailure {
    /// Which API.
    pub api: Api,
    /// What it means for the message.
    pub class: ErrorClass,
    /// Zalo's `error` code, when an answer carried one.
    pub code: Option<i64>,
    /// HTTP status, when an answer arrived.
    pub http_status: Option<u16>,
    /// What broke on the wire, when no answer could be read.
    pub transport: Option<TransportFailure>,
    /// Zalo's `message` (or a description of the transport failure). Never contains
    /// tokens or phone numbers: Zalo's messages are fixed strings.
    pub detail: String,
}

impl ZaloFailure {
    /// A short reason for dead letters and the deliveries table:
    /// `zalo error -108: Phone number invalid`.
    pub(crate) fn reason(&self) -> String {
        match (self.code, self.http_status) {
            (Some(code), _) => format!("zalo error {code}: {}", self.detail),
            (None, Some(status)) => format!("zalo http {status}: {}", self.detail),
            (None, None) => format!("zalo {}: {}", self.class, self.detail),
        }
    }

    /// The `code` label of `loa_notifier_zalo_requests_total`: Zalo's code, else the
    /// transport failure, else `non_json` or `http_<status>`. Bounded.
    pub(crate) fn metric_code(&self) -> String {
        match (self.code, self.transport, self.http_status) {
            (Some(code), _, _) => code.to_string(),
            (None, Some(t), _) => t.as_str().to_owned(),
            (None, None, Some(status)) if (200..300).contains(&status) => "non_json".to_owned(),
            (None, None, Some(status)) => format!("http_{status}"),
            (None, None, None) => "unknown".to_owned(),
        }
    }
}

/// A ZNS template message to one phone number.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ZnsMessage<'a> {
    /// Canonical `84…` number.
    pub phone: &'a str,
    /// The tenant's approved template id for this notification kind.
    pub template_id: &'a str,
    /// Template parameters, all strings.
    pub template_data: &'a BTreeMap<String, String>,
    /// Our notification id; Zalo echoes it on the delivery receipt.
    pub tracking_id: &'a str,
}

/// A ZBS template message to a follower, by Zalo user id.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OaTemplateMessage<'a> {
    /// The citizen's user id for this OA.
    pub user_id: &'a str,
    /// Template id (the same ZBS template as by phone).
    pub template_id: &'a str,
    /// Template parameters, all strings.
    pub template_data: &'a BTreeMap<String, String>,
    /// Our notification id (Zalo documents no echo on this channel; sent anyway).
    pub tracking_id: &'a str,
}

/// A consultation text to a Zalo user (`/v3.0/oa/message/cs`), Zalo's shape:
/// `{"recipient": {"user_id"}, "message": {"text"}}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CsMessage<'a> {
    /// Who gets it.
    pub recipient: CsRecipient<'a>,
    /// What it says.
    pub message: CsText<'a>,
}

/// The recipient of a [`CsMessage`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CsRecipient<'a> {
    /// The citizen's user id for this OA.
    pub user_id: &'a str,
}

/// The text of a [`CsMessage`] (at most 2,000 characters).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CsText<'a> {
    /// The text.
    pub text: &'a str,
}

/// Zalo accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Zalo's message id (`msg_id` for ZNS, `message_id` for OA), receipts refer to it.
    pub msg_id: String,
    /// The OA's ZNS daily quota, when the answer reported it.
    pub daily_quota: Option<i64>,
    /// What is left of it today.
    pub remaining_quota: Option<i64>,
}

/// A fresh token pair from OAuth. Both tokens are secrets.
#[derive(Clone)]
pub(crate) struct TokenPair {
    /// The new access token.
    pub access_token: loa_platform::Secret,
    /// The new refresh token; the one we sent is now dead, so this must be stored
    /// before anything else happens.
    pub refresh_token: loa_platform::Secret,
    /// When the access token expires (Zalo: 25 h after issue).
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// One of Zalo's endpoints that send a message.
struct SendEndpoint {
    /// The API its calls are counted as.
    api: Api,
    /// Its path under the app's base URL.
    path: &'static str,
    /// The field of Zalo's `data` that holds the message's id.
    id_field: &'static str,
}

impl SendEndpoint {
    const fn new(api: Api, path: &'static str, id_field: &'static str) -> Self {
        Self {
            api,
            path,
            id_field,
        }
    }
}

/// A ZNS template message by phone (under `business_url`).
const ZNS_TEMPLATE: SendEndpoint = SendEndpoint::new(Api::Zns, "/message/template", "msg_id");

/// A ZBS template message to a follower (under `openapi_url`).
const OA_TEMPLATE: SendEndpoint =
    SendEndpoint::new(Api::OaTemplate, "/v3.0/oa/message/template", "message_id");

/// An Article broadcast to followers (under `openapi_url`), counted with the OA's
/// template sends: the same API family and limits.
const OA_ARTICLE_BROADCAST: SendEndpoint =
    SendEndpoint::new(Api::OaTemplate, "/v2.0/oa/message", "message_id");

/// A consultation text to a Zalo user (under `openapi_url`).
const OA_CONSULTATION: SendEndpoint =
    SendEndpoint::new(Api::OaCs, "/v3.0/oa/message/cs", "message_id");

/// One shared HTTP client for every tenant's Zalo calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ZaloClient {
    http: reqwest::Client,
}

impl ZaloClient {
    /// Builds the client; `timeout` bounds a whole call (connect, send, read).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A refused or slow connect is a safe retry; keep it short so most
            // failures are unambiguous.
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("loa-notifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    /// Sends a ZNS template message by phone number.
    pub(crate) async fn send_zns(
        &self,
        app: &ZaloAppSettings,
        access_token: &str,
        message: &ZnsMessage<'_>,
    ) -> Result<Accepted, ZaloFailure> {
        self.post_message(&ZNS_TEMPLATE, &app.business_url, access_token, message)
            .await
    }

    /// The OA's ZNS quota today, as `GET {business_url}/message/quota` reports it:
    /// `(dailyQuota, remainingQuota)` (strings on the wire; absent ones are `None`).
    pub(crate) async fn zns_quota(
        &self,
        app: &ZaloAppSettings,
        access_token: &str,
    ) -> Result<(Option<i64>, Option<i64>), ZaloFailure> {
        let url = format!("{}/message/quota", app.business_url.trim_end_matches('/'));
        let request = self.http.get(url).header("access_token", access_token);
        let body = call(Api::Zns, request, parse_envelope).await?;
        let data = body.get("data").unwrap_or(&Value::Null);
        Ok((
            data.get("dailyQuota").and_then(lenient_i64),
            data.get("remainingQuota").and_then(lenient_i64),
        ))
    }

    /// Broadcasts an Article to the OA's followers in `cities` (Zalo's city codes):
    /// `POST {openapi_url}/v2.0/oa/message` with `recipient.target`. Zalo's SDKs
    /// disagree on the target's encoding; Loa sends the .NET SDK's (comma-joined
    /// strings), the one that carries several cities in one field. Zalo's id of the
    /// broadcast.
    pub(crate) async fn send_article_broadcast(
        &self,
        app: &ZaloAppSettings,
        access_token: &str,
        attachment_id: &str,
        cities: &[u32],
    ) -> Result<String, ZaloFailure> {
        let cities: Vec<String> = cities.iter().map(u32::to_string).collect();
        let body = serde_json::json!({
            "recipient": {"target": {"cities": cities.join(",")}},
            "message": {"attachment": {"type": "template", "payload": {
                "template_type": "media",
                "elements": [{"media_type": "article", "attachment_id": attachment_id}],
            }}},
        });
        self.post_message(&OA_ARTICLE_BROADCAST, &app.openapi_url, access_token, &body)
            .await
            .map(|a| a.msg_id)
    }

    /// Sends a ZBS template message to a follower by Zalo user id.
    pub(crate) async fn send_oa_template(
        &self,
        app: &ZaloAppSettings,
        access_token: &str,
        message: &OaTemplateMessage<'_>,
    ) -> Result<Accepted, ZaloFailure> {
        self.post_message(&OA_TEMPLATE, &app.openapi_url, access_token, message)
            .await
    }

    /// Sends a consultation text to a Zalo user (inside Zalo's 7-day window after the
    /// user's last interaction, else `-230`).
    pub(crate) async fn send_cs(
        &self,
        app: &ZaloAppSettings,
        access_token: &str,
        message: &CsMessage<'_>,
    ) -> Result<Accepted, ZaloFailure> {
        self.post_message(&OA_CONSULTATION, &app.openapi_url, access_token, message)
            .await
    }

    /// Posts `message` with the OA's access token to `endpoint` under `base_url` and
    /// reads Zalo's id of the message: every send reads Zalo's answer (its error
    /// codes, a success without an id) the same way.
    async fn post_message(
        &self,
        endpoint: &SendEndpoint,
        base_url: &str,
        access_token: &str,
        message: &impl Serialize,
    ) -> Result<Accepted, ZaloFailure> {
        let url = format!("{}{}", base_url.trim_end_matches('/'), endpoint.path);
        let request = self
            .http
            .post(url)
            .header("access_token", access_token)
            .json(message);
        let data = call(endpoint.api, request, parse_envelope).await?;
        accepted(endpoint.api, &data, endpoint.id_field)
    }

    /// Trades a refresh token for a new pair. The refresh token is single-use: after
    /// a success it is dead, and after an ambiguous failure it may be. Any answer
    /// Zalo's token endpoint gives without a usable pair is an authorisation failure
    /// ([`ErrorClass::NeedsOperator`], see [`parse_token_answer`]).
    pub(crate) async fn refresh_access_token(
        &self,
        app: &ZaloAppSettings,
        refresh_token: &str,
    ) -> Result<TokenPair, ZaloFailure> {
        let url = format!("{}/v4/oa/access_token", app.oauth_url.trim_end_matches('/'));
        let request = self
            .http
            .post(url)
            .header("secret_key", app.app_secret.expose())
            .form(&[
                ("refresh_token", refresh_token),
                ("app_id", app.app_id.as_str()),
                ("grant_type", "refresh_token"),
            ]);
        let body = call(Api::OAuth, request, |_, status, body| {
            parse_token_answer(status, body)
        })
        .await?;
        token_pair(&body, Utc::now())
    }
}

/// How an API's answer is read: HTTP status and raw body to the JSON of a success.
type ReadAnswer = fn(Api, u16, &[u8]) -> Result<Value, ZaloFailure>;

/// Sends a request and returns the JSON body of a successful answer as `read` judges
/// it, recording the request metrics once.
async fn call(
    api: Api,
    request: reqwest::RequestBuilder,
    read: ReadAnswer,
) -> Result<Value, ZaloFailure> {
    let started = Instant::now();
    let result = read_answer(api, request, read).await;
    DURATION
        .with_label_values(&[api.as_str()])
        .observe(started.elapsed().as_secs_f64());
    let code = match &result {
        Ok(_) => "0".to_owned(),
        Err(f) => f.metric_code(),
    };
    REQUESTS.with_label_values(&[api.as_str(), &code]).inc();
    result
}

async fn read_answer(
    api: Api,
    request: reqwest::RequestBuilder,
    read: ReadAnswer,
) -> Result<Value, ZaloFailure> {
    let transport = |e: reqwest::Error| {
        let failure = TransportFailure::of(&e);
        ZaloFailure {
            api,
            class: classify_transport(failure),
            code: None,
            http_status: None,
            transport: Some(failure),
            // Without the URL: shorter, and nothing of the request leaks into reasons.
            detail: format!("{}: {}", failure.as_str(), e.without_url()),
        }
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?;
    read(api, status, &body)
}

/// Reads Zalo's envelope: HTTP 200 with `error` 0 (or absent) is a success;
/// anything else is a classified failure.
pub(crate) fn parse_envelope(api: Api, status: u16, body: &[u8]) -> Result<Value, ZaloFailure> {
    let json: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
    let code = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(lenient_i64);
    let success = (200..300).contains(&status) && json.is_some() && code.unwrap_or(0) == 0;
    if success {
        return Ok(json.unwrap_or_default());
    }
    let detail = match &json {
        Some(j) => ["message", "error_description", "error_reason", "error_name"]
            .iter()
            .find_map(|k| j.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .unwrap_or("no message")
            .chars()
            .take(200)
            .collect(),
        None if (200..300).contains(&status) => "answer is not JSON".to_owned(),
        None => format!("HTTP {status} without a Zalo answer"),
    };
    Err(ZaloFailure {
        api,
        class: classify_http(status, code),
        code: code.filter(|c| *c != 0),
        http_status: Some(status),
        transport: None,
        detail,
    })
}

/// Reads the token endpoint's answer. Zalo's OAuth answers are flat, and a spent or
/// revoked refresh token does not always come back as a `-14xxx` code: it may be an
/// HTTP 200 with no tokens at all (an empty body, `{}`, an unknown code). Whatever its
/// shape, a 2xx answer without tokens is an authorisation failure
/// ([`ErrorClass::NeedsOperator`]: pause the tenant, alert), as Zalo's own PHP SDK
/// treats it (`Access token was not returned`, code 401); retrying it as a passing
/// failure would go on for ever with a dead token. Answers that are not 2xx keep
/// their usual class (a 5xx is passing: Zalo did not judge the token).
pub(crate) fn parse_token_answer(status: u16, body: &[u8]) -> Result<Value, ZaloFailure> {
    match parse_envelope(Api::OAuth, status, body) {
        // Whether it holds a pair is [`token_pair`]'s to judge, as needing an operator.
        Ok(json) => Ok(json),
        Err(failure) if (200..300).contains(&status) => Err(ZaloFailure {
            class: ErrorClass::NeedsOperator,
            detail: format!("token answer without an access token: {}", failure.detail),
            ..failure
        }),
        Err(failure) => Err(failure),
    }
}

/// Reads a number Zalo may have written as a string (`"480"`) or a number (`480`).
pub(crate) fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn accepted(api: Api, body: &Value, id_field: &str) -> Result<Accepted, ZaloFailure> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let msg_id = data
        .get(id_field)
        .or_else(|| data.get("msg_id"))
        .or_else(|| data.get("message_id"))
        .and_then(lenient_string);
    let Some(msg_id) = msg_id else {
        // Zalo said success but gave no id: it probably sent it; do not resend blindly.
        return Err(ZaloFailure {
            api,
            class: ErrorClass::Ambiguous,
            code: None,
            http_status: Some(200),
            transport: None,
            detail: format!("success without data.{id_field}"),
        });
    };
    let quota = data.get("quota").unwrap_or(&Value::Null);
    Ok(Accepted {
        msg_id,
        daily_quota: quota.get("dailyQuota").and_then(lenient_i64),
        remaining_quota: quota.get("remainingQuota").and_then(lenient_i64),
    })
}

/// The flat OAuth answer: `{"access_token", "refresh_token", "expires_in": "90000"}`.
#[derive(Deserialize)]
struct OAuthAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    expires_in: Value,
}

fn token_pair(body: &Value, now: DateTime<Utc>) -> Result<TokenPair, ZaloFailure> {
    let invalid = |detail: &str| ZaloFailure {
        api: Api::OAuth,
        // An answer without a token after a refresh may have consumed the refresh
        // token: only a human can tell.
        class: ErrorClass::NeedsOperator,
        code: None,
        http_status: Some(200),
        transport: None,
        detail: detail.to_owned(),
    };
    let answer: OAuthAnswer =
        serde_json::from_value(body.clone()).map_err(|_| invalid("unreadable token answer"))?;
    if answer.access_token.is_empty() || answer.refresh_token.is_empty() {
        return Err(invalid(
            "token answer without access_token or refresh_token",
        ));
    }
    // Zalo documents 25 h; fall back to that if the field is missing.
    let expires_in = lenient_i64(&answer.expires_in)
        .filter(|s| *s > 0)
        .unwrap_or(90_000);
    Ok(TokenPair {
        access_token: loa_platform::Secret::new(answer.access_token),
        refresh_token: loa_platform::Secret::new(answer.refresh_token),
        expires_at: now + chrono::Duration::seconds(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zns_success_yields_the_msg_id_and_the_string_typed_quota() {
        let body = br#"{"error":0,"message":"Success","data":{"msg_id":"6e84304c259208ce5181",
            "sent_time":"1640144305350","sending_mode":null,
            "quota":{"dailyQuota":"500","remainingQuota":"480"}}}"#;
        let data = parse_envelope(Api::Zns, 200, body).unwrap();
        let ok = accepted(Api::Zns, &data, "msg_id").unwrap();
        assert_eq!(ok.msg_id, "6e84304c259208ce5181");
        assert_eq!(ok.daily_quota, Some(500));
        assert_eq!(ok.remaining_quota, Some(480));
    }

    #[test]
    fn an_oa_success_yields_the_message_id() {
        let body = br#"{"error":0,"message":"Success","data":{"message_id":"63ecf43f0df7dba892e6","user_id":"1"}}"#;
        let data = parse_envelope(Api::OaTemplate, 200, body).unwrap();
        assert_eq!(
            accepted(Api::OaTemplate, &data, "message_id")
                .unwrap()
                .msg_id,
            "63ecf43f0df7dba892e6"
        );
    }

    #[test]
    fn an_error_inside_http_200_is_classified_with_its_code_and_message() {
        let f = parse_envelope(
            Api::Zns,
            200,
            br#"{"error":-118,"message":"Zalo account not existed"}"#,
        )
        .unwrap_err();
        assert_eq!(f.class, ErrorClass::PermanentRecipient);
        assert_eq!(f.code, Some(-118));
        assert_eq!(f.reason(), "zalo error -118: Zalo account not existed");
        // The code as a string.
        let f = parse_envelope(
            Api::Zns,
            200,
            br#"{"error":"-124","message":"Access token invalid"}"#,
        )
        .unwrap_err();
        assert_eq!(f.class, ErrorClass::RefreshToken);
    }

    #[test]
    fn html_and_server_errors_are_transient_and_401_refreshes() {
        let f = parse_envelope(Api::Zns, 502, b"<html>Bad gateway</html>").unwrap_err();
        assert_eq!(
            (f.class, f.code, f.http_status),
            (ErrorClass::Transient, None, Some(502))
        );
        let f = parse_envelope(Api::Zns, 200, b"<html>maintenance</html>").unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        let f = parse_envelope(Api::Zns, 401, b"").unwrap_err();
        assert_eq!(f.class, ErrorClass::RefreshToken);
    }

    #[test]
    fn a_success_without_a_message_id_is_ambiguous() {
        let data = parse_envelope(
            Api::Zns,
            200,
            br#"{"error":0,"message":"Success","data":{}}"#,
        )
        .unwrap();
        assert_eq!(
            accepted(Api::Zns, &data, "msg_id").unwrap_err().class,
            ErrorClass::Ambiguous
        );
    }

    #[test]
    fn the_flat_oauth_answer_yields_a_pair_with_a_string_typed_lifetime() {
        let now = Utc::now();
        let body = serde_json::json!({"access_token": "acc-xyz", "refresh_token": "ref-xyz", "expires_in": "90000"});
        let data = parse_envelope(Api::OAuth, 200, body.to_string().as_bytes()).unwrap();
        let pair = token_pair(&data, now).unwrap();
        assert_eq!(pair.access_token.expose(), "acc-xyz");
        assert_eq!(pair.refresh_token.expose(), "ref-xyz");
        assert_eq!(pair.expires_at, now + chrono::Duration::hours(25));
        assert!(!format!("{pair:?}").contains("xyz"), "tokens never print");
    }

    #[test]
    fn a_token_answer_without_tokens_needs_an_operator_whatever_its_shape() {
        for body in [
            &b""[..],
            b"{}",
            br#"{"error":0,"message":"Success"}"#,
            br#"{"access_token":"acc-xyz"}"#,
            br#"{"error":-1,"message":"Unknown"}"#,
            b"[]",
            b"<html>maintenance</html>",
        ] {
            let failure = parse_token_answer(200, body)
                .and_then(|json| token_pair(&json, Utc::now()))
                .unwrap_err();
            assert_eq!(
                failure.class,
                ErrorClass::NeedsOperator,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_token_endpoint_that_did_not_answer_is_still_passing() {
        let f = parse_token_answer(502, b"<html>Bad gateway</html>").unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        let body = br#"{"access_token":"a","refresh_token":"r","expires_in":"90000"}"#;
        assert!(parse_token_answer(200, body)
            .and_then(|json| token_pair(&json, Utc::now()))
            .is_ok());
    }

    #[test]
    fn a_refused_refresh_token_needs_an_operator() {
        let body = br#"{"error":-14014,"error_name":"Invalid refresh token","error_reason":"","ref_doc":""}"#;
        let f = parse_envelope(Api::OAuth, 200, body).unwrap_err();
        assert_eq!(f.class, ErrorClass::NeedsOperator);
        assert_eq!(f.reason(), "zalo error -14014: Invalid refresh token");
    }
}
