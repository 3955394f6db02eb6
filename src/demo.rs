//! `loa demo`: a small story a newcomer can watch. Dossiers are filed and move on; each
//! event goes through intake's HTTP API like an upstream one-stop system's would, and
//! what each citizen received at the Zalo sandbox is printed with its lookup link.
//!
//! Every run tells the whole story again: its dossiers get the next free numbers of
//! the day at their agency (`<agency>-<yymmdd>-<nnnn>`, as a one-stop desk numbers
//! them), found by asking the tracker. The services' log lines wait while the story
//! is printed ([`StoryLogs`]), so they never cut through it.

use crate::{runner, settings::Settings};
use anyhow::Context;
use chrono::{Duration, SecondsFormat, Utc};
use loa_contracts::{phone::mask_phone, time::vietnam};
use serde_json::{json, Value};
use std::{
    io::Write,
    sync::{Arc, Mutex},
};

/// One step of the story.
struct Step {
    caption: &'static str,
    event: Value,
}

/// The ward's agency code, where two of the story's dossiers are filed.
const WARD: &str = "000.00.06.H56";
/// The land registration office's agency code.
const LAND_OFFICE: &str = "000.00.10.H56";

/// The dossier codes of one telling of the story.
struct Codes {
    marriage: String,
    birth: String,
    land: String,
}

fn story(run_id: &str, codes: &Codes) -> Vec<Step> {
    let now = Utc::now().with_timezone(&vietnam());
    let ts = |d: Duration| (now + d).to_rfc3339_opts(SecondsFormat::Secs, false);
    let (marriage, birth, land) = (&codes.marriage, &codes.birth, &codes.land);
    let agency = json!({"code": WARD, "name": "UBND phường Đức Thắng"});
    vec![
        Step {
            caption: "Anh Nguyễn Văn An files a marriage registration at the ward's one-stop desk",
            event: json!({
                "event_id": format!("demo-{run_id}-1"), "tenant": "demo", "dossier_code": marriage, "status": "received",
                "occurred_at": ts(Duration::minutes(-30)), "received_at": ts(Duration::minutes(-30)), "due_at": ts(Duration::days(3)),
                "procedure": {"code": "1.000894", "name": "Đăng ký kết hôn"}, "agency": agency,
                "applicant": {"name": "Nguyễn Văn An", "phone": "0903 123 456"}, "channels": {"zalo": true, "broadcast": false}
            }),
        },
        Step {
            caption: "The ward finishes it three days early",
            event: json!({
                "event_id": format!("demo-{run_id}-2"), "tenant": "demo", "dossier_code": marriage, "status": 9,
                "occurred_at": ts(Duration::zero()), "received_at": ts(Duration::minutes(-30)), "due_at": ts(Duration::days(3)),
                "procedure": {"code": "1.000894", "name": "Đăng ký kết hôn"}, "agency": agency,
                "applicant": {"name": "Nguyễn Văn An", "phone": "0903 123 456"}, "channels": {"zalo": true, "broadcast": false}
            }),
        },
        Step {
            caption: "Chị Lê Thị Hoa registers her son's birth on behalf of his father (she is notified, not him)",
            event: json!({
                "event_id": format!("demo-{run_id}-3"), "tenant": "demo", "dossier_code": birth, "status": "received",
                "occurred_at": ts(Duration::zero()), "received_at": ts(Duration::zero()), "due_at": ts(Duration::days(1)),
                "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"}, "agency": agency,
                "applicant": {"name": "Phạm Minh Quân", "phone": "+84 912.000.111"},
                "on_behalf_of": {"name": "Lê Thị Hoa", "phone": "0987-654-321"},
                "channels": {"zalo": true, "broadcast": false}
            }),
        },
        Step {
            caption: "A land-use dossier needs one more document",
            event: json!({
                "event_id": format!("demo-{run_id}-4"), "tenant": "demo", "dossier_code": land, "status": "supplement_requested",
                "occurred_at": ts(Duration::zero()), "received_at": ts(Duration::days(-5)), "due_at": ts(Duration::days(10)),
                // The catalogue's whole name: longer than a message's `procedure_name`
                // takes, so the message shows it cut with "…" and the page whole.
                "procedure": {"code": "1.013831", "name": "Đăng ký biến động quyền sử dụng đất, \
                    quyền sở hữu tài sản gắn liền với đất trong các trường hợp chuyển nhượng, \
                    thừa kế, tặng cho, góp vốn bằng quyền sử dụng đất, quyền sở hữu tài sản gắn \
                    liền với đất; cho thuê, cho thuê lại quyền sử dụng đất"},
                "agency": {"code": LAND_OFFICE, "name": "Chi nhánh Văn phòng đăng ký đất đai"},
                "applicant": {"name": "Trần Thị Bích", "phone": "0358 777 888"},
                "required_documents": ["Bản sao hợp đồng chuyển nhượng có công chứng"],
                "reason": "Thiếu hợp đồng chuyển nhượng",
                "channels": {"zalo": true, "broadcast": false}
            }),
        },
    ]
}

/// The demo's log sink: while the story is printed, log lines wait in memory, so they
/// never cut through it; [`StoryLogs::release`] writes them to stderr, and every line
/// after goes straight there. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StoryLogs(Arc<Mutex<Option<Vec<u8>>>>);

impl StoryLogs {
    /// Holds every line until [`Self::release`].
    pub fn held() -> Self {
        Self(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// Writes the held lines to stderr; later lines go there at once.
    pub fn release(&self) {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(lines) = held.filter(|l| !l.is_empty()) {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(&lines);
            let _ = stderr.flush();
        }
    }

    /// A writer for one log line (what `tracing-subscriber` asks for per event).
    pub fn writer(&self) -> StoryLogs {
        self.clone()
    }
}

impl Write for StoryLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(lines) => {
                lines.extend_from_slice(buf);
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The next `n` free dossier codes of `agency` today, `<agency>-<yymmdd>-<nnnn>`, after
/// the highest number the tracker knows for that agency and day.
async fn next_codes(
    client: &reqwest::Client,
    tracker: &str,
    agency: &str,
    n: u32,
) -> anyhow::Result<Vec<String>> {
    let today = Utc::now().with_timezone(&vietnam()).format("%y%m%d");
    let prefix = format!("{agency}-{today}-");
    let mut highest = 0u32;
    let mut after: Option<String> = None;
    // Bounded: 100 pages of 100 are more dossiers than a desk numbers in a day.
    for _ in 0..100 {
        let mut query = vec![("q", prefix.clone()), ("limit", "100".to_owned())];
        if let Some(cursor) = &after {
            query.push(("after", cursor.clone()));
        }
        let page: Value = client
            .get(format!("{tracker}/v1/dossiers"))
            .bearer_auth(DEMO_ADMIN_TOKEN)
            .query(&query)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("The tracker did not answer the search for today's dossier numbers")?
            .json()
            .await?;
        for dossier in page["dossiers"].as_array().into_iter().flatten() {
            let number = dossier["code"]
                .as_str()
                .and_then(|c| c.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u32>().ok());
            highest = highest.max(number.unwrap_or(0));
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    Ok((1..=n)
        .map(|i| format!("{prefix}{:04}", highest + i))
        .collect())
}

/// The demo tenant's admin token (the built-in `demo` tenant).
const DEMO_ADMIN_TOKEN: &str = "demo-admin";

/// Starts every service in-process, tells the story, prints what citizens received.
/// The services' logs go to `logs`, released once the story is told.
pub async fn run(settings: &Settings, exit: bool, logs: StoryLogs) -> anyhow::Result<()> {
    let cancel = loa_platform::shutdown::on_signal();
    // The demo is development: the console's demo account, cookies over plain HTTP.
    let mut settings = settings.clone();
    settings.services.console.dev_mode = true;
    let system = runner::start(runner::Target::All, &settings, cancel.clone()).await?;
    let intake = format!(
        "http://127.0.0.1:{}",
        system.intake_port.context("intake is not running")?
    );
    let sandbox = format!(
        "http://127.0.0.1:{}",
        system.sandbox_port.context("the sandbox is not running")?
    );
    let tracker = format!(
        "http://127.0.0.1:{}",
        system.tracker_port.context("the tracker is not running")?
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &intake).await?;
    wait_ready(&client, &tracker).await?;

    let run_id = format!("{:x}", Utc::now().timestamp_micros());
    let ward = next_codes(&client, &tracker, WARD, 2).await?;
    let land = next_codes(&client, &tracker, LAND_OFFICE, 1).await?;
    let codes = Codes {
        marriage: ward[0].clone(),
        birth: ward[1].clone(),
        land: land[0].clone(),
    };
    let steps = story(&run_id, &codes);
    println!(
        "\nLoa demo: {} dossier events, posted to intake as an upstream one-stop system would.\n",
        steps.len()
    );
    let mut tracking = Vec::new();
    for step in &steps {
        let resp = client
            .post(format!("{intake}/v1/events"))
            .bearer_auth("demo-token")
            .json(&step.event)
            .send()
            .await?;
        let status = resp.status();
        println!("  • {} → intake answered {}", step.caption, status);
        anyhow::ensure!(
            status.as_u16() == 202,
            "intake refused a demo event: {}",
            resp.text().await?
        );
        tracking.push(
            step.event["dossier_code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    println!("\nWhat citizens received on Zalo (as recorded by the Zalo sandbox):\n");
    let messages = wait_for_messages(&client, &sandbox, &tracking, steps.len()).await?;
    for m in &messages {
        print_message(m);
    }
    println!(
        "Open a lookup link above in a browser: it is the page the QR code on the paper receipt opens.\n\
         Sandbox messages: {sandbox}/_sandbox/messages    Metrics: {intake}/metrics"
    );
    if let Some(port) = system.console_port {
        println!(
            "\nAdmin console: http://127.0.0.1:{port}/admin/ (sign in as `{}` / `{}`, development mode only)",
            loa_console::accounts::DEMO_USERNAME,
            loa_console::accounts::DEMO_PASSWORD
        );
    }
    println!();
    logs.release();
    if exit {
        return system.stop().await;
    }
    println!("\nServing on; press Ctrl-C to stop.");
    system.wait().await
}

async fn wait_ready(client: &reqwest::Client, service: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{service}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{service} did not become ready: are RabbitMQ and PostgreSQL running?")
}

async fn wait_for_messages(
    client: &reqwest::Client,
    sandbox: &str,
    dossier_codes: &[String],
    expected: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut mine = Vec::new();
    for _ in 0..200 {
        let all: Vec<Value> = client
            .get(format!("{sandbox}/_sandbox/messages"))
            .send()
            .await?
            .json()
            .await?;
        mine = all
            .into_iter()
            .filter(|m| {
                let code = m["template_data"]["dossier_code"]
                    .as_str()
                    .unwrap_or_default();
                dossier_codes.iter().any(|c| c == code)
            })
            .collect();
        if mine.len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        !mine.is_empty(),
        "no message reached the sandbox; see the services' logs"
    );
    Ok(mine)
}

/// Prints a message as the citizen reads it: the sandbox renders each template
/// message with the text of `docs/zalo-templates.md`.
fn print_message(m: &Value) {
    let phone = m["phone"].as_str().map(mask_phone).unwrap_or_default();
    println!(
        "  ✉ ZNS to {phone} (template {}, msg {})",
        m["template_id"].as_str().unwrap_or("?"),
        m["msg_id"].as_str().unwrap_or("?")
    );
    match m["rendered"].as_str() {
        Some(text) => {
            for line in text.lines() {
                println!("    {line}");
            }
        }
        None => {
            for (key, value) in m["template_data"].as_object().into_iter().flatten() {
                println!("    {key}: {}", value.as_str().unwrap_or_default());
            }
        }
    }
    println!();
}
