//! Key-store errors: each names the token and key involved and says what to do; none carries key
//! material or a PIN.

use std::path::PathBuf;

use cryptoki::error::RvError;

use super::profile::ProfileError;

/// The PKCS#11 return code of a failed call, printed as its `CKR_` name-ish short form.
fn rv_name(rv: &RvError) -> String {
    format!("{rv:?}")
}

/// The failing function as the PKCS#11 spec names it (`C_SignInit`), not as cryptoki prints it.
fn function_name(function: &cryptoki::context::Function) -> String {
    let text = format!("{function}");
    format!("C_{}", text.trim_start_matches("Function::"))
}

/// A key-store failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The profile could not be used (unknown, or its module is missing).
    #[error(transparent)]
    Profile(#[from] ProfileError),

    /// The module file exists but is not a loadable PKCS#11 library.
    #[error(
        "cannot load PKCS#11 module {path}: {reason}; check that it is the vendor's PKCS#11 library for this architecture"
    )]
    ModuleLoad {
        /// The module path.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },

    /// A PKCS#11 call failed outside any token (C_Initialize, C_GetSlotList).
    #[error("PKCS#11 module {path}: {function} failed with {rv}")]
    Module {
        /// The module path.
        path: PathBuf,
        /// The failing function.
        function: String,
        /// Its return code.
        rv: String,
    },

    /// No token with that label or serial.
    #[error(
        "no token {wanted} in PKCS#11 module {module} (tokens present: {present}); check the label, or that the HSM is plugged in and its client configured"
    )]
    TokenNotFound {
        /// `label "X"` or `serial "Y"`.
        wanted: String,
        /// The module path.
        module: PathBuf,
        /// The labels seen.
        present: String,
    },

    /// More than one token matched.
    #[error(
        "more than one token {wanted} in PKCS#11 module {module}; select it by serial (--token-serial) instead"
    )]
    TokenAmbiguous {
        /// What was asked for.
        wanted: String,
        /// The module path.
        module: PathBuf,
    },

    /// The PIN was wrong. The station never retries: tokens lock after a few wrong PINs.
    #[error(
        "wrong user PIN for token \"{token}\"; it was tried once and will not be retried automatically (the token locks after a few wrong PINs): check the PIN and run the command again"
    )]
    PinIncorrect {
        /// Token label.
        token: String,
    },

    /// The user PIN is locked.
    #[error(
        "the user PIN of token \"{token}\" is locked after too many wrong attempts; the security officer must unlock it (e.g. reset the user PIN with the SO PIN) before the station can use it"
    )]
    PinLocked {
        /// Token label.
        token: String,
    },

    /// The store was logged out (its key-injection session closed).
    #[error(
        "the station logged out of token \"{token}\" (its session was closed); open the token again to use its keys"
    )]
    LoggedOut {
        /// Token label.
        token: String,
    },

    /// The token went away (unplugged, network HSM unreachable) and did not come back.
    #[error(
        "token \"{token}\" was removed or became unreachable during {operation}; reconnect it and run the command again (nothing was signed for the failed operation)"
    )]
    TokenRemoved {
        /// Token label.
        token: String,
        /// What was being done.
        operation: String,
    },

    /// A PKCS#11 call on a token failed.
    #[error("token \"{token}\": {function} failed with {rv} while {operation}")]
    Pkcs11 {
        /// Token label.
        token: String,
        /// The failing PKCS#11 function.
        function: String,
        /// Its return code.
        rv: String,
        /// What the station was doing, naming the key.
        operation: String,
    },

    /// The token refused a mechanism the profile said it offers.
    #[error(
        "token \"{token}\" does not offer the mechanism {function} needs while {operation}; the HSM profile's [mechanisms] promise more than this token has (e.g. set ecdsa_sha256 = false to hash on the host), or use the right --profile"
    )]
    MechanismMissing {
        /// Token label.
        token: String,
        /// The failing PKCS#11 function.
        function: String,
        /// What the station was doing, naming the key.
        operation: String,
    },

    /// A non-PKCS#11 failure of the cryptoki layer (bad attribute conversion, ...).
    #[error("token \"{token}\": {operation} failed: {reason}")]
    Cryptoki {
        /// Token label.
        token: String,
        /// What the station was doing.
        operation: String,
        /// The library's message.
        reason: String,
    },

    /// The URI names a different token than this store holds.
    #[error(
        "key {uri} names token \"{wanted}\" but the station is using token \"{token}\"; select that token (--token) or fix the URI"
    )]
    WrongToken {
        /// The key URI.
        uri: String,
        /// The token the URI names.
        wanted: String,
        /// The token in use.
        token: String,
    },

    /// No object matches.
    #[error(
        "no object on token \"{token}\" matches {uri}; `dps-station hsm list` shows the keys present"
    )]
    KeyNotFound {
        /// The key URI.
        uri: String,
        /// Token label.
        token: String,
    },

    /// More than one object matches.
    #[error(
        "{count} objects on token \"{token}\" match {uri}; add `id=` or `type=` to name exactly one"
    )]
    KeyAmbiguous {
        /// The key URI.
        uri: String,
        /// Token label.
        token: String,
        /// How many matched.
        count: usize,
    },

    /// The key exists but is not of the kind the operation needs.
    #[error("key {uri} on token \"{token}\" is {found}, but {operation} needs {expected}")]
    WrongKeyType {
        /// The key URI.
        uri: String,
        /// Token label.
        token: String,
        /// What it is.
        found: String,
        /// What was needed.
        expected: String,
        /// The operation.
        operation: String,
    },

    /// An object with that label or id already exists; the station never overwrites keys.
    #[error(
        "token \"{token}\" already holds an object labelled \"{label}\" or with id {id}; choose another label/id (keys are never overwritten)"
    )]
    AlreadyExists {
        /// Token label.
        token: String,
        /// Object label.
        label: String,
        /// Hex id.
        id: String,
    },

    /// The profile says the token cannot do this.
    #[error("token \"{token}\" (profile {profile}) does not support {what}; {advice}")]
    Unsupported {
        /// Token label.
        token: String,
        /// Profile name.
        profile: String,
        /// The missing capability.
        what: String,
        /// What to do instead.
        advice: String,
    },

    /// The token returned something malformed (a bad EC point, a signature of the wrong length).
    #[error("token \"{token}\" returned a malformed {what} for {key}")]
    Malformed {
        /// Token label.
        token: String,
        /// What was malformed.
        what: String,
        /// The key.
        key: String,
    },

    /// Bad input to an operation (an empty label, a key of the wrong length).
    #[error("{0}")]
    Invalid(String),

    /// A software key store's file could not be used.
    #[error("software key store {path}: {reason}")]
    Software {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl KeyStoreError {
    /// Wraps a cryptoki error from a call on `token` while doing `operation`.
    pub(crate) fn from_cryptoki(token: &str, operation: &str, err: cryptoki::error::Error) -> Self {
        match err {
            cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _) => {
                KeyStoreError::PinIncorrect {
                    token: token.to_owned(),
                }
            }
            cryptoki::error::Error::Pkcs11(RvError::PinLocked, _) => KeyStoreError::PinLocked {
                token: token.to_owned(),
            },
            cryptoki::error::Error::Pkcs11(
                RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::TokenNotRecognized,
                _,
            ) => KeyStoreError::TokenRemoved {
                token: token.to_owned(),
                operation: operation.to_owned(),
            },
            cryptoki::error::Error::Pkcs11(RvError::MechanismInvalid, function) => {
                KeyStoreError::MechanismMissing {
                    token: token.to_owned(),
                    function: function_name(&function),
                    operation: operation.to_owned(),
                }
            }
            cryptoki::error::Error::Pkcs11(rv, function) => KeyStoreError::Pkcs11 {
                token: token.to_owned(),
                function: function_name(&function),
                rv: rv_name(&rv),
                operation: operation.to_owned(),
            },
            other => KeyStoreError::Cryptoki {
                token: token.to_owned(),
                operation: operation.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    /// Wraps a cryptoki error from a module-level call.
    pub(crate) fn from_module(path: &std::path::Path, err: cryptoki::error::Error) -> Self {
        match err {
            cryptoki::error::Error::Pkcs11(rv, function) => KeyStoreError::Module {
                path: path.to_owned(),
                function: function_name(&function),
                rv: rv_name(&rv),
            },
            cryptoki::error::Error::LibraryLoading(e) => KeyStoreError::ModuleLoad {
                path: path.to_owned(),
                reason: e.to_string(),
            },
            other => KeyStoreError::Module {
                path: path.to_owned(),
                function: "a PKCS#11 call".to_owned(),
                rv: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SoftHSM2 never locks a PIN (it only raises CKF_USER_PIN_COUNT_LOW), so the locked path is
    // checked here: a locked PIN maps to its own message, which tells the operator who can help.
    #[test]
    fn a_locked_pin_has_its_own_message() {
        let err = KeyStoreError::from_cryptoki(
            "Station CA",
            "logging in",
            cryptoki::error::Error::Pkcs11(RvError::PinLocked, cryptoki::context::Function::Login),
        );
        let msg = err.to_string();
        assert!(matches!(err, KeyStoreError::PinLocked { .. }));
        assert!(
            msg.contains("\"Station CA\"")
                && msg.contains("locked")
                && msg.contains("security officer"),
            "{msg}"
        );
        let err = KeyStoreError::from_cryptoki(
            "Station CA",
            "signing",
            cryptoki::error::Error::Pkcs11(
                RvError::DeviceRemoved,
                cryptoki::context::Function::Sign,
            ),
        );
        assert!(err.to_string().contains("reconnect"), "{err}");
    }
}
