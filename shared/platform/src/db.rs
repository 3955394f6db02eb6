//! PostgreSQL: the connection pool and embedded, schema-scoped migrations.
//!
//! Each service owns one schema (`tracker`, `notifier`) and qualifies its tables with
//! it; migrations are SQL strings compiled into the binary, applied in order under an
//! advisory lock so replicas starting together do not race.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Server options of every pooled connection (see [`pool`]).
const CUSTOM_PLANS: &str = "-c plan_cache_mode=force_custom_plan -c random_page_cost=1.1";

/// One migration: a version (applied in ascending order), a name and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version number.
    pub version: i32,
    /// Short description.
    pub name: &'static str,
    /// The SQL, run in one transaction with the bookkeeping insert.
    pub sql: &'static str,
}

/// Builds a pool for `url` with at most `size` connections. Connects lazily.
///
/// Every connection plans each execution of a prepared statement afresh
/// (`plan_cache_mode = force_custom_plan`): the hot paths prepare their statements
/// once per connection, and a generic plan cached while a table was still small (a
/// fresh deployment, the first seconds of a burst) keeps scanning the whole table as
/// it grows, until autovacuum's next `ANALYZE`, which may be a minute away. Planning
/// these short statements costs far less than one such scan; parsing is still saved.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .context("LOA_DATABASE_URL is not a valid PostgreSQL URL")?;
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {CUSTOM_PLANS}"),
        _ => CUSTOM_PLANS.to_owned(),
    };
    config.options(&options);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("Failed to build the PostgreSQL pool")
}

/// Creates the database named in `url` if it does not exist (connecting to the
/// `postgres` maintenance database), so a fresh machine runs out of the box.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse().context("invalid PostgreSQL URL")?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    if connect(&config).await.is_ok() {
        return Ok(());
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin)
        .await
        .context("Failed to connect to PostgreSQL")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            // Another replica may have created it meanwhile.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e).context("Failed to create the database");
            }
        }
        tracing::info!(database = %name, "Created the database.");
    }
    Ok(())
}

async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Applies the migrations of `schema` that are not applied yet.
pub async fn migrate(pool: &Pool, schema: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("loa-migrate-{schema}")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .with_context(|| format!("Failed to prepare schema {schema}"))?;
    let applied: Vec<i32> = tx
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for m in migrations {
        if applied.contains(&m.version) {
            continue;
        }
        tx.batch_execute(m.sql)
            .await
            .with_context(|| format!("Migration {schema} {} ({}) failed", m.version, m.name))?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await?;
        tracing::info!(
            schema,
            version = m.version,
            name = m.name,
            "Applied migration."
        );
    }
    tx.commit().await?;
    Ok(())
}

/// Checks the pool can run a query; used by `/readyz`.
pub async fn ping(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
