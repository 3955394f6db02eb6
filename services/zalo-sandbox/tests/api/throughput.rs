//! A rough throughput check of the hot send path (client, sandbox and webhook receiver
//! share the machine). Run with
//! `cargo test -p loa-zalo-sandbox --release --test api throughput -- --ignored --nocapture`.

use crate::helpers::{spawn_app_with_receiver, test_settings, PHONE};
use futures_util::{stream, StreamExt};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand with --release"]
async fn the_send_path_sustains_thousands_of_requests_per_second() {
    let (app, _receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    let token = app.access_token().await;
    let body = app.zns_body(PHONE, "bench");
    let total = 20_000;

    let started = Instant::now();
    let accepted = stream::iter(0..total)
        .map(|_| app.send_zns(&token, &body))
        .buffer_unordered(64)
        .filter(|a| std::future::ready(a["error"] == 0))
        .count()
        .await;
    let elapsed = started.elapsed();

    let rate = f64::from(total) / elapsed.as_secs_f64();
    println!("{total} sends in {elapsed:?}: {rate:.0} requests/s");
    assert_eq!(accepted, total as usize);
    assert!(rate > 2_000.0, "{rate:.0} requests/s");
    app.wait_webhooks_sent(u64::from(total as u32), Duration::from_secs(30))
        .await;
}
