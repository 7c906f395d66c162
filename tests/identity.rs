//! Identity integration tests: everything the station issues or derives is cross-checked with the
//! real `openssl` binary, and the CLI is driven through the real `dps-station` binary.

#[path = "identity/support.rs"]
mod support;

#[path = "identity/cert_info.rs"]
mod cert_info;

#[path = "identity/issue.rs"]
mod issue;

#[path = "identity/cli.rs"]
mod cli;

#[path = "identity/rules.rs"]
mod rules;

#[path = "identity/software_key.rs"]
mod software_key;

#[path = "identity/garbage.rs"]
mod garbage;

#[path = "identity/tpm_ek.rs"]
mod tpm_ek;
