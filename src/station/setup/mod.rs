//! Installing and setting up a station: the first run (`first_run`: is a station configured, the
//! steps, writing `station.toml` through `station_file`), the fixture's udev names (`udev`) and the
//! walk-through that finds them (`detect`), and the operator's group (`access`). The CLI's `setup`
//! and `fixture` commands and the GUI's first-run screen call these.

pub mod access;
pub mod detect;
pub mod first_run;
pub mod station_file;
pub mod udev;
