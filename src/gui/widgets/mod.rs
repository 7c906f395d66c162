//! Widgets the screens share.

pub mod file_pick;
