//! Enrollment payloads for every attestation the station issues, checked before they leave: an
//! X.509 device certificate whose CN is not the registration ID, a leaf given as a group's signing
//! certificate, a key that is not base64 of 16–64 bytes or a `static` allocation over two hubs are
//! refused here with a message naming the enrollment, instead of costing an operation.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::model::{
    AllocationPolicy, AttestationMechanism, AttestationType, DeviceCapabilities, EnrollmentGroup,
    IndividualEnrollment, InitialTwin, InitialTwinProperties, ProvisioningStatus,
    ReprovisionPolicy, SymmetricKeyAttestation, TpmAttestation, TwinCollection, X509Attestation,
    X509CaReferences, X509CertificateWithInfo, X509Certificates,
};
use super::registration_id::{
    MAX_LEN, MAX_LEN_X509, RegistrationIdError, validate_group_id, validate_registration_id,
};
use crate::secret::SecretString;

/// Why a payload was not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The ID breaks the DPS rules.
    #[error(transparent)]
    Id(#[from] RegistrationIdError),
    /// The certificate text is not one PEM certificate.
    #[error(
        "the certificate for '{id}' is not a PEM certificate ({detail}); give the PEM text (-----BEGIN CERTIFICATE-----)"
    )]
    CertificateNotPem {
        /// Enrollment or group ID.
        id: String,
        /// Parser's words.
        detail: String,
    },
    /// DPS takes the CN of the device certificate as the registration ID.
    #[error(
        "the device certificate of '{id}' has subject CN '{cn}'; DPS requires the CN to be the \
         registration ID: issue the certificate with CN={id}"
    )]
    CommonNameMismatch {
        /// Registration ID.
        id: String,
        /// The CN found (empty if none).
        cn: String,
    },
    /// A group's signing certificate must be a CA.
    #[error(
        "the signing certificate of enrollment group '{id}' is not a CA certificate (basic \
         constraints CA:TRUE); give the root or intermediate that signs the devices"
    )]
    NotACa {
        /// Group ID.
        id: String,
    },
    /// A symmetric key is not base64 of 16–64 bytes.
    #[error("the {which} symmetric key of '{id}' must be base64 of 16 to 64 bytes ({detail})")]
    BadSymmetricKey {
        /// Enrollment or group ID.
        id: String,
        /// `primary` or `secondary`.
        which: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The TPM endorsement key is not base64.
    #[error(
        "the TPM endorsement key of '{id}' is not base64 (give EKpub as read from the TPM, base64)"
    )]
    BadEndorsementKey {
        /// Registration ID.
        id: String,
    },
    /// A CA reference name is empty.
    #[error(
        "enrollment group '{id}' needs the name of a CA certificate verified in the DPS instance"
    )]
    EmptyCaReference {
        /// Group ID.
        id: String,
    },
    /// `static` allocation needs exactly one hub.
    #[error(
        "'{id}' uses the static allocation policy with {count} IoT hubs; static needs exactly one"
    )]
    StaticNeedsOneHub {
        /// Enrollment or group ID.
        id: String,
        /// Hubs given.
        count: usize,
    },
    /// An IoT Hub device id IoT Hub would refuse.
    #[error(
        "the device id '{device_id}' of '{id}' is not a valid IoT Hub device id (at most 128 \
         characters: letters, digits and - . % _ * ? ! ( ) , : = @ $ ')"
    )]
    BadDeviceId {
        /// Registration ID.
        id: String,
        /// The device id.
        device_id: String,
    },
}

/// Settings shared by the enrollments of a batch (hubs, allocation, twin, status, policies).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrollmentSettings {
    /// IoT hub host names the enrollment may be assigned to (empty: the instance's linked hubs).
    pub iot_hubs: Vec<String>,
    /// How DPS chooses among them.
    pub allocation_policy: Option<AllocationPolicy>,
    /// Initial twin tags.
    pub tags: Option<TwinCollection>,
    /// Initial desired properties.
    pub desired_properties: Option<TwinCollection>,
    /// `enabled` or `disabled` (DPS default: enabled).
    pub provisioning_status: Option<ProvisioningStatus>,
    /// Re-provisioning behaviour.
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Whether the device is an IoT Edge device.
    pub iot_edge: Option<bool>,
}

impl EnrollmentSettings {
    fn check(&self, id: &str) -> Result<(), PayloadError> {
        if self.allocation_policy == Some(AllocationPolicy::Static) && self.iot_hubs.len() != 1 {
            return Err(PayloadError::StaticNeedsOneHub {
                id: id.to_string(),
                count: self.iot_hubs.len(),
            });
        }
        Ok(())
    }

    fn initial_twin(&self) -> Option<InitialTwin> {
        if self.tags.is_none() && self.desired_properties.is_none() {
            return None;
        }
        Some(InitialTwin {
            tags: self.tags.clone(),
            properties: self
                .desired_properties
                .clone()
                .map(|desired| InitialTwinProperties {
                    desired: Some(desired),
                }),
        })
    }

    fn individual(
        &self,
        id: &str,
        attestation: AttestationMechanism,
    ) -> Result<IndividualEnrollment, PayloadError> {
        self.check(id)?;
        Ok(IndividualEnrollment {
            registration_id: id.to_string(),
            device_id: None,
            registration_state: None,
            optional_device_information: None,
            attestation,
            capabilities: self
                .iot_edge
                .map(|iot_edge| DeviceCapabilities { iot_edge }),
            iot_hub_host_name: None,
            initial_twin: self.initial_twin(),
            etag: None,
            provisioning_status: self.provisioning_status,
            reprovision_policy: self.reprovision_policy,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
            allocation_policy: self.allocation_policy,
            iot_hubs: (!self.iot_hubs.is_empty()).then(|| self.iot_hubs.clone()),
            custom_allocation_definition: None,
        })
    }

    fn group(
        &self,
        id: &str,
        attestation: AttestationMechanism,
    ) -> Result<EnrollmentGroup, PayloadError> {
        self.check(id)?;
        Ok(EnrollmentGroup {
            enrollment_group_id: id.to_string(),
            attestation,
            capabilities: self
                .iot_edge
                .map(|iot_edge| DeviceCapabilities { iot_edge }),
            iot_hub_host_name: None,
            initial_twin: self.initial_twin(),
            etag: None,
            provisioning_status: self.provisioning_status,
            reprovision_policy: self.reprovision_policy,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
            allocation_policy: self.allocation_policy,
            iot_hubs: (!self.iot_hubs.is_empty()).then(|| self.iot_hubs.clone()),
            custom_allocation_definition: None,
        })
    }
}

/// X.509 individual enrollment: the device (leaf) certificate, whose CN is the registration ID.
pub fn x509_individual(
    registration_id: &str,
    device_certificate_pem: &str,
    settings: &EnrollmentSettings,
) -> Result<IndividualEnrollment, PayloadError> {
    validate_registration_id(registration_id, MAX_LEN_X509)?;
    let info = parse_certificate(registration_id, device_certificate_pem)?;
    // DPS compares registration IDs case-insensitively: a Trust&GO certificate's CN is
    // `sn` + uppercase hex, enrolled under the station's lowercase registration ID.
    if !info.common_name.eq_ignore_ascii_case(registration_id) {
        return Err(PayloadError::CommonNameMismatch {
            id: registration_id.to_string(),
            cn: info.common_name,
        });
    }
    let attestation = AttestationMechanism {
        kind: AttestationType::X509,
        tpm: None,
        x509: Some(X509Attestation {
            client_certificates: Some(primary_cert(&info.pem)),
            ..X509Attestation::default()
        }),
        symmetric_key: None,
    };
    settings.individual(registration_id, attestation)
}

/// Symmetric-key individual enrollment; with no keys DPS generates them (read them back with the
/// attestation-mechanism call).
pub fn symmetric_key_individual(
    registration_id: &str,
    primary_key: Option<SecretString>,
    secondary_key: Option<SecretString>,
    settings: &EnrollmentSettings,
) -> Result<IndividualEnrollment, PayloadError> {
    validate_registration_id(registration_id, MAX_LEN)?;
    let attestation = symmetric_attestation(registration_id, primary_key, secondary_key)?;
    settings.individual(registration_id, attestation)
}

/// TPM individual enrollment: the endorsement key (EKpub, base64) and optionally the SRK.
pub fn tpm_individual(
    registration_id: &str,
    endorsement_key: &str,
    storage_root_key: Option<&str>,
    settings: &EnrollmentSettings,
) -> Result<IndividualEnrollment, PayloadError> {
    validate_registration_id(registration_id, MAX_LEN)?;
    for key in std::iter::once(endorsement_key).chain(storage_root_key) {
        let key = key.trim();
        if key.is_empty() || BASE64_STANDARD.decode(key).is_err() {
            return Err(PayloadError::BadEndorsementKey {
                id: registration_id.to_string(),
            });
        }
    }
    let attestation = AttestationMechanism {
        kind: AttestationType::Tpm,
        tpm: Some(TpmAttestation {
            endorsement_key: endorsement_key.trim().to_string(),
            storage_root_key: storage_root_key.map(|k| k.trim().to_string()),
        }),
        x509: None,
        symmetric_key: None,
    };
    settings.individual(registration_id, attestation)
}

/// Sets the IoT Hub device id of an individual enrollment (default: the registration ID).
pub fn with_device_id(
    mut enrollment: IndividualEnrollment,
    device_id: &str,
) -> Result<IndividualEnrollment, PayloadError> {
    let ok = !device_id.is_empty()
        && device_id.len() <= 128
        && device_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.%_*?!(),:=@$'".contains(c));
    if !ok {
        return Err(PayloadError::BadDeviceId {
            id: enrollment.registration_id.clone(),
            device_id: device_id.to_string(),
        });
    }
    enrollment.device_id = Some(device_id.to_string());
    Ok(enrollment)
}

/// X.509 enrollment group over a root or intermediate CA certificate (PEM).
pub fn x509_group_signing_certificate(
    group_id: &str,
    ca_certificate_pem: &str,
    settings: &EnrollmentSettings,
) -> Result<EnrollmentGroup, PayloadError> {
    validate_group_id(group_id)?;
    let info = parse_certificate(group_id, ca_certificate_pem)?;
    if !info.is_ca {
        return Err(PayloadError::NotACa {
            id: group_id.to_string(),
        });
    }
    let attestation = AttestationMechanism {
        kind: AttestationType::X509,
        tpm: None,
        x509: Some(X509Attestation {
            signing_certificates: Some(primary_cert(&info.pem)),
            ..X509Attestation::default()
        }),
        symmetric_key: None,
    };
    settings.group(group_id, attestation)
}

/// X.509 enrollment group over CA certificates already verified in the DPS instance, by name.
pub fn x509_group_ca_reference(
    group_id: &str,
    primary_ca_name: &str,
    secondary_ca_name: Option<&str>,
    settings: &EnrollmentSettings,
) -> Result<EnrollmentGroup, PayloadError> {
    validate_group_id(group_id)?;
    if primary_ca_name.trim().is_empty() {
        return Err(PayloadError::EmptyCaReference {
            id: group_id.to_string(),
        });
    }
    let attestation = AttestationMechanism {
        kind: AttestationType::X509,
        tpm: None,
        x509: Some(X509Attestation {
            ca_references: Some(X509CaReferences {
                primary: Some(primary_ca_name.trim().to_string()),
                secondary: secondary_ca_name.map(|s| s.trim().to_string()),
            }),
            ..X509Attestation::default()
        }),
        symmetric_key: None,
    };
    settings.group(group_id, attestation)
}

/// Symmetric-key enrollment group: the group key from which device keys are derived.
pub fn symmetric_key_group(
    group_id: &str,
    primary_key: Option<SecretString>,
    secondary_key: Option<SecretString>,
    settings: &EnrollmentSettings,
) -> Result<EnrollmentGroup, PayloadError> {
    validate_group_id(group_id)?;
    let attestation = symmetric_attestation(group_id, primary_key, secondary_key)?;
    settings.group(group_id, attestation)
}

fn symmetric_attestation(
    id: &str,
    primary_key: Option<SecretString>,
    secondary_key: Option<SecretString>,
) -> Result<AttestationMechanism, PayloadError> {
    for (which, key) in [("primary", &primary_key), ("secondary", &secondary_key)] {
        if let Some(key) = key {
            check_symmetric_key(id, which, key)?;
        }
    }
    Ok(AttestationMechanism {
        kind: AttestationType::SymmetricKey,
        tpm: None,
        x509: None,
        symmetric_key: Some(SymmetricKeyAttestation {
            primary_key,
            secondary_key,
        }),
    })
}

fn check_symmetric_key(
    id: &str,
    which: &'static str,
    key: &SecretString,
) -> Result<(), PayloadError> {
    let bad = |detail: String| PayloadError::BadSymmetricKey {
        id: id.to_string(),
        which,
        detail,
    };
    let raw = zeroize::Zeroizing::new(
        BASE64_STANDARD
            .decode(key.expose().trim())
            .map_err(|_| bad("not base64".into()))?,
    );
    if !(16..=64).contains(&raw.len()) {
        return Err(bad(format!("it decodes to {} bytes", raw.len())));
    }
    Ok(())
}

fn primary_cert(pem: &str) -> X509Certificates {
    X509Certificates {
        primary: Some(X509CertificateWithInfo {
            certificate: Some(pem.to_string()),
            info: None,
        }),
        secondary: None,
    }
}

struct ParsedCertificate {
    pem: String,
    common_name: String,
    is_ca: bool,
}

fn parse_certificate(id: &str, pem: &str) -> Result<ParsedCertificate, PayloadError> {
    let not_pem = |detail: String| PayloadError::CertificateNotPem {
        id: id.to_string(),
        detail,
    };
    let der = CertificateDer::from_pem_slice(pem.trim().as_bytes())
        .map_err(|e| not_pem(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| not_pem(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let is_ca = cert.is_ca();
    // Send one clean PEM block (only the certificate, `\n` line ends).
    let body = BASE64_STANDARD.encode(der.as_ref());
    let mut clean = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        clean.push_str(&String::from_utf8_lossy(line));
        clean.push('\n');
    }
    clean.push_str("-----END CERTIFICATE-----\n");
    Ok(ParsedCertificate {
        pem: clean,
        common_name,
        is_ca,
    })
}
