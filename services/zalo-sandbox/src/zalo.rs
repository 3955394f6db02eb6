//! The Zalo answer envelope and the error codes the sandbox answers with.
//!
//! Zalo answers HTTP 200 to almost everything: success is `{"error": 0, "message":
//! "Success", "data": …}`, failure `{"error": <negative>, "message": "…"}` without data.
//! OAuth failures use `{"error", "error_name", "error_description"}` instead.

use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Error codes, named after what they mean to a client.
pub mod codes {
    /// OA and ZNS: the app called the API too often.
    pub const RATE_LIMITED: i64 = -32;
    /// ZNS: unknown error, try again later.
    pub const ZNS_UNKNOWN: i64 = -100;
    /// ZNS: phone number invalid.
    pub const INVALID_PHONE: i64 = -108;
    /// ZNS: template id invalid (not registered for this app).
    pub const INVALID_TEMPLATE: i64 = -109;
    /// ZNS: template data empty.
    pub const TEMPLATE_DATA_EMPTY: i64 = -111;
    /// ZNS: template data invalid (not an object).
    pub const TEMPLATE_DATA_INVALID: i64 = -112;
    /// ZNS: a parameter value is longer than the template allows.
    pub const PARAM_TOO_LONG: i64 = -1121;
    /// ZNS: a required parameter is missing or empty.
    pub const PARAM_MISSING: i64 = -1122;
    /// ZNS: the body is empty.
    pub const BODY_EMPTY: i64 = -121;
    /// ZNS: the body is not JSON.
    pub const BODY_NOT_JSON: i64 = -122;
    /// ZNS: access token invalid or expired.
    pub const ZNS_INVALID_TOKEN: i64 = -124;
    /// ZNS: no sending between 22:00 and 06:00 (Asia/Ho_Chi_Minh).
    pub const ZNS_NIGHT: i64 = -133;
    /// ZNS: the OA's daily quota is used up.
    pub const DAILY_QUOTA: i64 = -144;
    /// A daily quota of one kind of message spent: the sandbox's answer to promotions
    /// beyond their share of the day's quota (Zalo does not document that one's code).
    pub const KIND_DAILY_QUOTA: i64 = -147;
    /// The citizen had their promotions for the month.
    pub const USER_MONTHLY_PROMOTIONS: i64 = -1471;
    /// OA: sending failed.
    pub const OA_SEND_FAILED: i64 = -200;
    /// OA: a field of the request is invalid.
    pub const OA_INVALID_FIELD: i64 = -201;
    /// OA: a parameter exceeds its limit (text over 2,000 characters).
    pub const OA_PARAM_LIMIT: i64 = -210;
    /// OA: the user does not follow the OA.
    pub const NOT_FOLLOWER: i64 = -213;
    /// OA: access token invalid or expired.
    pub const OA_INVALID_TOKEN: i64 = -216;
    /// OA: a consultation message to a user whose last interaction with the OA is
    /// more than 7 days old.
    pub const NOT_INTERACTED: i64 = -230;
    /// OA: no template sending at night.
    pub const OA_NIGHT: i64 = -234;
    /// OAuth: a parameter is missing or invalid.
    pub const OAUTH_INVALID_PARAM: i64 = -14001;
    /// OAuth: unknown app id or wrong secret key.
    pub const OAUTH_INVALID_APP: i64 = -14002;
    /// OAuth: the refresh token is unknown, forged or already used.
    pub const OAUTH_INVALID_REFRESH_TOKEN: i64 = -14014;
}

/// A family of Zalo APIs: faults and limits are configured per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// ZNS / ZBS template by phone (`business.openapi.zalo.me`).
    Zns,
    /// OA messages (`openapi.zalo.me/v3.0/oa/…`).
    Oa,
    /// Token refresh (`oauth.zaloapp.com/v4/oa/access_token`).
    Oauth,
}

impl Api {
    /// Parses `zns`, `oa` or `oauth`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "zns" => Some(Self::Zns),
            "oa" => Some(Self::Oa),
            "oauth" => Some(Self::Oauth),
            _ => None,
        }
    }

    /// The lower-case name (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zns => "zns",
            Self::Oa => "oa",
            Self::Oauth => "oauth",
        }
    }
}

/// How an accepted message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// `POST /message/template`: ZNS template by phone.
    Zns,
    /// `POST /v3.0/oa/message/cs`: OA consultation text to a follower.
    OaCs,
    /// `POST /v3.0/oa/message/template`: ZBS template by user id.
    OaTemplate,
}

impl Channel {
    /// The API family the channel belongs to.
    pub fn api(self) -> Api {
        match self {
            Self::Zns => Api::Zns,
            Self::OaCs | Self::OaTemplate => Api::Oa,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zns => "zns",
            Self::OaCs => "oa_cs",
            Self::OaTemplate => "oa_template",
        }
    }
}

/// A refusal in Zalo's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZaloError {
    /// Negative Zalo error code.
    pub code: i64,
    /// Zalo's message for it.
    pub message: Cow<'static, str>,
}

impl ZaloError {
    /// An error with Zalo's standard message for `code`.
    pub fn code(code: i64) -> Self {
        Self {
            code,
            message: Cow::Borrowed(default_message(code)),
        }
    }

    /// An error with a specific message.
    pub fn new(code: i64, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The answer body.
    pub fn body(&self) -> Value {
        json!({"error": self.code, "message": self.message})
    }

    /// The OAuth-shaped answer body.
    pub fn oauth_body(&self) -> Value {
        json!({
            "error": self.code,
            "error_name": oauth_error_name(self.code),
            "error_description": self.message,
        })
    }
}

/// The success envelope around `data`.
pub fn success(data: Value) -> Value {
    json!({"error": 0, "message": "Success", "data": data})
}

/// Zalo's message for a code (injected faults use it too).
pub fn default_message(code: i64) -> &'static str {
    use codes::*;
    match code {
        RATE_LIMITED => "Your application reached limit call api",
        ZNS_UNKNOWN => "Unknown error, please try again later",
        -101 => "Application is invalid",
        INVALID_PHONE => "Phone number invalid",
        INVALID_TEMPLATE => "Template ID invalid",
        TEMPLATE_DATA_EMPTY => "Template data empty",
        TEMPLATE_DATA_INVALID => "Template data invalid",
        PARAM_TOO_LONG => "Parameter exceeds the maximum length",
        PARAM_MISSING => "Template data is missing a parameter",
        -114 => "User is inactive or has rejected ZNS",
        -115 => "Out of quota: ZNS balance insufficient",
        -118 => "Zalo account not existed",
        BODY_EMPTY => "Body is empty",
        BODY_NOT_JSON => "Body is not JSON",
        ZNS_INVALID_TOKEN => "Access token invalid",
        -131 => "ZNS template not approved",
        ZNS_NIGHT => "ZNS messages cannot be sent at night (10:00PM - 6:00AM)",
        DAILY_QUOTA => "OA has exceeded its daily ZNS quota",
        OA_SEND_FAILED => "Send message failed",
        OA_INVALID_FIELD => "Parameter is invalid",
        OA_PARAM_LIMIT => "Parameter exceeds allowable limit",
        NOT_FOLLOWER => "User has not followed OA",
        OA_INVALID_TOKEN => "Access token is invalid",
        -220 => "access_token is expired or removed",
        -230 => "User has not interacted with the OA in the past 7 days",
        OA_NIGHT => "This message cannot be sent at night (10:00PM - 6:00AM)",
        OAUTH_INVALID_PARAM => "Invalid parameter",
        OAUTH_INVALID_APP => "Invalid appId or secret key",
        OAUTH_INVALID_REFRESH_TOKEN => "Invalid refresh token",
        _ => "Injected sandbox fault",
    }
}

fn oauth_error_name(code: i64) -> &'static str {
    match code {
        codes::OAUTH_INVALID_PARAM => "Invalid parameter",
        codes::OAUTH_INVALID_APP => "Invalid appId",
        codes::OAUTH_INVALID_REFRESH_TOKEN => "Invalid refresh token",
        _ => "Internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_zalo_shapes() {
        let e = ZaloError::code(codes::ZNS_INVALID_TOKEN);
        assert_eq!(
            e.body(),
            json!({"error": -124, "message": "Access token invalid"})
        );
        let o = ZaloError::new(codes::OAUTH_INVALID_REFRESH_TOKEN, "used");
        assert_eq!(o.oauth_body()["error_name"], "Invalid refresh token");
        assert_eq!(success(json!({}))["error"], 0);
    }
}
