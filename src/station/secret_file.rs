//! Secrets kept in files (station.toml `connection_string_file`): read only when no one but the
//! owner can read the file, since a DPS connection string holds the instance's shared access key.

use std::path::{Path, PathBuf};

use crate::secret::SecretString;

/// Why a secret file was not used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file cannot be read (missing, no permission).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Its group or others have permissions on it.
    #[error(
        "{} can be read by its group or by others (mode {mode:03o}): make it owner-only \
         (chmod 600 {}); it was not used",
        path.display(),
        path.display()
    )]
    OpenToOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds nothing but white space.
    #[error("{} is empty: write the connection string into it", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a one-line secret from `path`, refused unless the file is owner-only.
pub fn read_owner_only(path: &Path) -> Result<SecretString, SecretFileError> {
    let read = |source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    };
    if let Some(mode) = crate::secret::open_to_others(path).map_err(read)? {
        return Err(SecretFileError::OpenToOthers {
            path: path.to_owned(),
            mode,
        });
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(read)?);
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(SecretString::new(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_an_owner_only_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs");
        std::fs::write(
            &path,
            "HostName=x;SharedAccessKeyName=y;SharedAccessKey=z\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_owner_only(&path).unwrap_err();
        assert!(
            matches!(err, SecretFileError::OpenToOthers { mode: 0o644, .. }),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_owner_only(&path).unwrap().expose(),
            "HostName=x;SharedAccessKeyName=y;SharedAccessKey=z"
        );
    }
}
