//! Registration IDs and enrollment group IDs as the service accepts them (REFERENCE.md §7):
//! at most 128 characters of `[A-Za-z0-9-._:]`, the last alphanumeric or `-`, compared
//! without regard to case.

/// Longest ID the service takes.
pub const MAX_ID_LEN: usize = 128;

/// Checks an ID against the service's rules; the error says what is wrong with it.
pub fn validate(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("the {kind} is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "the {kind} '{id}' has {} characters; DPS allows at most {MAX_ID_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')))
    {
        return Err(format!(
            "the {kind} '{id}' contains '{c}'; DPS allows only letters, digits and - . _ :"
        ));
    }
    let last = id.chars().last().unwrap_or('-');
    if !(last.is_ascii_alphanumeric() || last == '-') {
        return Err(format!(
            "the {kind} '{id}' ends with '{last}'; DPS wants it to end with a letter, digit or -"
        ));
    }
    Ok(())
}

/// Checks a host name given for the local hub: DNS labels of letters, digits and `-`, dot-separated,
/// at most 253 characters (it goes into the TLS certificate and the hub CONNECT username).
pub fn validate_host_name(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the IoT hub host name '{host}' is not a DNS name (letters, digits and - in dot-separated labels)"
        ))
    }
}

/// The key an ID is stored under: IDs are case-insensitive.
pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dps_rules() {
        for ok in ["a", "dev-1", "Dev_1.x:y", "x-", &"a".repeat(128)] {
            assert!(validate("registration ID", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "dev.", "dev_", "é", &"a".repeat(129)] {
            assert!(validate("registration ID", bad).is_err(), "{bad}");
        }
    }
}
