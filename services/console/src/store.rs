//! The `console` schema and its migrations (SQL under `src/migrations/`).

use deadpool_postgres::Pool;
use loa_platform::db::Migration;

/// The Postgres schema the console owns.
pub const SCHEMA: &str = "console";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts, sessions, sign-in attempts and the audit log",
        sql: include_str!("migrations/0001_console.sql"),
    },
    Migration {
        version: 2,
        name: "Zalo OA re-authorisations in flight",
        sql: include_str!("migrations/0002_zalo_authorizations.sql"),
    },
    Migration {
        version: 3,
        name: "accounts for development mode only",
        sql: include_str!("migrations/0003_dev_mode_accounts.sql"),
    },
];

/// Creates or upgrades the `console` schema. Idempotent; safe with replicas.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    loa_platform::db::migrate(pool, SCHEMA, MIGRATIONS).await
}
