//! The operations of an open session, each through `station::key_session` (the code
//! `dps-station hsm ...` runs): dual control checked first, files read but never copied.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::identity::profile::{CaProfile, Validity};
use crate::keystore::KeyStoreError;
use crate::keystore::import::{ImportError, parse_p256_private_key};
use crate::secret::SecretBytes;
use crate::station::config::officer::OfficerSettings;
use crate::station::key_session::{
    CaHierarchyRequest, KeyInjectionSession, KeySessionError, chain_pem, default_key_id,
};
use crate::station::operator::settings::RolesSection;

use super::{CaForm, Op, SecondOfficer, check_verification_code};

/// An operation's failure: the session's own error, or a refusal before it ran.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpError {
    #[error(transparent)]
    Session(#[from] KeySessionError),
    #[error(transparent)]
    DualControl(#[from] crate::station::config::officer::DualControlError),
    #[error("{0}")]
    Refused(String),
}

impl From<KeyStoreError> for OpError {
    fn from(e: KeyStoreError) -> Self {
        OpError::Session(e.into())
    }
}

pub(super) struct Work<'a> {
    pub(super) officer: &'a str,
    pub(super) settings: &'a OfficerSettings,
    pub(super) roles: &'a RolesSection,
}

impl Work<'_> {
    /// Dual control: the second officer is checked before anything runs, and named in the
    /// session's audit rows while the operation runs.
    fn approve(
        &self,
        session: &mut KeyInjectionSession<'_>,
        second: Option<SecondOfficer>,
    ) -> Result<(), OpError> {
        session.set_second_officer(None);
        if !self.settings.dual_control {
            return Ok(());
        }
        let Some(second) = second else {
            return Err(OpError::Refused(format!(
                "dual control is on for this station: a second officer (not {}) must enter their name and password before a CA key is created or imported",
                self.officer
            )));
        };
        self.settings.check_second_officer(
            self.roles,
            self.officer,
            &second.name,
            &second.password,
        )?;
        tracing::info!(officer = self.officer, second_officer = %second.name, "dual control approved");
        session.set_second_officer(Some(second.name.trim()));
        Ok(())
    }

    pub(super) fn perform(
        &self,
        session: &mut KeyInjectionSession<'_>,
        op: Op,
    ) -> Result<String, OpError> {
        let result = self.perform_inner(session, op);
        session.set_second_officer(None);
        result
    }

    fn perform_inner(
        &self,
        session: &mut KeyInjectionSession<'_>,
        op: Op,
    ) -> Result<String, OpError> {
        match op {
            Op::InitCa { form, second } => {
                let request = ca_request(&form)?;
                self.approve(session, second)?;
                let ca = session.init_ca(&request)?;
                Ok(format!(
                    "created root {} and intermediate {}; both certificates are stored on the token and in the ledger",
                    ca.root_key, ca.intermediate_key
                ))
            }
            Op::ImportCaKey {
                label,
                file,
                passphrase,
                second,
            } => {
                let label = required(&label, "label")?;
                let origin = file.display().to_string();
                let bytes = zeroize::Zeroizing::new(std::fs::read(&file).map_err(|e| {
                    OpError::Refused(format!(
                        "cannot read key file {origin}: {e}; choose the CA key file (PKCS#8 PEM or DER)"
                    ))
                })?);
                let scalar =
                    parse_p256_private_key(&origin, &bytes, passphrase.as_ref()).map_err(|e| {
                        match e {
                            ImportError::NeedsPassphrase { .. } => OpError::Refused(format!(
                                "{origin} is encrypted: enter its passphrase and import again"
                            )),
                            e => OpError::Refused(e.to_string()),
                        }
                    })?;
                self.approve(session, second)?;
                let uri =
                    session.import_ca_key(&label, &default_key_id(&label), &scalar, &origin)?;
                Ok(format!(
                    "imported {uri}; the key file {origin} was read, not copied, and still holds the key: destroy it once the import is verified"
                ))
            }
            Op::CreateGroupKey { label } => {
                let label = required(&label, "label")?;
                let uri = session.generate_group_key(&label, &default_key_id(&label))?;
                Ok(format!("created {uri}"))
            }
            Op::ImportGroupKey { label, key } => {
                let label = required(&label, "label")?;
                let raw = STANDARD
                    .decode(key.expose().trim())
                    .map(SecretBytes::new)
                    .map_err(|_| {
                        OpError::Refused(
                            "the group key is not valid base64 (DPS shows group keys in base64); paste it again".into(),
                        )
                    })?;
                let uri = session.import_group_key(&label, &default_key_id(&label), &raw)?;
                Ok(format!("imported {uri}"))
            }
            Op::Verification {
                ca_label,
                code,
                out,
            } => {
                let ca_label = required(&ca_label, "CA key label")?;
                let code =
                    check_verification_code(&code).map_err(|e| OpError::Refused(e.to_owned()))?;
                let token = session.store().token().label.clone();
                let uri = crate::keystore::Pkcs11Uri {
                    token: Some(token),
                    object: Some(ca_label.clone()),
                    ..Default::default()
                };
                let validity =
                    Validity::days_from_now(30).map_err(|e| OpError::Refused(e.to_string()))?;
                let cert = session.verification_certificate(&uri, &code, &validity)?;
                write_file(&out, cert.pem().as_bytes())?;
                Ok(format!(
                    "verification certificate for code {code} written to {}; upload it with:\naz iot dps certificate verify --dps-name <your-dps> --resource-group <group> --certificate-name {ca_label} --path {} --etag <etag>",
                    out.display(),
                    out.display()
                ))
            }
            Op::ExportChain {
                root_label,
                intermediate_label,
                out,
            } => {
                let text = chain_pem(session.store().as_ref(), &root_label, &intermediate_label)?;
                write_file(&out, text.as_bytes())?;
                Ok(format!(
                    "chain ({intermediate_label}, {root_label}) written to {}",
                    out.display()
                ))
            }
            Op::Close(_) => Ok(String::new()),
        }
    }
}

fn required(value: &str, what: &str) -> Result<String, OpError> {
    let v = value.trim();
    if v.is_empty() {
        Err(OpError::Refused(format!("give the key's {what}")))
    } else {
        Ok(v.to_owned())
    }
}

fn ca_request(form: &CaForm) -> Result<CaHierarchyRequest, OpError> {
    let refused = |e: &dyn std::fmt::Display| OpError::Refused(e.to_string());
    let root_label = required(&form.root_label, "root label")?;
    let intermediate_label = required(&form.intermediate_label, "intermediate label")?;
    let organization = Some(form.organization.trim().to_owned()).filter(|o| !o.is_empty());
    let mut root_profile =
        CaProfile::root(form.root_cn.trim().to_owned()).map_err(|e| refused(&e))?;
    root_profile.validity = Validity::days_from_now(form.root_days).map_err(|e| refused(&e))?;
    root_profile.subject.organization = organization.clone();
    let mut intermediate_profile =
        CaProfile::intermediate(form.intermediate_cn.trim().to_owned()).map_err(|e| refused(&e))?;
    intermediate_profile.validity =
        Validity::days_from_now(form.intermediate_days).map_err(|e| refused(&e))?;
    intermediate_profile.subject.organization = organization;
    Ok(CaHierarchyRequest {
        root_id: default_key_id(&root_label),
        root_label,
        root_profile,
        intermediate_id: default_key_id(&intermediate_label),
        intermediate_label,
        intermediate_profile,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OpError> {
    if path.as_os_str().is_empty() {
        return Err(OpError::Refused("choose the file to write".into()));
    }
    if let Some(dir) = path.parent() {
        // The default folder (the station's reports) may not exist yet; a failure shows below.
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, bytes).map_err(|e| {
        OpError::Refused(format!(
            "cannot write {}: {e}; choose a folder this user may write",
            path.display()
        ))
    })
}
