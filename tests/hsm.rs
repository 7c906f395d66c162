//! Integration tests of the HSM key store against a real SoftHSM2 token (one fresh token per test).

#[path = "hsm/cli.rs"]
mod cli;
#[path = "hsm/common.rs"]
mod common;
#[path = "hsm/keys.rs"]
mod keys;
#[path = "hsm/recovery.rs"]
mod recovery;
#[path = "hsm/session.rs"]
mod session;
#[path = "hsm/signing.rs"]
mod signing;
#[path = "hsm/software.rs"]
mod software;
#[path = "hsm/token.rs"]
mod token;
#[path = "hsm/uri.rs"]
mod uri;
