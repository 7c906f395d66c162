//! The process-wide registry of loaded PKCS#11 modules. A module is loaded and `C_Initialize`d once
//! per process and never finalised: a second `C_Initialize` fails, and a `C_Finalize` would pull the
//! library out from under every other user in the process (another key store, another thread).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};

use crate::keystore::KeyStoreError;

fn registry() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The initialised context for the module at `path`, loading it on first use.
pub fn module(path: &Path) -> Result<Pkcs11, KeyStoreError> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    // A poisoned lock only means another thread panicked while loading; the map is still sound.
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = map.get(&key) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&key).map_err(|e| KeyStoreError::from_module(path, e))?;
    // OS locking: the station calls the module from several threads (one per pooled session).
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Someone else in the process (a plugin, a test harness) initialised it first: fine.
        Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(KeyStoreError::from_module(path, e)),
    }
    tracing::debug!(module = %key.display(), "PKCS#11 module loaded and initialised");
    map.insert(key, ctx.clone());
    Ok(ctx)
}
