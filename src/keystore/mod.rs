//! Key stores: where CA keys and symmetric group keys live (PKCS#11 HSMs, or software for development).

pub mod software;
