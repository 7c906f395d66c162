//! `[central]` in station.toml: the central ledger service this station joined (issue 18).
//! `dps-station central join` writes it; a station without it works alone, as before.
//!
//! ```toml
//! [central]
//! url = "https://central.factory.lan:8443"
//! station_id = "line-1"                      # the client certificate's CN (default: `name`)
//! client_certificate = "central/client.pem"  # issued by the service's CA at join
//! client_key = "central/client-key.pem"      # 0600 PEM, when the station has no HSM ...
//! # client_key_uri = "pkcs11:token=...;object=central-line-1;type=private"  # ... or in the HSM
//! ca_certificate = "central/ca.pem"          # the service's CA (pinned at join)
//! signer_certificate = "central/signer.pem"  # verifies receipts and leases
//! enrollment = "station"                     # or "central": the service enrolls in DPS
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Who enrolls this station's identities in DPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollmentSite {
    /// The station, with its own DPS connection string (as without a central service).
    #[default]
    Station,
    /// The central service: the station marks its identities and leaves them to it.
    Central,
}

impl EnrollmentSite {
    /// The word station.toml uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentSite::Station => "station",
            EnrollmentSite::Central => "central",
        }
    }
}

/// `[central]` as written in station.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralSection {
    pub url: String,
    #[serde(default)]
    pub station_id: Option<String>,
    pub client_certificate: PathBuf,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub client_key_uri: Option<String>,
    pub ca_certificate: PathBuf,
    pub signer_certificate: PathBuf,
    #[serde(default)]
    pub enrollment: EnrollmentSite,
}

/// Where the station's client key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// An owner-only PKCS#8 PEM file (a station without an HSM).
    File(PathBuf),
    /// A P-256 key in the station's PKCS#11 token (`[keystore]`), by its PKCS#11 URI (no PIN).
    Token {
        uri: crate::keystore::uri::Pkcs11Uri,
    },
}

/// The central settings the station runs with (paths resolved against station.toml's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralSettings {
    /// The service's base URL (`https://host:port`).
    pub url: String,
    /// This station's id at the service (its certificate's CN).
    pub station_id: String,
    pub client_certificate: PathBuf,
    pub client_key: ClientKey,
    pub ca_certificate: PathBuf,
    pub signer_certificate: PathBuf,
    pub enrollment: EnrollmentSite,
}

impl CentralSettings {
    /// Validates `section`; `station_name` is the default station id. The error names the key.
    pub fn resolve(
        section: &CentralSection,
        station_name: &str,
        base: &Path,
    ) -> Result<Self, (&'static str, String)> {
        let url = section.url.trim().trim_end_matches('/');
        if !url.starts_with("https://") || url.len() <= "https://".len() {
            return Err((
                "central.url",
                format!(
                    "{url:?} is not an https:// URL; the central service speaks HTTPS only (join again with `dps-station central join https://HOST:PORT --token ...`)"
                ),
            ));
        }
        let station_id = section
            .station_id
            .clone()
            .unwrap_or_else(|| station_name.to_string());
        if station_id.trim().is_empty() {
            return Err((
                "central.station_id",
                "give the station's id at the central service".into(),
            ));
        }
        let client_key = match (&section.client_key, &section.client_key_uri) {
            (Some(file), None) => ClientKey::File(super::resolve(base, file)),
            (None, Some(uri)) => ClientKey::Token {
                uri: uri.parse().map_err(|e| {
                    (
                        "central.client_key_uri",
                        format!("{uri:?} is not a PKCS#11 URI ({e}); join again"),
                    )
                })?,
            },
            _ => {
                return Err((
                    "central.client_key",
                    "give exactly one of client_key = \"FILE\" (owner-only PEM) or client_key_uri = \"pkcs11:...\" (the key in the station's HSM token)".into(),
                ));
            }
        };
        Ok(Self {
            url: url.to_string(),
            station_id,
            client_certificate: super::resolve(base, &section.client_certificate),
            client_key,
            ca_certificate: super::resolve(base, &section.ca_certificate),
            signer_certificate: super::resolve(base, &section.signer_certificate),
            enrollment: section.enrollment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> CentralSection {
        toml::from_str(
            r#"
url = "https://central.lan:8443/"
client_certificate = "central/client.pem"
client_key = "central/client-key.pem"
ca_certificate = "/etc/dps/ca.pem"
signer_certificate = "central/signer.pem"
enrollment = "central"
"#,
        )
        .unwrap()
    }

    #[test]
    fn paths_resolve_against_the_config_and_the_id_defaults_to_the_name() {
        let s = CentralSettings::resolve(&section(), "line-1", Path::new("/srv/st")).unwrap();
        assert_eq!(s.url, "https://central.lan:8443");
        assert_eq!(s.station_id, "line-1");
        assert_eq!(
            s.client_key,
            ClientKey::File("/srv/st/central/client-key.pem".into())
        );
        assert_eq!(s.ca_certificate, PathBuf::from("/etc/dps/ca.pem"));
        assert_eq!(s.enrollment, EnrollmentSite::Central);
    }

    #[test]
    fn plain_http_and_two_keys_are_refused_naming_the_key() {
        let mut s = section();
        s.url = "http://central.lan".into();
        assert_eq!(
            CentralSettings::resolve(&s, "l", Path::new("/"))
                .unwrap_err()
                .0,
            "central.url"
        );
        let mut s = section();
        s.client_key_uri = Some("pkcs11:object=k".into());
        assert_eq!(
            CentralSettings::resolve(&s, "l", Path::new("/"))
                .unwrap_err()
                .0,
            "central.client_key"
        );
        assert!(toml::from_str::<CentralSection>("url = \"https://x\"\nbogus = 1").is_err());
    }
}
