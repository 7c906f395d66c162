//! What the officer's screen lists: the HSM profiles with their modules and tokens, the keys of
//! the open session's token with the batches naming them, and the session's audit rows.

use std::path::{Path, PathBuf};

use crate::keystore::pkcs11 as p11;
use crate::station::key_session::KeyInjectionSession;

use super::{AuditLine, HsmProfile, KeyRow, Reply, TokenSummary};

/// A profile as the officer's screen lists it: where its module is, and what tokens it shows.
#[derive(Debug, Clone)]
pub struct ProfileInventory {
    /// The profile.
    pub profile: HsmProfile,
    /// Its module, if installed here.
    pub module: Option<PathBuf>,
    /// The tokens the module shows, or why they could not be listed.
    pub tokens: Result<Vec<TokenSummary>, String>,
}

/// Every built-in profile with its installed module and that module's tokens (no login). Loads
/// modules: call it on a worker.
pub fn hsm_inventory() -> Vec<ProfileInventory> {
    HsmProfile::all_built_in()
        .unwrap_or_default()
        .into_iter()
        .map(|profile| {
            let module = profile.installed_module().map(Path::to_path_buf);
            let tokens = match &module {
                Some(m) => p11::list_tokens(&profile, Some(m)).map_err(|e| e.to_string()),
                None => Ok(Vec::new()),
            };
            ProfileInventory {
                profile,
                module,
                tokens,
            }
        })
        .collect()
}

/// A verification code as DPS issues it: letters and digits only (DPS shows 48 hexadecimal
/// characters; the CLI's `generate-verification-code` the same), at most 64. Returns it trimmed,
/// or why it cannot be one.
pub fn check_verification_code(code: &str) -> Result<String, &'static str> {
    let code = code.trim();
    if code.is_empty() {
        return Err("paste the verification code DPS shows for the uploaded CA certificate");
    }
    if code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(
            "DPS verification codes are letters and digits only (no spaces, dashes or quotes): copy it again from the DPS portal or `az iot dps certificate generate-verification-code`",
        );
    }
    Ok(code.to_owned())
}

/// The token's objects and the session's audit rows, for the screen.
pub(super) fn state(session: &KeyInjectionSession<'_>, batches: &Path) -> Reply {
    let batch_files = batch_texts(batches);
    let token = session.store().token().label.clone();
    let keys = session
        .store()
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|k| KeyRow {
            uri: k.uri.to_string(),
            batches: batch_files
                .iter()
                .filter(|(_, text)| names_key(text, &token, &k.label))
                .map(|(name, _)| name.clone())
                .collect(),
            label: k.label,
            kind: k.kind,
            sensitive: k.sensitive,
            extractable: k.extractable,
            never_extractable: k.never_extractable,
        })
        .collect();
    let audit = session
        .audit_rows()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let second = serde_json::from_str::<serde_json::Value>(&r.details)
                .ok()
                .and_then(|d| {
                    d.get("second_officer")
                        .and_then(|s| s.as_str())
                        .map(str::to_owned)
                });
            AuditLine {
                at: r.at,
                actor: match second {
                    Some(s) => format!("{} + {s}", r.actor),
                    None => r.actor,
                },
                action: r.action,
                subject: r.subject,
            }
        })
        .collect();
    Reply::State { keys, audit }
}

/// The batch files of the batches folder with their text.
fn batch_texts(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, text))
        })
        .collect();
    out.sort();
    out
}

/// Whether a batch file's text names the key `label` on `token` by PKCS#11 URI.
fn names_key(text: &str, token: &str, label: &str) -> bool {
    text.lines().filter(|l| l.contains("pkcs11:")).any(|l| {
        let attrs: Vec<&str> = l
            .split(['"', '\''])
            .filter(|s| s.starts_with("pkcs11:"))
            .flat_map(|uri| uri.trim_start_matches("pkcs11:").split(';'))
            .collect();
        attrs.contains(&format!("object={label}").as_str())
            && attrs
                .iter()
                .all(|a| !a.starts_with("token=") || *a == format!("token={token}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_a_key_by_label_and_token() {
        let text = "[keys]\nca = \"pkcs11:token=line;object=intermediate-ca;type=private\"\n";
        assert!(names_key(text, "line", "intermediate-ca"));
        assert!(!names_key(text, "other", "intermediate-ca"));
        assert!(!names_key(text, "line", "root-ca"));
        assert!(!names_key(
            "object=intermediate-ca\n",
            "line",
            "intermediate-ca"
        ));
    }

    #[test]
    fn verification_codes_are_letters_and_digits() {
        assert_eq!(
            check_verification_code(" 1B2C3D4E5F60718293A4B5C6D7E8F90112233445566778899 ")
                .as_deref(),
            Ok("1B2C3D4E5F60718293A4B5C6D7E8F90112233445566778899")
        );
        assert!(check_verification_code("").is_err());
        assert!(check_verification_code("1B2C-3D4E").is_err());
        assert!(check_verification_code("code with spaces").is_err());
        assert!(check_verification_code(&"A".repeat(65)).is_err());
    }
}
