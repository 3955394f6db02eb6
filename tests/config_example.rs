//! The sample configuration documents every setting with its default value.

use loa::settings::Settings;

#[test]
fn the_example_config_loads_and_states_the_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/loa.example.toml");

    let from_file = Settings::load(Some(&path)).expect("the example config loads");
    let defaults = Settings::load(None).expect("the defaults load");

    assert_eq!(
        format!("{:?}", from_file.common),
        format!("{:?}", defaults.common)
    );
    assert_eq!(
        format!("{:?}", from_file.services),
        format!("{:?}", defaults.services)
    );
}

#[test]
fn the_example_tenants_file_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/tenants.example.toml");

    let tenants = loa_platform::Tenants::load(Some(&path), "http://unused")
        .expect("the example tenants file loads");

    let t = tenants.get("dong-nai").expect("the example tenant");
    assert_eq!(
        t.zalo.templates.len(),
        loa_contracts::NotificationKind::ALL.len()
    );
    assert!(tenants.source_by_token("CHANGE-ME-source-token").is_some());
}
