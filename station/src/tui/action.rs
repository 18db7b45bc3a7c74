//! What a key does: [`action_for`] turns a key press into an [`Action`],
//! [`ConsoleState::handle`] applies it and says what the runtime must do
//! ([`Command`]). Both pure, tested without a terminal.
//!
//! | key                         | action                                        |
//! |-----------------------------|-----------------------------------------------|
//! | `q`, `Q`, Ctrl-C            | [`Action::Quit`]: 1st finishes the cards in flight, 2nd (or the 1st once the run is stopping anyway) rejects them; once finished, closes |
//! | `Esc`                       | [`Action::Dismiss`]: closes the help; once finished, closes |
//! | `↓`, `j`, `Tab`             | [`Action::SelectNext`] reader                  |
//! | `↑`, `k`, `Shift-Tab`       | [`Action::SelectPrev`] reader                  |
//! | `PgDn` / `PgUp`             | [`Action::ScrollLog`] 10 lines older / newer   |
//! | `End` / `Home`              | the oldest / newest log lines                  |
//! | `?`, `h`, `F1`              | [`Action::ToggleHelp`]                         |
//!
//! Once the run has finished, any other key closes the console too (the
//! navigation keys still look around).

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{ConsoleState, RunState};
use crate::control::Stop;

/// How many lines PgUp / PgDn scroll the log.
pub const PAGE: i32 = 10;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the run (like Ctrl-C: first finish the cards in flight, then
    /// reject them); once finished, close the console.
    Quit,
    SelectNext,
    SelectPrev,
    /// Scroll the log by this many lines: positive toward older lines.
    ScrollLog(i32),
    ToggleHelp,
    /// Close the help; once finished, close the console.
    Dismiss,
    /// A key with no meaning.
    None,
}

/// What the runtime must do after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Ask the run to stop: [`Stop::Drain`] (take no new card, finish the
    /// cards in flight) or [`Stop::Abort`] (reject them).
    Stop(Stop),
    /// Leave the console (the run has finished).
    Exit,
}

/// The action of a key press (key releases do nothing).
pub fn action_for(key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let other = key
        .modifiers
        .intersects(KeyModifiers::ALT | KeyModifiers::SUPER | KeyModifiers::META);
    if other {
        return Action::None;
    }
    if ctrl {
        return match key.code {
            KeyCode::Char('c' | 'C') => Action::Quit,
            _ => Action::None,
        };
    }
    match key.code {
        KeyCode::Char('q' | 'Q') => Action::Quit,
        KeyCode::Esc => Action::Dismiss,
        KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => Action::SelectNext,
        KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => Action::SelectPrev,
        KeyCode::PageDown => Action::ScrollLog(PAGE),
        KeyCode::PageUp => Action::ScrollLog(-PAGE),
        KeyCode::End => Action::ScrollLog(i32::MAX),
        KeyCode::Home => Action::ScrollLog(i32::MIN),
        KeyCode::Char('?' | 'h') | KeyCode::F(1) => Action::ToggleHelp,
        _ => Action::None,
    }
}

impl ConsoleState {
    /// Applies an operator's action; what the runtime must do, if anything.
    pub fn handle(&mut self, action: Action) -> Option<Command> {
        let finished = self.is_finished();
        match action {
            Action::Quit if finished => Some(Command::Exit),
            Action::Quit => match self.ui.stop_asked {
                // Stopping already (the job is done, a signal): no new
                // card is taken; what is left to ask is to reject.
                Stop::Run if matches!(self.run(), RunState::Stopping(_)) => {
                    self.ui.stop_asked = Stop::Abort;
                    Some(Command::Stop(Stop::Abort))
                }
                Stop::Run => {
                    self.ui.stop_asked = Stop::Drain;
                    Some(Command::Stop(Stop::Drain))
                }
                Stop::Drain => {
                    self.ui.stop_asked = Stop::Abort;
                    Some(Command::Stop(Stop::Abort))
                }
                Stop::Abort => None,
            },
            Action::SelectNext => {
                self.select_by(1);
                None
            }
            Action::SelectPrev => {
                self.select_by(-1);
                None
            }
            Action::ScrollLog(n) => {
                self.scroll_by(n);
                None
            }
            Action::ToggleHelp => {
                self.ui.help = !self.ui.help;
                None
            }
            Action::Dismiss if self.ui.help => {
                self.ui.help = false;
                None
            }
            Action::Dismiss | Action::None => finished.then_some(Command::Exit),
        }
    }
}
