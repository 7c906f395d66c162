//! The DPS service connection string, parsed once so the rest of the client never sees raw text.
//!
//! Format: `HostName=<name>.azure-devices-provisioning.net;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>`.
//! Each pair is split on its FIRST `=`: base64 keys end in `=` and must survive intact. Names are
//! compared case-insensitively, as the Python SDK does.

use std::fmt;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;

use crate::secret::SecretString;

/// Why a connection string was refused; never carries the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// The string was empty or only whitespace.
    #[error(
        "the DPS connection string is empty: set DPS_CONNECTION_STRING to the one shown under \
         'Shared access policies' of the DPS instance in the Azure portal"
    )]
    Empty,
    /// A `;`-separated part had no `=`.
    #[error(
        "part {index} of the DPS connection string has no '=' (expected Name=Value pairs \
         separated by ';', e.g. HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"
    )]
    MissingEquals {
        /// 1-based position of the offending part.
        index: usize,
    },
    /// A required field is absent.
    #[error(
        "the DPS connection string has no {0}: copy the whole string of a shared access policy \
         (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"
    )]
    MissingField(&'static str),
    /// A field appears twice.
    #[error("the DPS connection string names {0} twice: keep one")]
    Duplicate(String),
    /// A field is present but empty.
    #[error("the DPS connection string has an empty {0}")]
    EmptyField(&'static str),
    /// A field that a DPS service connection string does not have (a device string, an IoT Hub one).
    #[error(
        "the DPS connection string has an unexpected field '{0}': use the service connection \
         string of a DPS shared access policy, not a device or IoT Hub one"
    )]
    UnknownField(String),
    /// The key does not decode as base64.
    #[error(
        "the SharedAccessKey of the DPS connection string is not valid base64 (was it cut off \
         or were its trailing '=' lost?)"
    )]
    KeyNotBase64,
    /// The host name holds characters no host name has.
    #[error(
        "the HostName '{0}' of the DPS connection string is not a host name (no scheme, no path)"
    )]
    BadHostName(String),
}

/// A parsed connection string; `Debug` never shows the key.
#[derive(Clone)]
pub struct ConnectionString {
    host_name: String,
    key_name: String,
    key: SecretString,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &self.key)
            .finish()
    }
}

impl ConnectionString {
    /// Parses and validates a connection string (the key must be base64).
    pub fn parse(text: &SecretString) -> Result<Self, ConnectionStringError> {
        let text = text.expose().trim();
        if text.is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let mut host_name = None;
        let mut key_name = None;
        let mut key: Option<SecretString> = None;
        for (i, part) in text.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(ConnectionStringError::MissingEquals { index: i + 1 });
            };
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => &mut host_name,
                "sharedaccesskeyname" => &mut key_name,
                "sharedaccesskey" => {
                    if key.is_some() {
                        return Err(ConnectionStringError::Duplicate("SharedAccessKey".into()));
                    }
                    key = Some(SecretString::new(value.trim()));
                    continue;
                }
                // Other fields (DeviceId, an IoT Hub string's SharedAccessKeyName=iothubowner is
                // fine, but e.g. DeviceId means a device string was pasted): name it.
                _ => return Err(ConnectionStringError::UnknownField(name.trim().to_string())),
            };
            if slot.is_some() {
                return Err(ConnectionStringError::Duplicate(name.trim().to_string()));
            }
            *slot = Some(value.trim().to_string());
        }
        let host_name = host_name.ok_or(ConnectionStringError::MissingField("HostName"))?;
        let key_name =
            key_name.ok_or(ConnectionStringError::MissingField("SharedAccessKeyName"))?;
        let key = key.ok_or(ConnectionStringError::MissingField("SharedAccessKey"))?;
        if host_name.is_empty() {
            return Err(ConnectionStringError::EmptyField("HostName"));
        }
        if key_name.is_empty() {
            return Err(ConnectionStringError::EmptyField("SharedAccessKeyName"));
        }
        if key.expose().is_empty() {
            return Err(ConnectionStringError::EmptyField("SharedAccessKey"));
        }
        if !host_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(ConnectionStringError::BadHostName(host_name));
        }
        if BASE64_STANDARD.decode(key.expose()).is_err() {
            return Err(ConnectionStringError::KeyNotBase64);
        }
        Ok(Self {
            host_name,
            key_name,
            key,
        })
    }

    /// Builds one from its parts (e.g. for the emulator or tests); the key is checked like `parse`.
    pub fn from_parts(
        host_name: &str,
        key_name: &str,
        key: SecretString,
    ) -> Result<Self, ConnectionStringError> {
        let text = SecretString::new(format!(
            "HostName={host_name};SharedAccessKeyName={key_name};SharedAccessKey={}",
            key.expose()
        ));
        Self::parse(&text)
    }

    /// The DPS host, e.g. `mydps.azure-devices-provisioning.net`; also the SAS resource URI.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The shared access policy name (`skn` of the token).
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The policy key, base64; only the SAS signer reads it.
    pub fn key(&self) -> &SecretString {
        &self.key
    }
}
