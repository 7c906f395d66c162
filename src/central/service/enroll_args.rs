//! The flags of `central serve` that turn central enrollment on (`#[command(flatten)]` them into
//! the serve command), and the worker's settings made from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dps::retry::RetryPolicy;
use crate::dps::{ConnectionString, DpsClientConfig, EnrollmentSettings, TlsTrust};
use crate::secret::SecretString;

use super::enroll::{EnrollError, EnrollHandle, EnrollSettings, spawn};
use super::enroll_round::JobRetry;

/// DPS's default service-API quota is 1,000 operations a minute: 16 a second stays under it.
pub const DEFAULT_ENROLL_RATE: u32 = 16;

/// Central enrollment flags of `dps-station central serve`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EnrollArgs {
    /// Enroll the identities stations leave to the service (`[central] enrollment = "central"`)
    /// with the DPS service connection string held in FILE (owner-only, chmod 600). Without it
    /// the service enrolls nothing and such jobs wait.
    #[arg(long, value_name = "FILE")]
    pub dps_connection_string_file: Option<PathBuf>,
    /// DPS service-API requests per second, summed over this replica's bulk calls and checks;
    /// keep the sum over all replicas under the instance's quota (1,000 a minute by default).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ENROLL_RATE,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub enroll_rate: u32,
    /// Send DPS calls to URL instead of https://<HostName> (an emulator or a proxy).
    #[arg(long, value_name = "URL")]
    pub dps_endpoint: Option<String>,
    /// Trust only this CA certificate (PEM) for DPS, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub dps_ca_file: Option<PathBuf>,
    /// Seconds between looks for due enrollment jobs when there were none.
    #[arg(long, value_name = "SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub enroll_poll_seconds: u64,
    /// Sends per identity before a DPS that stays unreachable or throttling fails it.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub enroll_max_attempts: u32,
}

impl EnrollArgs {
    /// The worker's settings, or `None` when no connection string file was given.
    pub fn settings(&self) -> Result<Option<EnrollSettings>, EnrollError> {
        let Some(path) = &self.dps_connection_string_file else {
            return Ok(None);
        };
        let text = read_owner_only(path)?;
        let connection =
            ConnectionString::parse(&text).map_err(|e| EnrollError::ConnectionString {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let tls = match &self.dps_ca_file {
            Some(ca) => TlsTrust::only(std::fs::read(ca).map_err(|e| EnrollError::CaFile {
                path: ca.display().to_string(),
                reason: e.to_string(),
            })?),
            None => TlsTrust::platform(),
        };
        let dps = DpsClientConfig {
            endpoint: self.dps_endpoint.clone(),
            tls,
            operations_per_minute: self.enroll_rate.saturating_mul(60),
            // Few, short retries inside one call: the job rows are locked meanwhile, and the
            // worker's own backoff (next_attempt_at) handles longer outages.
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(2),
            },
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            ..DpsClientConfig::default()
        };
        Ok(Some(EnrollSettings {
            connection,
            dps,
            enrollment: EnrollmentSettings::default(),
            bulk_size: crate::dps::MAX_BULK_ITEMS,
            poll_interval: Duration::from_secs(self.enroll_poll_seconds),
            retry: JobRetry {
                max_attempts: self.enroll_max_attempts,
                backoff: Duration::from_secs(5),
                max_backoff: Duration::from_secs(600),
            },
            actor: "service".into(),
        }))
    }

    /// Starts the worker with a pool of its own (2 connections) to `database_url`, or does
    /// nothing when no connection string file was given.
    pub fn start(&self, database_url: &str) -> Result<Option<EnrollHandle>, EnrollError> {
        let Some(settings) = self.settings()? else {
            return Ok(None);
        };
        let pool =
            super::db::pool(database_url, 2).map_err(|e| EnrollError::Start(e.to_string()))?;
        spawn(pool, settings).map(Some)
    }
}

/// The connection string file, refused when others may read it (it holds the policy's key).
fn read_owner_only(path: &Path) -> Result<SecretString, EnrollError> {
    let fail = |reason: String| EnrollError::ConnectionStringFile {
        path: path.display().to_string(),
        reason,
    };
    match crate::secret::open_to_others(path) {
        Ok(Some(mode)) => {
            return Err(fail(format!(
                "its group or others may read it (mode {mode:03o}); run chmod 600 on it"
            )));
        }
        Ok(None) => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let value = text.trim();
    if value.is_empty() {
        return Err(fail("it is empty".into()));
    }
    Ok(SecretString::new(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        enroll: EnrollArgs,
    }

    #[test]
    fn no_file_no_worker_and_an_open_file_is_refused() {
        let args = Serve::parse_from(["serve"]).enroll;
        assert!(args.settings().unwrap().is_none());
        assert_eq!(args.enroll_rate, DEFAULT_ENROLL_RATE);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dps");
        let key = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldA==";
        std::fs::write(
            &path,
            format!("HostName=x.azure-devices-provisioning.net;SharedAccessKeyName=p;SharedAccessKey={key}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = path.to_str().unwrap();
        let args = Serve::parse_from([
            "serve",
            "--dps-connection-string-file",
            file,
            "--enroll-rate",
            "5",
        ])
        .enroll;
        let err = args.settings().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains(key));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let settings = args.settings().unwrap().unwrap();
        assert_eq!(settings.dps.operations_per_minute, 300);
        assert!(
            !format!("{settings:?}").contains(key),
            "Debug shows the key"
        );
        assert!(Serve::try_parse_from(["serve", "--enroll-rate", "0"]).is_err());
    }
}
