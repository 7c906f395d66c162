//! Writing to a closed pipe (`dps-station ledger list | head -2`). Rust ignores SIGPIPE, so a
//! `println!` into a closed pipe panics; most commands instead take SIGPIPE's default action and
//! end quietly with the conventional status (128 + 13 = 141), as Unix tools do. `run` keeps
//! ignoring it and writes through [`Out`]: a closed stdout there pauses the batch like Ctrl-C (the
//! devices in flight finish, the ledger stays consistent) and the run ends with status 141.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use dps_station::station::events::Command;

/// The status of a command ended by a closed pipe (as a shell shows a process SIGPIPE killed).
pub const CLOSED_PIPE_STATUS: u8 = 128 + 13;

/// SIGPIPE's default action: a write into a closed pipe ends the process quietly (status 141).
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL before any other thread starts; no
    // handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// SIGPIPE ignored (Rust's default): writes into a closed pipe return `BrokenPipe` instead of
/// ending the process, for commands that must end cleanly (a batch, a server).
pub fn ignore_sigpipe() {
    // SAFETY: as above; SIG_IGN runs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Standard output of a batch run: once it is closed, nothing more is written, and the batch is
/// told to pause (once).
pub struct Out {
    closed: AtomicBool,
    on_close: Option<Sender<Command>>,
}

impl Out {
    /// Stdout; `on_close` gets [`Command::Close`] when it turns out closed.
    pub fn new(on_close: Option<Sender<Command>>) -> Self {
        Self {
            closed: AtomicBool::new(false),
            on_close,
        }
    }

    /// Writes one line, unless stdout is closed.
    pub fn line(&self, text: impl std::fmt::Display) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
            && !self.closed.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(
                "standard output is closed: pausing the batch; devices in flight finish"
            );
            if let Some(commands) = &self.on_close {
                let _ = commands.send(Command::Close);
            }
        }
    }

    /// The exit status when stdout was closed.
    pub fn closed_status(&self) -> Option<ExitCode> {
        self.closed
            .load(Ordering::SeqCst)
            .then(|| ExitCode::from(CLOSED_PIPE_STATUS))
    }
}
