//! The tracker's OpenAPI document, served at `/openapi.json` and committed as
//! `docs/api/tracker.openapi.json`. To document a new endpoint: `#[utoipa::path]` on
//! its handler, and its name in `paths(...)` below.

use crate::routes::{admin, api, lookup, rating, stats};
use serde_json::Value;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loa tracker",
        description = "Dossiers as their events made them: the admin API, receipt QR codes, the public lookup page with its rating form and electronic result downloads, the statistics, a citizen's erasure request."
    ),
    paths(
        api::get_dossier,
        api::get_qr,
        admin::search_dossiers,
        admin::overview,
        admin::erase_subject,
        lookup::lookup_page,
        lookup::download_result,
        rating::submit_rating,
        stats::get_stats,
    )
)]
struct TrackerApi;

/// The whole document: the routes above and the ops endpoints.
pub fn document() -> Value {
    loa_platform::http::openapi::document(TrackerApi::openapi(), Default::default())
}
