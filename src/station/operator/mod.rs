//! The station as an operator's desk sees it, with no screen in it: who is signed in and in which
//! role ([`roles`]), the `[gui]` and `[roles]` sections of station.toml ([`settings`]), one picture
//! of the line that many listeners keep up to date from stamped events ([`line_view`]), and the
//! cloneable handle the GUI and tests drive the engine through ([`handle`]).

pub mod handle;
pub mod line_view;
pub mod roles;
pub mod scan;
pub mod settings;

pub use handle::{BatchCommand, BatchProvider, FixtureProvider, StationError, StationHandle};
pub use line_view::{LineView, SlotState, SlotView, Stamped, StationEvent};
pub use roles::Role;
