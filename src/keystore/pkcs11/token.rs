//! Finding a token by label or serial number, never by slot number: SoftHSM2 and others renumber
//! slots when tokens are added or re-plugged.

use std::fmt;
use std::path::Path;

use cryptoki::context::Pkcs11;
use cryptoki::slot::{Slot, TokenInfo};

use crate::keystore::KeyStoreError;

/// Which token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// By `CKA_LABEL` of the token (compared without its 32-byte space padding).
    Label(String),
    /// By serial number (for sites with several tokens of the same label).
    Serial(String),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "label \"{l}\""),
            TokenSelector::Serial(s) => write!(f, "serial \"{s}\""),
        }
    }
}

/// PKCS#11 pads token strings with spaces to a fixed width; some modules also leave NULs.
pub fn trim_padded(s: &str) -> &str {
    s.trim_end_matches([' ', '\0'])
}

/// The slot holding the one token matching `selector`, with its info.
pub fn find_token(
    ctx: &Pkcs11,
    module: &Path,
    selector: &TokenSelector,
) -> Result<(Slot, TokenInfo), KeyStoreError> {
    let mut found = Vec::new();
    let mut present = Vec::new();
    for (slot, info) in initialized_tokens(ctx, module)? {
        let label = trim_padded(info.label()).to_owned();
        let matches = match selector {
            TokenSelector::Label(want) => label == trim_padded(want),
            TokenSelector::Serial(want) => trim_padded(info.serial_number()) == trim_padded(want),
        };
        present.push(format!("\"{label}\""));
        if matches {
            found.push((slot, info));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(KeyStoreError::TokenNotFound {
            wanted: selector.to_string(),
            module: module.to_owned(),
            present: if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(", ")
            },
        }),
        _ => Err(KeyStoreError::TokenAmbiguous {
            wanted: selector.to_string(),
            module: module.to_owned(),
        }),
    }
}

/// Every initialised token the module shows, for `hsm list`.
pub fn list_tokens(ctx: &Pkcs11, module: &Path) -> Result<Vec<TokenInfo>, KeyStoreError> {
    Ok(initialized_tokens(ctx, module)?
        .into_iter()
        .map(|(_, info)| info)
        .collect())
}

/// Slots with an initialised token. A slot whose token cannot be read right now (being
/// initialised or unplugged at this moment) is skipped rather than failing the whole listing,
/// which cryptoki's `get_slots_with_initialized_token` would do.
fn initialized_tokens(
    ctx: &Pkcs11,
    module: &Path,
) -> Result<Vec<(Slot, TokenInfo)>, KeyStoreError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| KeyStoreError::from_module(module, e))?;
    Ok(slots
        .into_iter()
        .filter_map(|slot| ctx.get_token_info(slot).ok().map(|info| (slot, info)))
        .filter(|(_, info)| info.token_initialized())
        .collect())
}

/// The first slot whose token satisfies `wanted`, for code that creates tokens in this process
/// (the demo's SoftHSM2 tokens, test harnesses): SoftHSM2 rebuilds its slot list on every
/// `C_GetSlotList`, which other threads' key stores call, so a slot id listed a moment ago can
/// answer `CKR_GENERAL_ERROR`. An unreadable slot is skipped, and the list is scanned again (at
/// most `attempts` times, 10 ms apart) while no slot matches.
pub fn find_slot_where(
    ctx: &Pkcs11,
    module: &Path,
    attempts: u32,
    wanted: impl Fn(&TokenInfo) -> bool,
) -> Result<Option<Slot>, KeyStoreError> {
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let slots = ctx
            .get_all_slots()
            .map_err(|e| KeyStoreError::from_module(module, e))?;
        let found = slots
            .into_iter()
            .find(|slot| ctx.get_token_info(*slot).is_ok_and(|info| wanted(&info)));
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
