//! The operator console: a full-screen view of
//! the run drawn with ratatui on crossterm.
//!
//! - [`state`]: [`ConsoleState`], everything the screen shows, changed only
//!   by the run's [`Event`](crate::report::Event)s, the operator's actions
//!   and the (injected) clock.
//! - [`action`]: [`action_for`] (a key → an [`Action`]) and
//!   [`ConsoleState::handle`] (an action → a [`Command`] for the runtime:
//!   ask the run to stop, close the console).
//! - [`widgets`]: one widget per file, drawn from the state alone.
//!
//! The quit key works as Ctrl-C does for the plain view (in raw mode
//! Ctrl-C is a key, not a signal): the first press finishes the cards in
//! flight and takes no new card, the second rejects them.

pub mod action;
pub mod state;
pub mod widgets;

pub use action::{action_for, Action, Command};
pub use state::ConsoleState;
