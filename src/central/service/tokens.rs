//! One-time join tokens: `dpsc1.<token_id>.<secret>.<ca_sha256_hex>`.
//!
//! The administrator makes one per station (`central token create`) and types or pastes it on the
//! station (`central join URL --token ...`). The station pins the service's CA by the last part;
//! the service keeps only the secret's SHA-256, so a copy of the database cannot join a station.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::audit::{self, AuditEntry};
use super::db;

/// The token's version prefix.
pub const PREFIX: &str = "dpsc1";

/// How long a token is valid unless `--valid` says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// A token taken apart (the secret stays in this value only; `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub token_id: String,
    secret: String,
    /// Hex SHA-256 of the service CA certificate's DER.
    pub ca_sha256: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("token_id", &self.token_id)
            .field("ca_sha256", &self.ca_sha256)
            .finish_non_exhaustive()
    }
}

/// Why a token string is not a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "this is not a join token (expected {PREFIX}.<id>.<secret>.<CA fingerprint>): copy the whole line `dps-station central token create` printed"
    )]
    Malformed,
    #[error(
        "`{0}` is not a validity like 24h, 30m, 7d or 3600s: give a number and a unit (s, m, h, d)"
    )]
    BadValidity(String),
    #[error("the token could not be stored: {0}")]
    Database(String),
}

impl JoinToken {
    /// Parses the string a station was given.
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [prefix, id, secret, ca] = parts[..] else {
            return Err(TokenError::Malformed);
        };
        let hexish =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if prefix != PREFIX || !hexish(id, 16) || !hexish(secret, 64) || !hexish(ca, 64) {
            return Err(TokenError::Malformed);
        }
        Ok(JoinToken {
            token_id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
            ca_sha256: ca.to_ascii_lowercase(),
        })
    }

    /// Hex SHA-256 of the secret, as `join_tokens.secret_sha256` holds it.
    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// The token as printed.
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}.{}.{}.{}",
            self.token_id, self.secret, self.ca_sha256
        )
    }
}

/// Compares two hex digests in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Parses `--valid`: a number and a unit (`s`, `m`, `h`, `d`), e.g. `24h`.
pub fn parse_validity(text: &str) -> Result<Duration, TokenError> {
    let bad = || TokenError::BadValidity(text.to_string());
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = number.checked_mul(unit).ok_or_else(bad)?;
    if seconds == 0 || seconds > 365 * 86_400 {
        return Err(bad());
    }
    Ok(Duration::from_secs(seconds))
}

/// A new token, stored (only the secret's hash) and audited; returns it to print once.
pub async fn create(
    client: &mut tokio_postgres::Client,
    ca_sha256: &str,
    station_id: Option<&str>,
    valid: Duration,
    actor: &str,
) -> Result<JoinToken, TokenError> {
    let token = JoinToken {
        token_id: hex::encode(rand::random::<[u8; 8]>()),
        secret: hex::encode(rand::random::<[u8; 32]>()),
        ca_sha256: ca_sha256.to_ascii_lowercase(),
    };
    let seconds = valid.as_secs_f64();
    let database = |e: tokio_postgres::Error| TokenError::Database(db::describe(&e));
    let tx = client.transaction().await.map_err(database)?;
    let expires: String = tx
        .query_one(
            "INSERT INTO join_tokens (token_id, secret_sha256, station_id, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             RETURNING to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[
                &token.token_id,
                &token.secret_sha256(),
                &station_id,
                &seconds,
            ],
        )
        .await
        .map_err(database)?
        .get(0);
    let details = serde_json::json!({
        "token_id": token.token_id,
        "station_id": station_id,
        "expires_at": expires,
    })
    .to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: station_id.unwrap_or(""),
            actor,
            action: "token.created",
            subject: &token.token_id,
            details: &details,
        },
    )
    .await
    .map_err(database)?;
    tx.commit().await.map_err(database)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_bad_ones_are_refused() {
        let token = JoinToken {
            token_id: "0123456789abcdef".into(),
            secret: "ab".repeat(32),
            ca_sha256: "cd".repeat(32),
        };
        assert_eq!(JoinToken::parse(&token.to_text()).unwrap(), token);
        assert!(!format!("{token:?}").contains(&"ab".repeat(32)));
        for bad in [
            "",
            "dpsc1.x.y.z",
            &token.to_text().replace("dpsc1", "dpsc2"),
            &format!("{}.extra", token.to_text()),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        assert!(same_digest("abc", "abc"));
        assert!(!same_digest("abc", "abd"));
        assert!(!same_digest("abc", "ab"));
    }

    #[test]
    fn validity_takes_a_number_and_a_unit() {
        assert_eq!(parse_validity("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_validity("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_validity("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "h", "24", "0h", "5y", "99999999999999999999d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }
}
