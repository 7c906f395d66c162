//! Device identities: registration IDs, certificate profiles, CSR checks, issuing, symmetric keys.
//!
//! Knows nothing of PKCS#11: CA keys sign through the [`signer::CaSigner`] trait, which the
//! keystore implements for HSM and software keys.

pub mod cert_info;
pub mod csr;
pub mod issue;
pub mod pem;
pub mod profile;
pub mod rcgen_signer;
pub mod registration_id;
pub mod self_signed;
pub mod signer;
pub mod symmetric;
pub mod template;
pub mod tpm_ek;
