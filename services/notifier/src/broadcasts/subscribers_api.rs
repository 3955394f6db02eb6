//! The audience's HTTP API (tenant admin token; only the caller's tenant is touched):
//!
//! - `POST /v1/subscribers/import`: `application/x-ndjson` or `text/csv` (see
//!   [`super::audience`]), read as it streams in: lines are parsed one at a time and
//!   written in batches of [`BATCH_LINES`], up to [`IN_FLIGHT`] at a time, so memory
//!   stays flat whatever the size. It
//!   answers `200 {"imported", "updated", "rejected": [{"line", "field", "message"}],
//!   "rejected_total"}`; the list names the first [`MAX_LISTED`] bad lines. A bad line
//!   never stops the import; a bad CSV header (nothing is written then) is a `422`.
//!   The body is not held to the server's whole-body deadline (a million lines take
//!   longer than 30 s to write): it must only keep flowing, each chunk within the
//!   body timeout of the one before ([`serve::BodyDeadline`]).
//! - `POST /v1/subscribers/opt-out` with `{"phone"}` or `{"zalo_user_id"}`: the
//!   citizen gets no later broadcast, whatever is imported afterwards.
//! - `POST /v1/subscribers/opt-in` with `{"phone"}` or `{"zalo_user_id"}`: the citizen
//!   agreed (again) to hear announcements: a former opt-out is lifted, and later
//!   broadcasts reach them.

use super::{
    audience::{self, CsvColumns, Format, Rejection},
    subscribers::{self, Batch, Citizen},
};
use axum::{
    body::Body,
    extract::{Extension, State},
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use loa_contracts::PhoneNumber;
use loa_platform::{
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody, JsonRefusals},
        serve, ApiError, JsonBody,
    },
    LiveTenants,
};
use serde::Serialize;
use serde_json::Value;
use std::{collections::VecDeque, sync::Arc};

/// Lines written per transaction.
pub(crate) const BATCH_LINES: usize = 10_000;
/// Batches written at the same time, on as many connections (see [`Importer`]).
pub(crate) const IN_FLIGHT: usize = 2;
/// Bad lines listed in an import's answer (all are counted).
pub(crate) const MAX_LISTED: usize = 1_000;

/// What the subscriber routes share.
#[derive(Clone)]
pub(crate) struct SubscribersState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants (admin tokens), as the tenants file says now.
    pub tenants: LiveTenants,
}

/// The subscriber routes.
pub(crate) fn router(state: SubscribersState) -> Router {
    Router::new()
        .route("/v1/subscribers/import", post(import))
        .route("/v1/subscribers/opt-out", post(opt_out))
        .route("/v1/subscribers/opt-in", post(opt_in))
        .with_state(state)
}

/// An import's answer.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct ImportResult {
    /// New subscribers.
    imported: u64,
    /// Subscribers already known, changed by their line.
    updated: u64,
    /// The first bad lines (at most 1000), each naming its field.
    rejected: Vec<Rejection>,
    /// Every bad line, listed or not.
    rejected_total: u64,
}

/// Reads an import body's lines as they arrive and writes them in batches, up to
/// [`IN_FLIGHT`] at a time on as many connections while the next is read: PostgreSQL's
/// work on one batch (its upserts and five indexes) keeps one core busy, so a second
/// batch uses the other. Two batches are written at the same time only when no row
/// can be written by both ([`Batch::may_run_beside`]); otherwise the later one waits
/// for the earlier one to commit, so a later line for the same citizen still wins.
/// Memory is `IN_FLIGHT + 1` batches.
struct Importer<'a> {
    pool: &'a Pool,
    tenant: &'a str,
    csv: bool,
    format: Option<Format>,
    line: usize,
    batch: Batch,
    /// The batches being written, oldest first.
    writing: VecDeque<Writing>,
    /// Whether a batch was committed (asynchronously): the import then ends with
    /// [`subscribers::make_durable`].
    wrote: bool,
    result: ImportResult,
}

/// A batch being written, and its lines (to tell whether the next may run beside it).
struct Writing {
    batch: Arc<Batch>,
    task: tokio::task::JoinHandle<anyhow::Result<subscribers::Written>>,
}

impl Importer<'_> {
    fn reject(&mut self, rejection: Rejection) {
        self.result.rejected_total += 1;
        if self.result.rejected.len() < MAX_LISTED {
            self.result.rejected.push(rejection);
        }
    }

    /// Takes the next line (without its `\n`).
    async fn take(&mut self, raw: &[u8]) -> Result<(), ApiError> {
        self.line += 1;
        let number = self.line;
        let Ok(text) = std::str::from_utf8(raw) else {
            self.reject(rejection(number, "line", "not UTF-8 text"));
            return Ok(());
        };
        let Some(format) = &self.format else {
            if text.trim().is_empty() {
                return Ok(());
            }
            // The first line of a CSV import is its header.
            let columns = CsvColumns::from_header(text.trim_end_matches('\r')).map_err(|m| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_header", m)
                    .with_field("header")
            })?;
            self.format = Some(Format::Csv(columns));
            return Ok(());
        };
        match audience::read_line(format, number, text) {
            None => {}
            Some(Err(r)) => self.reject(r),
            Some(Ok(line)) => {
                if let Err(line) = self.batch.push(line) {
                    self.flush().await?;
                    let _ = self.batch.push(line);
                }
                if self.batch.len() >= BATCH_LINES {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    /// A line longer than the limit: rejected, its bytes never kept.
    fn too_long(&mut self) {
        self.line += 1;
        let number = self.line;
        self.reject(rejection(
            number,
            "line",
            format!("a line has at most {} bytes", audience::MAX_LINE_BYTES),
        ));
    }

    /// Starts writing the current batch, once a connection's turn is free and every
    /// batch it may not run beside has committed.
    async fn flush(&mut self) -> Result<(), ApiError> {
        let batch = Arc::new(std::mem::take(&mut self.batch));
        if batch.is_empty() {
            return Ok(());
        }
        while self.writing.len() >= IN_FLIGHT
            || self.writing.iter().any(|w| !batch.may_run_beside(&w.batch))
        {
            self.oldest_written().await?;
        }
        let (pool, tenant, lines) = (self.pool.clone(), self.tenant.to_owned(), batch.clone());
        self.writing.push_back(Writing {
            batch,
            task: tokio::spawn(
                async move { subscribers::import_batch(&pool, &tenant, &lines).await },
            ),
        });
        self.wrote = true;
        Ok(())
    }

    /// Waits for the oldest batch being written (if any) and counts it.
    async fn oldest_written(&mut self) -> Result<(), ApiError> {
        let Some(writing) = self.writing.pop_front() else {
            return Ok(());
        };
        let written = writing
            .task
            .await
            .map_err(|e| anyhow::anyhow!("an import batch's writer failed: {e}"))??;
        self.result.imported += written.imported;
        self.result.updated += written.updated;
        Ok(())
    }

    /// Writes what is left, waits for every batch, then for the disk: the answer
    /// follows this, so a `200` means every line is durable.
    async fn finish(&mut self) -> Result<(), ApiError> {
        self.flush().await?;
        while !self.writing.is_empty() {
            self.oldest_written().await?;
        }
        if self.wrote {
            subscribers::make_durable(self.pool).await?;
        }
        Ok(())
    }
}

fn rejection(line: usize, field: &str, message: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// `POST /v1/subscribers/import`.
#[utoipa::path(post, path = "/v1/subscribers/import", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(description = "One subscriber a line: NDJSON objects `{\"phone\"|\"zalo_user_id\", \"name\"?, \"tags\"?, \"announcements\"?}`, or CSV with a header line (docs/broadcasts.md)",
        content(
            (String = "application/x-ndjson"),
            (String = "text/csv", example = json!("phone,zalo_user_id,tags,announcements\n0912345678,,phuong-1,true\n")),
        )),
    responses(
        (status = 200, body = ImportResult, description = "Imported; bad lines are listed and counted, never stop the import"),
        (status = 400, body = ErrorBody, description = "The body broke off (`invalid_body`), or `invalid_header`"),
        (status = 408, body = ErrorBody, description = "The body stopped flowing (`body_timeout`)"),
        (status = 415, body = ErrorBody, description = "Neither `application/x-ndjson` nor `text/csv` (`unsupported_media_type`)"),
        (status = 422, body = ErrorBody, description = "A CSV body without a valid header line (`invalid_header`); nothing is written"),
        AdminRefusals,
    ))]
pub(crate) async fn import(
    State(state): State<SubscribersState>,
    deadline: Option<Extension<serve::BodyDeadline>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportResult>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    // Only an admin's body may take longer than the whole-body deadline.
    if let Some(Extension(deadline)) = deadline {
        deadline.renew_per_chunk();
    }
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let csv = match media.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => false,
        "text/csv" => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "an import is `application/x-ndjson` or `text/csv`",
            )
            .with_field("Content-Type"))
        }
    };
    let mut importer = Importer {
        pool: &state.pool,
        tenant: &tenant.id,
        csv,
        format: (!csv).then_some(Format::Ndjson),
        line: 0,
        batch: Batch::default(),
        writing: VecDeque::new(),
        wrote: false,
        result: ImportResult::default(),
    };
    let mut stream = body.into_data_stream();
    // The unfinished line; `skipping`: the current line is over the limit and is
    // being dropped up to its end.
    let mut pending: Vec<u8> = Vec::with_capacity(audience::MAX_LINE_BYTES);
    let mut skipping = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if serve::is_body_timeout(&e) {
                serve::body_timeout_error()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
                    .with_field("body")
            }
        })?;
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b'\n');
            let (part, more) = match end {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if !skipping {
                if pending.len() + part.len() > audience::MAX_LINE_BYTES + 1 {
                    skipping = true;
                    pending.clear();
                } else {
                    pending.extend_from_slice(part);
                }
            }
            match more {
                Some(after) => {
                    if skipping {
                        importer.too_long();
                        skipping = false;
                    } else {
                        let line = std::mem::take(&mut pending);
                        importer.take(&line).await?;
                        pending = line;
                        pending.clear();
                    }
                    rest = after;
                }
                None => rest = &[],
            }
        }
    }
    if skipping {
        importer.too_long();
    } else if !pending.is_empty() {
        importer.take(&pending).await?;
    }
    if importer.csv && importer.format.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_header",
            "a CSV import starts with a header: phone,zalo_user_id,tags,announcements",
        )
        .with_field("header"));
    }
    importer.finish().await?;
    let result = importer.result;
    tracing::info!(
        tenant = %tenant.id,
        imported = result.imported,
        updated = result.updated,
        rejected = result.rejected_total,
        "Subscribers imported."
    );
    Ok(Json(result))
}

/// `POST /v1/subscribers/opt-out`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OptedOut {
    opted_out: bool,
    /// Whether this changed anything (false: they had already opted out).
    changed: bool,
}

/// Who an opt-out or opt-in names: exactly one of `phone` and `zalo_user_id`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct CitizenRef {
    /// A phone number in any format intake accepts.
    phone: Option<String>,
    /// A Zalo user id (letters, digits, `_`, `-`; up to 64).
    zalo_user_id: Option<String>,
}

/// `POST /v1/subscribers/opt-out`.
#[utoipa::path(post, path = "/v1/subscribers/opt-out", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = CitizenRef, example = json!({"phone": "0912345678"})),
    responses(
        (status = 200, body = OptedOut, description = "The citizen gets no later broadcast"),
        JsonRefusals, AdminRefusals,
    ))]
pub(crate) async fn opt_out(
    State(state): State<SubscribersState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<OptedOut>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let citizen = citizen_of(&body)?;
    let client = state.pool.get().await.map_err(anyhow::Error::from)?;
    let changed = subscribers::opt_out(&client, &tenant.id, &citizen).await?;
    tracing::info!(tenant = %tenant.id, changed, "A citizen was opted out of broadcasts.");
    Ok(Json(OptedOut {
        opted_out: true,
        changed,
    }))
}

/// `POST /v1/subscribers/opt-in`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OptedIn {
    opted_in: bool,
    /// Whether this changed anything (false: they were already opted in).
    changed: bool,
}

/// `POST /v1/subscribers/opt-in`.
#[utoipa::path(post, path = "/v1/subscribers/opt-in", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = CitizenRef, example = json!({"zalo_user_id": "3512873524511234567"})),
    responses(
        (status = 200, body = OptedIn, description = "Later broadcasts reach the citizen"),
        JsonRefusals, AdminRefusals,
    ))]
pub(crate) async fn opt_in(
    State(state): State<SubscribersState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<OptedIn>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let citizen = citizen_of(&body)?;
    let client = state.pool.get().await.map_err(anyhow::Error::from)?;
    let changed = subscribers::opt_in(&client, &tenant.id, &citizen).await?;
    tracing::info!(tenant = %tenant.id, changed, "A citizen was opted in to announcements.");
    Ok(Json(OptedIn {
        opted_in: true,
        changed,
    }))
}

/// Who an opt-out or opt-in body names: exactly one of `phone` and `zalo_user_id`.
fn citizen_of(body: &Value) -> Result<Citizen, ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    };
    if !body.is_object() {
        return Err(invalid("body", "the body is a JSON object"));
    }
    let text = |field: &str| match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        _ => Err(invalid(field, "a non-empty string")),
    };
    match (text("phone")?, text("zalo_user_id")?) {
        (Some(phone), None) => {
            let phone = PhoneNumber::parse(&phone).map_err(|m| invalid("phone", m))?;
            Ok(Citizen::Phone(phone.as_str().to_owned()))
        }
        (None, Some(user)) => {
            if user.len() > 64
                || !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    "zalo_user_id",
                    "a Zalo user id is up to 64 letters and digits",
                ));
            }
            Ok(Citizen::ZaloUser(user))
        }
        (Some(_), Some(_)) => Err(invalid(
            "zalo_user_id",
            "name the citizen by `phone` or by `zalo_user_id`, not both",
        )),
        (None, None) => Err(invalid("phone", "`phone` or `zalo_user_id` is required")),
    }
}
