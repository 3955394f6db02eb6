//! Test support: every test gets its own PostgreSQL database and RabbitMQ vhost, so
//! runs cannot disturb each other, and both are dropped afterwards.
//!
//! The server addresses come from `LOA_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and `LOA_TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672`); vhosts are made with `rabbitmqctl`.

pub mod otlp;

use anyhow::Context;
use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private database and vhost, removed on drop.
pub struct TestEnv {
    /// Name of both the database and the vhost.
    pub name: String,
    /// URL of the private database.
    pub database_url: String,
    /// URL of the private vhost.
    pub amqp_url: String,
    postgres_base: String,
}

impl TestEnv {
    /// Creates a fresh database and vhost.
    pub async fn new() -> anyhow::Result<Self> {
        let postgres_base = std::env::var("LOA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let amqp_base = std::env::var("LOA_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!(
            "loa_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) =
            tokio_postgres::connect(&format!("{postgres_base}/postgres"), tokio_postgres::NoTls)
                .await
                .context("PostgreSQL is not reachable for tests (LOA_TEST_POSTGRES_URL)")?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        Ok(Self {
            database_url: format!("{postgres_base}/{name}"),
            amqp_url: format!("{amqp_base}/{name}"),
            name,
            postgres_base,
        })
    }

    /// Counts the messages ready in a queue of this vhost.
    pub fn queue_depth(&self, queue: &str) -> anyhow::Result<u64> {
        Ok(self.queue_depths(&[queue])?[0])
    }

    /// Counts the messages of several queues of this vhost with one `rabbitmqctl`
    /// call (each call takes a while), in the order asked.
    pub fn queue_depths(&self, queues: &[&str]) -> anyhow::Result<Vec<u64>> {
        let out = Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "-p",
                &self.name,
                "name",
                "messages",
            ])
            .output()
            .context("rabbitmqctl is not installed")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let depth = |queue: &str| {
            text.lines()
                .filter_map(|l| {
                    let mut parts = l.split_whitespace();
                    (parts.next()? == queue).then(|| parts.next()?.parse().ok())?
                })
                .next()
                .unwrap_or(0)
        };
        Ok(queues.iter().map(|q| depth(q)).collect())
    }

    /// Counts the messages ready in a queue of this vhost right now, as the queue's
    /// leader answers a passive declare. Unlike [`Self::queue_depth`] (rabbitmqctl's
    /// figures for quorum queues are statistics refreshed every few seconds), this
    /// sees a message that waits only briefly, such as a retry in a delay tier.
    pub async fn ready_messages(&self, queue: &str) -> anyhow::Result<u32> {
        let connection = crate::amqp::connect(&self.amqp_url, "loa-test-inspect").await?;
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true, // only look: fails if the queue does not exist
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .with_context(|| format!("queue {queue} does not exist"))?;
        let _ = connection.close(200, "inspected".into()).await;
        Ok(declared.message_count())
    }

    /// Force-closes every client connection of this vhost (fault injection).
    pub fn close_all_connections(&self) -> anyhow::Result<()> {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.name,
            "test fault injection",
        ])
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", self.postgres_base),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("rabbitmqctl is not installed")?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every column of `schema` (text, JSON, bytes, arrays) in which some row's digits,
/// taken together, hold `digits`, as `table.column`: how tests prove that a phone
/// number is gone in whatever form it was written (`0903 123 456`, `+84 903.123.456`).
pub async fn columns_naming(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    digits: &str,
) -> anyhow::Result<Vec<String>> {
    let client = pool.get().await.context("a test connection")?;
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text
               FROM information_schema.columns
              WHERE table_schema = $1
                AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY')
              ORDER BY table_name, column_name",
            &[&schema],
        )
        .await
        .context("Failed to list the schema's columns")?;
    anyhow::ensure!(!columns.is_empty(), "schema {schema} has no text column");
    let mut found = Vec::new();
    for c in &columns {
        let (table, column, kind): (String, String, String) = (c.get(0), c.get(1), c.get(2));
        let text = if kind == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{schema}\".\"{table}\"
                      WHERE strpos(regexp_replace({text}, '[^0-9]', '', 'g'), $1) > 0"
                ),
                &[&digits],
            )
            .await
            .with_context(|| format!("Failed to search {schema}.{table}.{column}"))?
            .get(0);
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    Ok(found)
}

/// Posts a citizen's erasure request (`POST {address}/v1/subjects/erase`, the same in
/// every service that holds personal data: [`crate::erasure`]) with the bearer
/// `token`: the status and the JSON answer (`null` when there is none).
pub async fn request_erasure(
    address: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{address}/v1/subjects/erase"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the service answers an erasure request");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

/// Checks the refusals every service's erasure endpoint owes (as the admin
/// `demo-admin` of `demo`): `bad_phone`, a phone that is not one, is `422` naming
/// `phone`; a request without `requested_by` is `422` naming it; an unknown token is
/// `401`. What a refusal must leave untouched is the caller's to check.
pub async fn assert_erasure_refusals(address: &str, bad_phone: &str) {
    // Act
    let bad_phone = request_erasure(
        address,
        "demo-admin",
        &serde_json::json!({"phone": bad_phone, "requested_by": "An"}),
    )
    .await;
    let nobody = request_erasure(
        address,
        "demo-admin",
        &serde_json::json!({"phone": "0903123456"}),
    )
    .await;
    let wrong_token = request_erasure(
        address,
        "nope",
        &serde_json::json!({"phone": "0903123456", "requested_by": "An"}),
    )
    .await;

    // Assert
    assert_eq!(
        (bad_phone.0, bad_phone.1["error"]["field"].as_str()),
        (422, Some("phone"))
    );
    assert_eq!(
        (nobody.0, nobody.1["error"]["field"].as_str()),
        (422, Some("requested_by"))
    );
    assert_eq!(wrong_token.0, 401);
}
