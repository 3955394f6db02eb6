//! Reading fields of a webhook's JSON body: Zalo sends ids, times and numbers as
//! strings (sometimes as numbers), so every reader takes both.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use loa_platform::http::ApiError;
use serde_json::Value;

/// A string (or number) field at `path`, trimmed and without invisible or
/// text-direction characters (what a citizen writes reaches the console, and a
/// webhook cannot be refused for its text: [`loa_contracts::text`]); `None` when
/// absent or blank.
pub(crate) fn text_at(body: &Value, path: &[&str]) -> Option<String> {
    let mut v = body;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => {
            let s = loa_contracts::text::strip_invisible(s);
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field that must be there: a 400 naming it (`message.msg_id`) otherwise.
pub(crate) fn required(body: &Value, path: &[&str]) -> Result<String, ApiError> {
    text_at(body, path).ok_or_else(|| {
        let field = path.join(".");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("`{field}` is required"),
        )
        .with_field(field)
    })
}

/// Epoch milliseconds written as a string.
pub(crate) fn millis(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}
