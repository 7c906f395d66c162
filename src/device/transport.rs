//! The serial transport and port discovery: open a port at a speed, and list ports with their USB
//! identity and their stable `/dev/serial/by-id/...` path (the name that survives re-plugging,
//! unlike `/dev/ttyUSB3`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serialport::{SerialPort, SerialPortType};

use super::error::DeviceError;

/// Where udev puts stable symlinks to serial devices.
pub const BY_ID_DIR: &str = "/dev/serial/by-id";

/// The read timeout of an open port: reads return this often when nothing arrives, so the client
/// can check its own deadlines. Data is returned as soon as it arrives, whatever this value.
pub const READ_POLL: Duration = Duration::from_millis(20);

/// Opens `port` at `baud`, 8N1, no flow control.
pub fn open(port: &str, baud: u32) -> Result<Box<dyn SerialPort>, DeviceError> {
    serialport::new(port, baud)
        .timeout(READ_POLL)
        .open()
        .map_err(|source| DeviceError::Open {
            port: port.to_string(),
            source,
        })
}

/// One serial port as `device list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The kernel's device path (`/dev/ttyUSB0`, `/dev/ttyACM1`).
    pub path: String,
    /// The stable `/dev/serial/by-id/...` symlink pointing at it, if udev made one.
    pub by_id: Option<PathBuf>,
    /// USB identity, for USB adapters.
    pub usb: Option<UsbIdentity>,
}

/// The USB identity of an adapter or a device's own USB-serial function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbIdentity {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// The USB serial number string, if the device has one.
    pub serial_number: Option<String>,
    /// The manufacturer string.
    pub manufacturer: Option<String>,
    /// The product string.
    pub product: Option<String>,
}

/// Why ports could not be listed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot list serial ports: {0}; check that udev is running (or run as a user in the dialout group)"
)]
pub struct ListError(#[from] serialport::Error);

/// Every serial port the OS reports, sorted by path, each with its by-id link resolved.
pub fn list_ports() -> Result<Vec<PortInfo>, ListError> {
    let links = by_id_links(Path::new(BY_ID_DIR));
    let mut ports: Vec<PortInfo> = serialport::available_ports()?
        .into_iter()
        .map(|p| {
            let canonical =
                std::fs::canonicalize(&p.port_name).unwrap_or_else(|_| PathBuf::from(&p.port_name));
            let usb = match p.port_type {
                SerialPortType::UsbPort(u) => Some(UsbIdentity {
                    vid: u.vid,
                    pid: u.pid,
                    serial_number: u.serial_number,
                    manufacturer: u.manufacturer,
                    product: u.product,
                }),
                _ => None,
            };
            PortInfo {
                by_id: links.get(&canonical).cloned(),
                path: p.port_name,
                usb,
            }
        })
        .collect();
    ports.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ports)
}

/// Maps each device a symlink in `dir` resolves to, to that symlink. A missing directory (no USB
/// serial device plugged in) gives an empty map.
pub fn by_id_links(dir: &Path) -> BTreeMap<PathBuf, PathBuf> {
    let mut map = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return map;
    };
    for entry in entries.flatten() {
        let link = entry.path();
        if let Ok(target) = std::fs::canonicalize(&link) {
            map.insert(target, link);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_id_links_map_device_nodes_to_their_stable_names() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("ttyUSB7");
        std::fs::write(&node, "").unwrap();
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        let link = by_id.join("usb-Silicon_Labs_CP2102_0001-if00-port0");
        std::os::unix::fs::symlink("../ttyUSB7", &link).unwrap();
        let map = by_id_links(&by_id);
        assert_eq!(map.get(&std::fs::canonicalize(&node).unwrap()), Some(&link));
        assert!(by_id_links(&dir.path().join("absent")).is_empty());
    }

    #[test]
    fn opening_a_missing_port_names_it_and_says_what_to_do() {
        let err = open("/dev/serial/by-id/not-plugged-in", 115_200)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/serial/by-id/not-plugged-in") && err.contains("plugged in"),
            "{err}"
        );
    }
}
