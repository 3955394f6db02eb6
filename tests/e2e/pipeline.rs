//! The HTTP path, in one process.

use crate::helpers::{receipt_event, status_event, TestSystem};
use serde_json::{json, Value};

#[tokio::test]
async fn an_event_posted_to_intake_yields_exactly_one_zns_message_with_the_right_template_and_data()
{
    // Arrange
    let sys = TestSystem::start().await;

    // Act
    let resp = sys
        .post_event("demo-token", &receipt_event("e2e-1", "H56-0001"))
        .await;

    // Assert
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["event_id"], "e2e-1");
    let messages = sys.settle_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    assert_eq!(m["channel"], "zns");
    assert_eq!(m["phone"], "84903123456");
    assert_eq!(
        m["template_id"], "410001",
        "the demo tenant's receipt template"
    );
    let data = &m["template_data"];
    assert_eq!(data["dossier_code"], "H56-0001");
    assert_eq!(data["procedure_name"], "Đăng ký khai sinh");
    assert_eq!(data["status"], "Đã tiếp nhận hồ sơ");
    let read = m["rendered"].as_str().unwrap();
    assert!(
        read.starts_with(
            "Kính gửi ông/bà Trần Thị Bích,\nUBND phường Đức Thắng đã tiếp nhận hồ sơ H56-0001"
        ),
        "the sandbox shows the text of docs/zalo-templates.md: {read}"
    );
    assert_eq!(data["received_date"], "28/11/2026");
    assert_eq!(data["due_date"], "03/12/2026");
    let link = data["lookup_url"].as_str().unwrap();
    assert!(link.contains("/tra-cuu/"), "{link}");
    assert!(
        !link.contains("H56-0001") && !link.contains("903123456"),
        "no personal data in links: {link}"
    );
    assert_eq!(
        m["tracking_id"].as_str().unwrap(),
        loa_contracts::notification::notification_id(
            "demo",
            "e2e-1",
            loa_contracts::NotificationKind::Receipt
        )
    );
    sys.stop().await;
}

#[tokio::test]
async fn an_agency_name_longer_than_the_template_takes_is_delivered_cut_and_a_long_code_refused() {
    // Arrange: intake takes names of 300 characters; the template's agency_name 200.
    let sys = TestSystem::start().await;
    let long_agency = "Chi nhánh Văn phòng đăng ký đất đai ".repeat(8);
    let mut event = receipt_event("e2e-long-1", "H56-0002");
    event["agency"]["name"] = json!(long_agency.trim());
    let mut long_code = receipt_event("e2e-long-2", "000.00.06.H56-261128-0000000001");
    long_code["agency"]["name"] = json!("UBND phường Đức Thắng");

    // Act
    let resp = sys.post_event("demo-token", &event).await;
    let refused = sys.post_event("demo-token", &long_code).await;

    // Assert: delivered (the sandbox refuses a parameter longer than its template
    // registered, -1121, as Zalo does), the name cut with "…"; the code that no
    // template can carry is refused at the door, naming the field.
    assert_eq!(resp.status(), 202);
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["field"], "dossier_code", "{body}");
    let messages = sys.settle_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let agency = messages[0]["template_data"]["agency_name"]
        .as_str()
        .unwrap();
    assert!(agency.chars().count() <= 200, "{agency}");
    assert!(agency.ends_with('…'), "{agency}");
    assert!(agency.starts_with("Chi nhánh Văn phòng đăng ký đất đai"));
    sys.stop().await;
}

#[tokio::test]
async fn the_same_event_posted_twice_still_yields_one_message() {
    let sys = TestSystem::start().await;
    let event = receipt_event("e2e-dup", "H56-0002");

    assert_eq!(sys.post_event("demo-token", &event).await.status(), 202);
    assert_eq!(sys.post_event("demo-token", &event).await.status(), 202);

    let messages = sys.settle_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let dossier: Value = sys.dossier("H56-0002").await.json().await.unwrap();
    assert_eq!(
        dossier["history"].as_array().unwrap().len(),
        1,
        "{dossier:#}"
    );
    sys.stop().await;
}

#[tokio::test]
async fn events_for_one_dossier_arriving_out_of_order_end_in_the_right_current_state() {
    let sys = TestSystem::start().await;
    let code = "H56-0003";
    // The result is ready (9) at 10:00 on 01/12, before the 03/12 appointment; the
    // receipt (2) and processing (4) events arrive after it.
    let ready = status_event(
        "ooo-3",
        code,
        json!("result_ready"),
        "2026-12-01T10:00:00+07:00",
    );
    let processing = status_event("ooo-2", code, json!(4), "2026-11-29T08:00:00+07:00");
    let received = status_event("ooo-1", code, json!(2), "2026-11-28T09:30:00+07:00");

    for e in [&ready, &processing, &received] {
        assert_eq!(sys.post_event("demo-token", e).await.status(), 202);
    }

    let messages = sys.settle_messages(1).await;
    let dossier: Value =
        loa_platform::testing::eventually(std::time::Duration::from_secs(10), || async {
            let d: Value = sys.dossier(code).await.json().await.ok()?;
            (d["history"].as_array()?.len() == 3).then_some(d)
        })
        .await
        .unwrap();
    assert_eq!(dossier["status"]["code"], 9, "{dossier:#}");
    assert_eq!(dossier["timeliness"], "early", "{dossier:#}");
    assert_eq!(
        messages.len(),
        1,
        "stale events notify nobody: {messages:#?}"
    );
    assert_eq!(
        messages[0]["template_id"], "410019",
        "the 'earlier than scheduled' template"
    );
    sys.stop().await;
}

#[tokio::test]
async fn an_invalid_event_gets_a_4xx_naming_the_field_and_publishes_nothing() {
    let sys = TestSystem::start().await;
    let mut bad_phone = receipt_event("bad-1", "H56-0004");
    bad_phone["applicant"]["phone"] = json!("024 3825 1234");
    let mut bad_status = receipt_event("bad-2", "H56-0004");
    bad_status["status"] = json!("done");
    let mut long_code = receipt_event("bad-3", &"X".repeat(51));
    long_code["dossier_code"] = json!("X".repeat(51));

    for (event, field) in [
        (&bad_phone, "applicant.phone"),
        (&bad_status, "status"),
        (&long_code, "dossier_code"),
    ] {
        let resp = sys.post_event("demo-token", event).await;
        assert_eq!(resp.status(), 422);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body:#}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    let raw = |body: &'static str, content_type: &'static str| {
        sys.client
            .post(format!("{}/v1/events", sys.intake))
            .bearer_auth("demo-token")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let resp = raw("{not json", "application/json").await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    let resp = raw("{}", "text/plain").await.unwrap();
    assert_eq!(resp.status(), 415);
    let huge = format!("{{\"event_id\": \"{}\"}}", "x".repeat(70 * 1024));
    let resp = sys
        .client
        .post(format!("{}/v1/events", sys.intake))
        .bearer_auth("demo-token")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(sys.sandbox_messages().await.is_empty());
    assert_eq!(
        sys.dossier("H56-0004").await.status(),
        404,
        "nothing half-written"
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_source_token_of_tenant_a_cannot_publish_for_tenant_b() {
    let sys = TestSystem::start().await;
    let mut for_demo = receipt_event("cross-1", "H56-0005");
    for_demo["tenant"] = json!("demo");

    let resp = sys.post_event("other-token", &for_demo).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "tenant");

    let resp = sys.post_event("not-a-token", &for_demo).await;
    assert_eq!(resp.status(), 401);
    let resp = sys
        .client
        .post(format!("{}/v1/events", sys.intake))
        .json(&for_demo)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The other tenant's admin cannot read the demo tenant's dossiers either.
    assert_eq!(sys.post_event("demo-token", &for_demo).await.status(), 202);
    sys.settle_messages(1).await;
    let resp = sys
        .client
        .get(format!("{}/v1/dossiers/H56-0005", sys.tracker))
        .bearer_auth("other-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(sys.dossier("H56-0005").await.status(), 200);
    sys.stop().await;
}

#[tokio::test]
async fn a_batch_reports_a_result_per_item_and_publishes_only_the_valid_ones() {
    let sys = TestSystem::start().await;
    let mut bad = receipt_event("batch-2", "H56-0007");
    bad["applicant"]["phone"] = json!("12");
    let batch = json!({"events": [receipt_event("batch-1", "H56-0006"), bad, receipt_event("batch-3", "H56-0008")]});

    let resp = sys.post_batch("demo-token", &batch).await;

    assert_eq!(resp.status(), 207);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["results"][1]["status"], 422);
    assert_eq!(
        body["results"][1]["error"]["field"],
        "events[1].applicant.phone"
    );
    let messages = sys.settle_messages(2).await;
    assert_eq!(messages.len(), 2);

    let too_many: Vec<Value> = (0..501)
        .map(|i| receipt_event(&format!("b{i}"), "H56-9"))
        .collect();
    let resp = sys
        .post_batch("demo-token", &json!({"events": too_many}))
        .await;
    assert_eq!(resp.status(), 413);
    sys.stop().await;
}

#[tokio::test]
async fn a_batch_keeps_the_order_of_a_dossiers_events_while_packing_the_others() {
    // Arrange: intake packs a request's events by status, which would put X's result
    // (status 9) in the pack opened by Y's, ahead of X's receipt, and make the receipt
    // stale; X's events must travel alone, in request order.
    let sys = TestSystem::start().await;
    let batch = json!({"events": [
        status_event("ord-y9", "H56-0101", json!(9), "2026-12-01T10:00:00+07:00"),
        status_event("ord-x2", "H56-0102", json!(2), "2026-11-28T09:30:00+07:00"),
        status_event("ord-z2", "H56-0103", json!(2), "2026-11-28T09:30:00+07:00"),
        status_event("ord-x9", "H56-0102", json!(9), "2026-12-01T10:00:00+07:00"),
    ]});

    // Act
    let resp = sys.post_batch("demo-token", &batch).await;

    // Assert: every event notified, X's receipt included.
    assert_eq!(resp.status(), 202);
    let messages = sys.settle_messages(4).await;
    let mut sent: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["template_data"]["dossier_code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m["template_data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(sent.len(), 4, "{messages:#?}");
    assert_eq!(
        sent.iter().filter(|(code, _)| code == "H56-0102").count(),
        2,
        "X's receipt was not made stale by its result: {sent:?}"
    );
    let x: Value = sys.dossier("H56-0102").await.json().await.unwrap();
    assert_eq!(x["status"]["code"], 9, "{x:#}");
    sys.stop().await;
}

#[tokio::test]
async fn the_lookup_link_opens_a_vietnamese_page_in_a_real_browser_without_personal_data() {
    let sys = TestSystem::start().await;
    assert_eq!(
        sys.post_event("demo-token", &receipt_event("page-1", "H56-0009"))
            .await
            .status(),
        202
    );
    let messages = sys.settle_messages(1).await;
    let link = messages[0]["template_data"]["lookup_url"].as_str().unwrap();
    let path = &link[link.find("/tra-cuu/").unwrap()..];
    let url = format!("{}{path}", sys.tracker);

    let dom = crate::helpers_browser::dump_dom(&url).await;

    assert!(dom.contains("Tra cứu hồ sơ"), "{dom}");
    assert!(dom.contains("H56-0009"));
    assert!(dom.contains("Hồ sơ đã được tiếp nhận"));
    assert!(dom.contains("03/12/2026"), "due date in dd/MM/yyyy");
    assert!(
        !dom.contains("903123456") && !dom.contains("903.123.456"),
        "no phone on a public page"
    );
    assert!(
        !dom.contains("Trần Thị Bích"),
        "no full name on a public page"
    );
    sys.stop().await;
}

#[tokio::test]
async fn intake_answers_503_with_retry_after_when_rabbitmq_cannot_confirm() {
    // Arrange: an intake whose broker does not answer.
    let common = loa_platform::CommonSettings {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..Default::default()
    };
    let settings = loa_intake::IntakeSettings {
        bind: "127.0.0.1:0".into(),
        ingress_enabled: false,
        ..Default::default()
    };
    let app = loa_intake::Application::build(&common, &settings, crate::helpers::test_tenants())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(cancel.clone()));

    // Act
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .bearer_auth("demo-token")
        .json(&receipt_event("no-broker-1", "H56-0301"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without a broker");
    cancel.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_organisation_s_dossier_is_addressed_and_shown_by_its_name_never_masked_or_as_ong_ba() {
    // Arrange: a company files through the pipeline (kind organisation, tax code),
    // its name within the 30 characters of `customer_name`.
    let sys = TestSystem::start().await;
    let company = "Công ty TNHH Việt Tiến";
    let mut event = receipt_event("org-1", "H56-0010");
    event["applicant"] = json!({
        "kind": "organisation", "name": company, "tax_code": "0312345678",
        "phone": "0903 123 456"
    });

    // Act
    let resp = sys.post_event("demo-token", &event).await;

    // Assert: the message addresses it by its name and as "Quý tổ chức".
    assert_eq!(resp.status(), 202);
    let messages = sys.settle_messages(1).await;
    let data = &messages[0]["template_data"];
    assert_eq!(data["customer_name"], company);
    let read = messages[0]["rendered"].as_str().unwrap();
    assert!(read.starts_with(&format!("Kính gửi {company},")), "{read}");
    assert!(read.contains("Xin Quý tổ chức vui lòng giữ"), "{read}");
    assert!(!read.to_lowercase().contains("ông/bà"), "{read}");

    // The lookup page shows the name as it is: no initials, no "ông/bà".
    let link = data["lookup_url"].as_str().unwrap();
    let path = &link[link.find("/tra-cuu/").unwrap()..];
    let page = reqwest::get(format!("{}{path}", sys.tracker))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(company), "{page}");
    assert!(
        !page.contains("Công T."),
        "no personal-name masking: {page}"
    );
    assert!(!page.to_lowercase().contains("ông/bà"), "{page}");
    sys.stop().await;
}
