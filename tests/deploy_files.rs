//! `docker-compose.yml` and `deploy/k8s` are for users: no Docker engine or cluster runs
//! here, so they are validated structurally (scripts/check-deploy).

#[test]
fn compose_and_kubernetes_files_are_consistent_with_the_loa_commands() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-deploy");
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
