//! The committed JSON Schema matches the Rust types.

#[test]
fn the_committed_dossier_event_schema_is_current() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema/dossier-event.v1.json");
    let generated = loa_contracts::event::json_schema();
    if std::env::var_os("LOA_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/schema/dossier-event.v1.json is stale: run `LOA_UPDATE_SCHEMA=1 cargo test --test e2e schema`"
    );
}
