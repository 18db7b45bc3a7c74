//! The operator console (`station run --console`): a full-screen view of
//! the run drawn with ratatui on crossterm.
//!
//! - [`state`]: [`ConsoleState`], everything the screen shows, changed only
//!   by the run's [`Event`](crate::report::Event)s, the operator's actions
//!   and the (injected) clock.
//! - [`action`]: [`action_for`] (a key → an [`Action`]) and
//!   [`ConsoleState::handle`] (an action → a [`Command`] for the runtime:
//!   ask the run to stop, close the console).
//! - [`widgets`]: one widget per file, drawn from the state alone.
//! - [`run_console`]: the runtime: a [`Report`](crate::report::Report)
//!   that forwards events to a thread owning the terminal (raw mode,
//!   alternate screen, restored on exit, error and panic), redrawing on
//!   each event and four times a second.
//!
//! The quit key works as Ctrl-C does for the plain view (in raw mode
//! Ctrl-C is a key, not a signal): the first press finishes the cards in
//! flight and takes no new card, the second rejects them. When the run
//! has finished, the final screen stays until a key is pressed, and the
//! caller prints the summary lines on the normal screen.

pub mod action;
mod console;
pub mod state;
pub mod widgets;

pub use action::{action_for, Action, Command};
pub use console::{request_stop, run_console, Console, ConsoleOptions, ConsoleReport};
pub use state::ConsoleState;
