//! Device identities: registration IDs, certificate profiles, CSR checks, issuing, symmetric keys.
//!
//! Knows nothing of PKCS#11: CA keys sign through the [`signer::CaSigner`] trait, which the
//! keystore implements for HSM and software keys.

pub mod cert_info;
pub mod pem;
pub mod registration_id;
pub mod signer;
pub mod symmetric;
pub mod template;
