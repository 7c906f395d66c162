//! What a screen is to the shell: an id, a title, the least role that may open it, and a `ui`
//! that only draws and sends [`UiCommand`]s. The engineer's and the officer's screens plug in by
//! implementing [`Screen`] and being listed in [`super::screens::all`].
//!
//! A screen that needs I/O (a ledger query, an HSM call) owns its worker threads and channels:
//! `logic` takes their answers every frame, `ui` only draws what it holds and asks for more, and
//! the worker wakes the window with `request_repaint` when an answer lands. Nothing waits in `ui`.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::SystemTime;

use crate::station::operator::handle::BatchPreview;
use crate::station::operator::{BatchCommand, LineView, Role, StationHandle};

use super::i18n::Messages;
use super::theme::Palette;

/// A screen's identity (for navigation and tests).
pub type ScreenId = &'static str;

/// What a screen asks the shell to do; done in `logic()`, never inside `ui()`.
#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    /// Show this screen (if the role may).
    Navigate(ScreenId),
    /// Open (and list the batches folder) or close the batch picker.
    ShowPicker(bool),
    /// Read a batch file for the picker.
    Preview(PathBuf),
    /// Start the batch in this file (on a worker: keys and ledger open).
    StartBatch(PathBuf),
    /// Pause, resume, close.
    Batch(BatchCommand),
    /// Sign in by name.
    SignIn(String),
    /// Sign out.
    SignOut,
    /// Take a role with its password (on a worker: argon2 is slow on purpose).
    Unlock(Role, String),
    /// A problem was seen.
    Acknowledge(u64),
    /// A barcode scan, wherever focus was.
    Scan(String),
    /// Dark ↔ light.
    ToggleTheme,
    /// Sounds on ↔ off.
    ToggleSound,
    /// English ↔ Korean.
    ToggleLanguage,
    /// Leave the program (kiosk: engineers only).
    Quit,
}

/// What the picker knows (filled by the shell from commands).
#[derive(Debug, Clone, Default)]
pub struct PickerState {
    /// Batch files found.
    pub files: Vec<PathBuf>,
    /// The chosen file and what it will do, or why it cannot be read.
    pub preview: Option<(PathBuf, Result<BatchPreview, String>)>,
    /// A start is under way (keys, ledger opening).
    pub starting: bool,
    /// Whether it is shown.
    pub open: bool,
}

/// Everything a screen may read while drawing, and the way to ask for changes.
pub struct Desk<'a> {
    /// The line.
    pub view: &'a LineView,
    /// Messages.
    pub tr: &'a Messages,
    /// Colours.
    pub palette: Palette,
    /// Now (for times in slots, rates).
    pub now: SystemTime,
    /// The batch picker's state.
    pub picker: &'a PickerState,
    /// A slot to highlight (a device label was scanned).
    pub highlight: Option<&'a str>,
    /// The station (its configuration, role checks, the ledger's path): screens read from it
    /// and hand it to their own workers; they never block on it while drawing.
    pub station: &'a StationHandle,
    /// Where `send` puts commands (the shell's queue, read in its `logic`).
    pub(in crate::gui) send: &'a Sender<UiCommand>,
}

impl Desk<'_> {
    /// Asks the shell to do something after this frame.
    pub fn send(&self, command: UiCommand) {
        // The receiver lives in the same app as this desk: it cannot be gone while we draw.
        let _ = self.send.send(command);
    }
}

/// One screen of the desk.
pub trait Screen {
    /// Its id.
    fn id(&self) -> ScreenId;
    /// The message key of its title (navigation).
    fn title_key(&self) -> &'static str;
    /// The least role that may open it.
    fn min_role(&self) -> Role;
    /// Other roles that may open it too (the audit view: the officer's and the engineer's).
    fn also_for(&self) -> &'static [Role] {
        &[]
    }
    /// Draws it.
    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>);
    /// Runs every frame for every screen, shown or not, before anything is drawn: take workers'
    /// answers, run timers (an officer's session closes when idle even on another screen).
    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {}
    /// A line the shell shows under the top bar on every screen while it is `Some` (an open
    /// key-injection session: who, which token, since when). Warnings start with ▲.
    fn banner(&self, _tr: &Messages) -> Option<String> {
        None
    }
    /// The window is closing (or the desk is dropped): release what must not outlive it, e.g.
    /// log out of an HSM session. Called once.
    fn on_exit(&mut self) {}
}
