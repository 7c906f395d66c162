//! The engine layer: code that combines the areas below it (ledger + dps for enrollment, ledger +
//! keystore + identity for key-injection sessions, all of them for the line) and that the CLI and
//! the GUI drive. The areas themselves never import each other.
//!
//! The line: [`engine::Engine`] runs a batch ([`config::BatchConfig`]) on a station
//! ([`config::StationConfig`]) with one thread per slot, one ledger writer, one enrollment worker;
//! it takes [`events::Command`]s and emits [`events::Event`]s.

pub mod batch_doc;
pub mod batch_esp32;
pub mod central_view;
pub mod config;
pub mod demo;
pub mod demo_desk;
pub mod demo_families;
pub mod engine;
pub mod enroll_bench;
pub mod enroll_now;
pub mod enroll_worker;
pub mod enrollment;
pub mod enrollment_view;
pub mod events;
pub mod family_fit;
pub mod hsm_bench;
pub mod identity_actions;
pub mod individual_keys;
pub mod key_session;
pub mod keys;
pub mod labels;
pub mod lease_gate;
pub mod ledger_report;
pub mod ledger_thread;
pub mod manifest_bench;
pub mod manifest_import;
pub mod manifest_line;
pub mod manifest_now;
pub mod mqtt_bench;
pub mod officer_session;
pub mod operator;
pub mod pipeline;
pub mod report;
pub mod report_data;
pub mod report_plots;
pub mod secret_file;
pub mod setup;
pub mod sim_fixture;
pub mod sim_fixture_esp32;
pub mod source;
