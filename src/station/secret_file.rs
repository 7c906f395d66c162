//! Secrets kept in files (station.toml `connection_string_file`): read only when no one but the
//! owner can read the file, since a DPS connection string holds the instance's shared access key.

use std::path::Path;

use crate::secret::SecretString;

/// Reads a one-line secret from `path`; the message says what is wrong and what to do.
pub fn read_owner_only(path: &Path) -> Result<SecretString, String> {
    if let Some(mode) = crate::secret::open_to_others(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
    {
        return Err(format!(
            "{} can be read by its group or by others (mode {mode:03o}): make it owner-only \
             (chmod 600 {}); it was not used",
            path.display(),
            path.display()
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let value = text.trim();
    if value.is_empty() {
        return Err(format!(
            "{} is empty: write the connection string into it",
            path.display()
        ));
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
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_owner_only(&path).unwrap().expose(),
            "HostName=x;SharedAccessKeyName=y;SharedAccessKey=z"
        );
    }
}
