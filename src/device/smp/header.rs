//! The SMP header (8 bytes, big-endian): `op | version << 3`, flags, body length, group, sequence,
//! command id. Version 2 (`version = 1`) carries errors as `err {group, rc}`; version 1 as `rc`.

/// Read request.
pub const OP_READ: u8 = 0;
/// Read response.
pub const OP_READ_RSP: u8 = 1;
/// Write request.
pub const OP_WRITE: u8 = 2;
/// Write response.
pub const OP_WRITE_RSP: u8 = 3;
/// SMP version 2 in the header's version bits.
pub const VERSION_2: u8 = 1;

/// Group 0: OS management.
pub const GROUP_OS: u16 = 0;
/// Group 3: settings.
pub const GROUP_SETTINGS: u16 = 3;
/// Group 8: file system.
pub const GROUP_FS: u16 = 8;
/// Group 9: shell.
pub const GROUP_SHELL: u16 = 9;

/// An SMP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Operation.
    pub op: u8,
    /// Protocol version (0 = v1, 1 = v2).
    pub version: u8,
    /// Flags.
    pub flags: u8,
    /// Body length.
    pub length: u16,
    /// Group id.
    pub group: u16,
    /// Sequence number.
    pub sequence: u8,
    /// Command id.
    pub id: u8,
}

/// The header's size.
pub const SIZE: usize = 8;

impl Header {
    /// The 8 bytes.
    pub fn to_bytes(self) -> [u8; SIZE] {
        let [lh, ll] = self.length.to_be_bytes();
        let [gh, gl] = self.group.to_be_bytes();
        [
            (self.op & 0b111) | ((self.version & 0b11) << 3),
            self.flags,
            lh,
            ll,
            gh,
            gl,
            self.sequence,
            self.id,
        ]
    }

    /// Parses the first 8 bytes of `packet`; `None` if it is shorter.
    pub fn parse(packet: &[u8]) -> Option<Header> {
        let b = packet.get(..SIZE)?;
        Some(Header {
            op: b[0] & 0b111,
            version: (b[0] >> 3) & 0b11,
            flags: b[1],
            length: u16::from_be_bytes([b[2], b[3]]),
            group: u16::from_be_bytes([b[4], b[5]]),
            sequence: b[6],
            id: b[7],
        })
    }
}
