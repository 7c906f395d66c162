//! Ctrl-C and SIGTERM for `dps-station run`. The first signal pauses: no new device is taken,
//! the devices in flight finish, and the batch ends `Paused` (resumable by running the same
//! command again) with exit status 128 + the signal. A second signal (or, after SIGTERM, a grace
//! period: a service manager or a shutdown will not wait forever) aborts at once: the process
//! exits, and the identities of the devices cut off are voided when the batch is run again, the
//! same rollback as after a crash or a kill.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use dps_station::station::events::Command;

/// How long the devices in flight may take to finish after SIGTERM before the run aborts.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(30);

/// The environment variable that sets the grace after SIGTERM, in seconds.
pub const TERM_GRACE_ENV: &str = "DPS_STATION_STOP_TIMEOUT";

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The signal that paused the run, if any.
pub struct Interrupts {
    first: Arc<AtomicI32>,
}

impl Interrupts {
    /// The exit status of a run a signal paused (130 after Ctrl-C, 143 after SIGTERM).
    pub fn exit_code(&self) -> Option<ExitCode> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            n => Some(ExitCode::from(u8::try_from(128 + n).unwrap_or(1))),
        }
    }
}

/// The grace after SIGTERM: [`TERM_GRACE_ENV`] when set to a number of seconds, else
/// [`DEFAULT_TERM_GRACE`].
pub fn term_grace() -> anyhow::Result<Duration> {
    match std::env::var(TERM_GRACE_ENV) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| {
                anyhow::anyhow!(
                    "{TERM_GRACE_ENV}={v:?} is not a number of seconds: unset it or give e.g. 30"
                )
            }),
        Err(_) => Ok(DEFAULT_TERM_GRACE),
    }
}

/// Starts watching for SIGINT and SIGTERM: the first sends [`Command::Close`] on `commands`
/// and says how many devices (`in_flight`) will finish; the second exits the process.
pub fn watch(
    commands: Sender<Command>,
    in_flight: Arc<AtomicUsize>,
    grace: Duration,
) -> Interrupts {
    let first = Arc::new(AtomicI32::new(0));
    let seen = first.clone();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                tracing::warn!("cannot watch for Ctrl-C: no signal runtime");
                return;
            };
            rt.block_on(wait_for_signals(commands, in_flight, grace, seen));
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for Ctrl-C: {e}");
    }
    Interrupts { first }
}

async fn wait_for_signals(
    commands: Sender<Command>,
    in_flight: Arc<AtomicUsize>,
    grace: Duration,
    seen: Arc<AtomicI32>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch for Ctrl-C and SIGTERM");
        return;
    };
    let first = tokio::select! {
        _ = int.recv() => SIGINT,
        _ = term.recv() => SIGTERM,
    };
    seen.store(first, Ordering::SeqCst);
    let n = in_flight.load(Ordering::SeqCst);
    let (name, then) = if first == SIGINT {
        ("Ctrl-C", "Ctrl-C again aborts them".to_string())
    } else {
        (
            "SIGTERM",
            format!(
                "they are aborted after {} s or at a second signal",
                grace.as_secs()
            ),
        )
    };
    eprintln!(
        "\n{name}: pausing: {n} device(s) in flight will finish, no new device is taken ({then})"
    );
    tracing::warn!(signal = name, in_flight = n, "pausing the batch");
    let _ = commands.send(Command::Close);
    let why = tokio::select! {
        _ = int.recv() => "a second Ctrl-C".to_string(),
        _ = term.recv() => "SIGTERM".to_string(),
        _ = tokio::time::sleep(grace), if first == SIGTERM => format!(
            "the devices in flight did not finish within {} s of SIGTERM",
            grace.as_secs()
        ),
    };
    eprintln!(
        "aborting ({why}): the devices in flight are cut off; their identities are voided when \
         the batch is run again (the ledger stays consistent), and those devices go through the \
         line again"
    );
    tracing::warn!(reason = %why, "batch aborted");
    std::process::exit(128 + first);
}
