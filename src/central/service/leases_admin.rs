//! The administrator's side of leases: a batch's cap and lease policy (`central batch set`, `central
//! batch list`) and closing a lease by hand.

use std::time::Duration;

use serde_json::json;

use super::audit::{self, AuditEntry};

/// What `central batch set` changes; `None` keeps the stored value (or the default for a new batch).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPolicy {
    pub batch: String,
    pub cap: u64,
    pub lease_size: Option<u32>,
    pub lease_ttl: Option<Duration>,
    pub central_enrollment: Option<bool>,
}

/// One batch as `central batch list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub batch: String,
    pub cap: i64,
    pub allocated: i64,
    pub lease_size: i32,
    pub lease_ttl_seconds: i32,
    pub central_enrollment: bool,
    /// Leases not yet returned, and how many identities they hold.
    pub open_leases: i64,
    pub open_count: i64,
}

/// Why an administrator's change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("batch {batch}: {reason}")]
    Refused { batch: String, reason: String },
    #[error("the central database failed: {0}")]
    Database(String),
}

fn database(e: tokio_postgres::Error) -> AdminError {
    AdminError::Database(super::db::describe(&e))
}

/// Creates a batch or changes its cap and lease policy, with a central audit row. A cap below
/// what is already allocated is refused (the leases out there stay valid).
pub async fn set_batch(
    client: &mut tokio_postgres::Client,
    actor: &str,
    policy: &BatchPolicy,
) -> Result<BatchRow, AdminError> {
    let refused = |reason: String| AdminError::Refused {
        batch: policy.batch.clone(),
        reason,
    };
    if policy.batch.trim().is_empty() {
        return Err(refused("a batch needs a name".into()));
    }
    let cap = i64::try_from(policy.cap).map_err(|_| refused("the cap is too large".into()))?;
    let size = match policy.lease_size {
        Some(0) => return Err(refused("--lease-size must be at least 1".into())),
        Some(n) => Some(i32::try_from(n).map_err(|_| refused("--lease-size is too large".into()))?),
        None => None,
    };
    let ttl = match policy.lease_ttl {
        Some(d) if d.as_secs() == 0 => {
            return Err(refused("--lease-ttl must be at least one second".into()));
        }
        Some(d) => Some(
            i32::try_from(d.as_secs()).map_err(|_| refused("--lease-ttl is too long".into()))?,
        ),
        None => None,
    };
    let tx = client.transaction().await.map_err(database)?;
    let current = tx
        .query_opt(
            "SELECT allocated FROM batches WHERE batch = $1 FOR UPDATE",
            &[&policy.batch],
        )
        .await
        .map_err(database)?;
    if let Some(row) = &current {
        let allocated: i64 = row.get(0);
        if cap < allocated {
            return Err(refused(format!(
                "{allocated} identities are already leased or used; the cap cannot go below that (return or close leases first)"
            )));
        }
    }
    tx.execute(
        "INSERT INTO batches (batch, cap, lease_size, lease_ttl_seconds, central_enrollment)
         VALUES ($1, $2, coalesce($3, 50), coalesce($4, 86400), coalesce($5, false))
         ON CONFLICT (batch) DO UPDATE SET cap = excluded.cap,
           lease_size = coalesce($3, batches.lease_size),
           lease_ttl_seconds = coalesce($4, batches.lease_ttl_seconds),
           central_enrollment = coalesce($5, batches.central_enrollment)",
        &[&policy.batch, &cap, &size, &ttl, &policy.central_enrollment],
    )
    .await
    .map_err(database)?;
    let details = json!({ "cap": cap, "lease_size": size, "lease_ttl_seconds": ttl,
        "central_enrollment": policy.central_enrollment })
    .to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: "",
            actor,
            action: "batch.set",
            subject: &policy.batch,
            details: &details,
        },
    )
    .await
    .map_err(database)?;
    tx.commit().await.map_err(database)?;
    list_batches(client)
        .await?
        .into_iter()
        .find(|b| b.batch == policy.batch)
        .ok_or_else(|| refused("it vanished right after it was set".into()))
}

/// Every batch with its cap, what is allocated, and its open leases.
pub async fn list_batches(client: &tokio_postgres::Client) -> Result<Vec<BatchRow>, AdminError> {
    let rows = client
        .query(
            "SELECT b.batch, b.cap, b.allocated, b.lease_size, b.lease_ttl_seconds, b.central_enrollment,
                    count(l.lease_id), coalesce(sum(l.count), 0)::bigint
             FROM batches b LEFT JOIN leases l ON l.batch = b.batch AND l.returned_at IS NULL
             GROUP BY b.batch ORDER BY b.batch",
            &[],
        )
        .await
        .map_err(database)?;
    Ok(rows
        .iter()
        .map(|r| BatchRow {
            batch: r.get(0),
            cap: r.get(1),
            allocated: r.get(2),
            lease_size: r.get(3),
            lease_ttl_seconds: r.get(4),
            central_enrollment: r.get(5),
            open_leases: r.get(6),
            open_count: r.get(7),
        })
        .collect())
}

/// Reads `24h`, `90m`, `30s`, `2d` or a plain number of seconds (`--lease-ttl`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 24h, 90m, 30s or 2d"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}` is not a duration: write e.g. 24h, 90m, 30s or 2d"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_an_administrator_writes_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("").is_err());
    }
}
