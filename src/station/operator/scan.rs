//! What a barcode scan is, by its shape. USB scanners type like a keyboard (characters, then
//! Enter, fast); the GUI collects them wherever focus is and asks here where the scan goes.

use std::path::{Path, PathBuf};

use super::settings::RolesSection;

/// Where a scan goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRoute {
    /// A badge in `[roles.badges]`: sign this person in.
    Badge(String),
    /// A work order naming a batch file in the batches folder (`WO:<file stem>` or the bare stem).
    WorkOrder(PathBuf),
    /// A device label: find the slot holding a device with this serial.
    DeviceSerial(String),
    /// Nothing it could be.
    Unknown(String),
}

/// Routes one scan.
pub fn route(scan: &str, roles: &RolesSection, batches: &Path) -> ScanRoute {
    let scan = scan.trim();
    if let Some(name) = roles.badges.get(scan) {
        return ScanRoute::Badge(name.clone());
    }
    let stem = scan
        .strip_prefix("WO:")
        .or_else(|| scan.strip_prefix("wo:"))
        .unwrap_or(scan);
    let safe = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !stem.starts_with('.');
    if safe {
        let file = batches.join(format!("{stem}.toml"));
        if file.is_file() {
            return ScanRoute::WorkOrder(file);
        }
    }
    let serial_like = (4..=64).contains(&scan.len())
        && scan
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if serial_like && !scan.starts_with("WO:") {
        return ScanRoute::DeviceSerial(scan.to_string());
    }
    ScanRoute::Unknown(scan.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_go_where_their_shape_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wo-4711.toml"), "").unwrap();
        let mut roles = RolesSection::default();
        roles.badges.insert("B0042".into(), "ann".into());
        assert_eq!(
            route("B0042\n", &roles, dir.path()),
            ScanRoute::Badge("ann".into())
        );
        assert_eq!(
            route("WO:wo-4711", &roles, dir.path()),
            ScanRoute::WorkOrder(dir.path().join("wo-4711.toml"))
        );
        assert_eq!(
            route("SN-000123", &roles, dir.path()),
            ScanRoute::DeviceSerial("SN-000123".into())
        );
        assert!(matches!(
            route("WO:../etc/x", &roles, dir.path()),
            ScanRoute::Unknown(_)
        ));
        assert!(matches!(
            route("a b", &roles, dir.path()),
            ScanRoute::Unknown(_)
        ));
    }
}
