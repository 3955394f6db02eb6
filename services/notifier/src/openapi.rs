//! The notifier's OpenAPI document, served at `/openapi.json` and committed as
//! `docs/api/notifier.openapi.json`. To document a new endpoint: `#[utoipa::path]` on
//! its handler, and its name in `paths(...)` below.

use crate::{
    broadcasts::{api as broadcasts, subscribers_api as subscribers, subscribers_search},
    dead_letters,
    limits::pause,
    personal_data::erasure,
    routes::{admin, deliveries, webhook},
};
use serde_json::Value;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loa notifier",
        description = "Deliveries to Zalo and what admins do with them: deliveries, pauses, dead letters, broadcasts and their subscribers, citizens' messages, the OA's authorisation, a citizen's erasure request, and Zalo's webhook."
    ),
    paths(
        deliveries::list_deliveries,
        admin::overview,
        admin::resend,
        admin::cancel,
        admin::citizen_messages,
        admin::authorize,
        pause::status_handler,
        pause::resume_handler,
        dead_letters::list_handler,
        dead_letters::replay_handler,
        broadcasts::create,
        broadcasts::list,
        broadcasts::audience,
        broadcasts::show,
        broadcasts::pause,
        broadcasts::resume,
        broadcasts::cancel,
        subscribers::import,
        subscribers::opt_out,
        subscribers::opt_in,
        subscribers_search::search,
        erasure::erase_handler,
        webhook::receive,
    )
)]
struct NotifierApi;

/// The whole document: the routes above and the ops endpoints.
pub fn document() -> Value {
    loa_platform::http::openapi::document(NotifierApi::openapi(), Default::default())
}
