//! Test support shared by the tracker's and the console's speed tests: a tenant of
//! 100,000 dossiers skewed as a province's are, and a plan's count of rows read in
//! vain. Not used by the service itself.

use crate::search;
use deadpool_postgres::Pool;
use loa_contracts::phone::PhoneNumber;
use loa_platform::Secret;
use serde_json::Value;

/// The status [`load_many_dossiers`] gives 0.1 % of the dossiers (a rare one, like a
/// province's refused dossiers).
pub const RARE_STATUS: &str = "4";

/// The phone [`load_many_dossiers`] gives to [`KNOWN_PHONE_DOSSIER`] alone.
pub const KNOWN_PHONE: &str = "0903 123 456";

/// The one bulk dossier with [`KNOWN_PHONE`].
pub const KNOWN_PHONE_DOSSIER: &str = "BULK-0054321";

/// Loads 100,000 dossiers for `demo` (and 20,000 for `other`) straight into the
/// tracker's tables, spread over a year, 20 agencies (`A0`..`A19`), 50 procedures
/// (`P0`..`P49`), a phone key each, and [`KNOWN_PHONE`] for [`KNOWN_PHONE_DOSSIER`]
/// (keyed with `lookup_secret`). Skewed, since a uniform spread hides a missing index:
/// [`RARE_STATUS`] has 0.1 % of them, status 5 20 %, every other 10 %; completed
/// dossiers (9, 10) are late but for 0.2 % of all, completed early (all `A9`).
/// Vacuumed, as autovacuum leaves a table after a bulk insert.
pub async fn load_many_dossiers(pool: &Pool, lookup_secret: &Secret) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .batch_execute(
            "INSERT INTO tracker.dossiers (tenant, dossier_code, status, procedure_code, procedure_name,
                 agency_code, agency_name, applicant_masked, received_at, due_at, completed_at,
                 lookup_token, last_event_id, last_occurred_at, last_stage, created_at, updated_at)
             SELECT t.tenant, 'BULK-' || lpad(i::text, 7, '0'), s,
                    'P' || (i % 50), 'Thủ tục ' || (i % 50), 'A' || (i % 20), 'Cơ quan ' || (i % 20),
                    'Trần T. B.', r, r + interval '5 days',
                    CASE WHEN s IN (9, 10) THEN r + (CASE WHEN i % 500 = 9 THEN 1 ELSE 6 + i % 3 END || ' days')::interval END,
                    md5(t.tenant || i), 'e' || i, r, 1, r, r
               FROM (VALUES ('demo', 100000), ('other', 20000)) AS t(tenant, n),
                    generate_series(1, t.n) AS i,
                    LATERAL (SELECT now() - ((i % 365) || ' days')::interval - (i || ' seconds')::interval AS r,
                                    CASE WHEN i % 1000 = 3 THEN 4 WHEN i % 10 = 3 THEN 5 ELSE (i % 10) + 1 END AS s) AS d;
             INSERT INTO tracker.dossier_phones (tenant, phone_key, dossier_code)
             SELECT tenant, md5('phone' || dossier_code), dossier_code FROM tracker.dossiers;",
        )
        .await?;
    // One statement each: VACUUM cannot run in the implicit transaction of a batch.
    client
        .batch_execute("VACUUM (ANALYZE) tracker.dossiers")
        .await?;
    client
        .batch_execute("VACUUM (ANALYZE) tracker.dossier_phones")
        .await?;
    let key = search::phone_key(
        lookup_secret,
        "demo",
        &PhoneNumber::parse(KNOWN_PHONE).map_err(anyhow::Error::msg)?,
    );
    client
        .execute(
            "INSERT INTO tracker.dossier_phones VALUES ('demo', $1, $2)",
            &[&key, &KNOWN_PHONE_DOSSIER],
        )
        .await?;
    Ok(())
}

/// Rows a plan (`EXPLAIN (ANALYZE, FORMAT JSON)`) read and threw away (`Rows Removed
/// by Filter`, summed over its nodes and loops): an index that answers a search leaves
/// few, a walk of another index leaves thousands, however fast or loaded the machine.
pub fn rows_removed(plan: &Value) -> f64 {
    match plan {
        Value::Object(node) => node
            .iter()
            .map(|(key, value)| match (key.as_str(), value) {
                ("Rows Removed by Filter", Value::Number(n)) => {
                    n.as_f64().unwrap_or(0.0) * node["Actual Loops"].as_f64().unwrap_or(1.0)
                }
                _ => rows_removed(value),
            })
            .sum(),
        Value::Array(items) => items.iter().map(rows_removed).sum(),
        _ => 0.0,
    }
}
