//! Intake's OpenAPI document, served at `/openapi.json` and committed as
//! `docs/api/intake.openapi.json`. To document a new endpoint: `#[utoipa::path]` on
//! its handler, and its name in `paths(...)` below.

use crate::routes;
use loa_contracts::{event::schemas_for, DossierEvent};
use serde_json::{json, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loa intake",
        description = "The front door for one-stop systems: dossier events in, confirmed by RabbitMQ. See docs/integration.md."
    ),
    paths(routes::post_event, routes::post_batch)
)]
struct IntakeApi;

/// The whole document: the routes above, the ops endpoints, and the event's JSON
/// Schema (generated from [`DossierEvent`], as `docs/schema/dossier-event.v1.json` is).
pub fn document() -> Value {
    let mut schemas = schemas_for::<DossierEvent>("#/components/schemas/");
    // `post_batch` reads `{"events": [...]}` or a bare array, and judges each item on
    // its own (an item that is no event is refused in its own result, `207`).
    let events = json!({"type": "array", "minItems": 1,
        "items": {"$ref": "#/components/schemas/DossierEvent"}});
    schemas.insert(
        "DossierEventBatch".to_owned(),
        json!({
            "description": "A batch: `{\"events\": [...]}`, or a bare array of events.",
            "oneOf": [
                {"type": "object", "required": ["events"], "properties": {"events": events}},
                events,
            ]
        }),
    );
    loa_platform::http::openapi::document(IntakeApi::openapi(), schemas)
}
