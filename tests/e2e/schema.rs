//! The committed JSON Schema and OpenAPI documents match the Rust types and handlers.

use std::path::Path;

/// Compares `generated` with the committed file at `relative` (rewriting it first
/// when `LOA_UPDATE_SCHEMA` is set).
fn assert_committed(relative: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var_os("LOA_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} is stale: run `LOA_UPDATE_SCHEMA=1 cargo test --test e2e schema`"
    );
}

#[test]
fn the_committed_dossier_event_schema_is_current() {
    assert_committed(
        "docs/schema/dossier-event.v1.json",
        &loa_contracts::event::json_schema(),
    );
}

#[test]
fn the_committed_asyncapi_document_is_current() {
    use loa_platform::amqp::asyncapi;
    assert_committed("docs/asyncapi.yaml", &asyncapi::yaml(&asyncapi::document()));
}

#[test]
fn the_asyncapi_document_names_every_queue_exchange_and_header_loa_uses() {
    use loa_platform::amqp::{consumer, topology};
    let text = loa_platform::amqp::asyncapi::yaml(&loa_platform::amqp::asyncapi::document());
    for name in [
        topology::EX_INGRESS,
        topology::EX_EVENTS,
        topology::EX_NOTIFICATIONS,
        topology::EX_DEAD,
        topology::Q_INGRESS,
        topology::Q_TRACKER_EVENTS,
        topology::Q_NOTIFIER_TRANSACTIONAL,
        topology::Q_NOTIFIER_BROADCAST,
        topology::Q_DEAD,
        topology::H_TRACEPARENT,
        topology::H_ATTEMPT,
        topology::H_REASON,
        topology::H_SOURCE_QUEUE,
        consumer::H_TENANT,
        consumer::H_SOURCE,
        consumer::H_SOURCE_TOKEN,
        "dossier_event.v1",
        "dossier_event_batch.v1",
        "notification_request.v1",
        "notification_batch.v1",
        topology::EX_CITIZEN,
        topology::Q_TRACKER_CITIZEN,
        "citizen_feedback.v1",
    ] {
        assert!(
            text.contains(&format!("\"{name}\"")) || text.contains(&format!("{name}:")),
            "docs/asyncapi.yaml lacks {name}"
        );
    }
}

/// Every message the services publish parses as its envelope and carries the `type`
/// tag the document's payload schema for it requires.
#[test]
fn the_asyncapi_payloads_carry_the_tags_the_envelopes_serialise() {
    let doc = loa_platform::amqp::asyncapi::document();
    let messages = &doc["components"]["messages"];
    for (message, tag) in [
        ("dossierEvent", "dossier_event.v1"),
        ("dossierEventBatch", "dossier_event_batch.v1"),
        ("notificationRequest", "notification_request.v1"),
        ("notificationBatch", "notification_batch.v1"),
        ("citizenFeedback", "citizen_feedback.v1"),
    ] {
        let payload = messages[message]["payload"].to_string();
        assert!(
            payload.contains(&format!("\"{tag}\"")),
            "{message} does not require type {tag}"
        );
    }
}

#[test]
fn the_committed_openapi_documents_are_current() {
    use loa_platform::http::openapi::pretty;
    assert_committed(
        "docs/api/intake.openapi.json",
        &pretty(&loa_intake::openapi::document()),
    );
    assert_committed(
        "docs/api/tracker.openapi.json",
        &pretty(&loa_tracker::openapi::document()),
    );
    assert_committed(
        "docs/api/notifier.openapi.json",
        &pretty(&loa_notifier::openapi::document()),
    );
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("$ref", Some(target)) => out.push(target),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_in_the_openapi_documents_resolves() {
    for doc in [
        loa_intake::openapi::document(),
        loa_tracker::openapi::document(),
        loa_notifier::openapi::document(),
    ] {
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is not a component schema"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{} refers to {target}, which it lacks",
                doc["info"]["title"]
            );
        }
    }
}

#[test]
fn intake_documents_its_events_with_the_committed_event_schema() {
    let doc = loa_intake::openapi::document();
    let committed: serde_json::Value =
        serde_json::from_str(&loa_contracts::event::json_schema()).unwrap();
    let event = &doc["components"]["schemas"]["DossierEvent"];
    assert_eq!(event["required"], committed["required"]);
    assert_eq!(
        event["properties"].as_object().map(|p| p.len()),
        committed["properties"].as_object().map(|p| p.len())
    );
    let body =
        &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/DossierEvent");
}
