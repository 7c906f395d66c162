//! Zephyr's MCUmgr Simple Management Protocol over a serial console (`docs/devices/zephyr-smp.md`):
//! the console framing, the SMP header and CBOR bodies.

pub mod cbor;
pub mod client;
pub mod driver;
pub mod frame;
pub mod header;
