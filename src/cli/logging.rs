//! Log set-up for the binary: human-readable lines on stderr, level from `-v` or `DPS_STATION_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; stdout stays free for command output and `--json`.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("DPS_STATION_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (in tests that call main twice) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
