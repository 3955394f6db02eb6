//! The compose form's live audience count. `GET /admin/broadcasts/audience?tags=`
//! answers JSON for the console's own script ([`SCRIPT_PATH`], allowed by the pages'
//! `script-src 'self'`), which asks it while an admin types a tag expression:
//! `{"audience": n}`, or `{"error", "position"}` for an expression that does not parse
//! (422), in Vietnamese. Read-only and for the session's tenant only (the notifier's
//! `GET /v1/broadcasts/audience` with that tenant); an account that may not compose
//! (a viewer) is refused like the compose page refuses it. Without the script the
//! compose form's "Xem trước" button gives the same count.

use crate::{
    backend::{BackendError, Service},
    web::{AppState, SignedIn},
};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Path of the compose form's script.
pub const SCRIPT_PATH: &str = "/admin/assets/compose.js";

/// The script itself (`src/assets/compose.js`): no framework, nothing from elsewhere.
const SCRIPT: &str = include_str!("../assets/compose.js");

/// `GET /admin/assets/compose.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// The notifier's "… at position 12" split into what is wrong and where.
fn split_position(message: &str) -> (&str, Option<usize>) {
    match message.rsplit_once(" at position ") {
        Some((what, at)) => match at.trim().parse() {
            Ok(position) => (what, Some(position)),
            Err(_) => (message, None),
        },
        None => (message, None),
    }
}

/// `GET /admin/broadcasts/audience?tags=`: everyone reachable without `tags`.
pub async fn count(
    State(state): State<AppState>,
    signed_in: SignedIn,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    if signed_in.require_admin().is_err() {
        return answer(
            StatusCode::FORBIDDEN,
            json!({"error": "Tài khoản chỉ có quyền xem, không soạn được thông báo."}),
        );
    }
    let Ok(Query(query)) = query else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "Biểu thức nhãn không đọc được.", "field": "tags"}),
        );
    };
    let params: Vec<(&str, String)> = query
        .get("tags")
        .map(|tags| vec![("tags", tags.clone())])
        .unwrap_or_default();
    let counted: Result<Value, BackendError> = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/broadcasts/audience",
            &params,
        )
        .await;
    match counted {
        Ok(counted) => answer(
            StatusCode::OK,
            json!({"audience": counted["audience"].as_i64().unwrap_or(0)}),
        ),
        Err(BackendError::Refused { message, field, .. }) if field.as_deref() == Some("tags") => {
            let (what, position) = split_position(&message);
            let error = match position {
                Some(at) => format!("Biểu thức nhãn không hợp lệ ở ký tự thứ {at}: {what}"),
                None => format!("Biểu thức nhãn không hợp lệ: {what}"),
            };
            answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": error, "position": position, "field": "tags"}),
            )
        }
        Err(BackendError::Refused { .. } | BackendError::NotFound) => answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "Không đếm được số người nhận cho biểu thức này.", "field": "tags"}),
        ),
        Err(BackendError::Unavailable(e)) => {
            tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to count a broadcast audience for the compose form.");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "Tạm thời chưa đếm được số người nhận."}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notifiers_position_is_read_off_its_message() {
        assert_eq!(
            split_position("expected `)` at position 41"),
            ("expected `)`", Some(41))
        );
        assert_eq!(
            split_position("the expression is empty"),
            ("the expression is empty", None)
        );
    }
}
