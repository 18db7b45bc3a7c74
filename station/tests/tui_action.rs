//! `action_for` for every key and `ConsoleState::handle` for every action,
//! without a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use station::control::Stop;
use station::tui::action::PAGE;
use station::tui::{action_for, Action, Command, ConsoleState};
use tui_support::*;

fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn with(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

#[test]
fn every_key() {
    use KeyCode::*;
    let table = [
        (press(Char('q')), Action::Quit),
        (with(Char('Q'), KeyModifiers::SHIFT), Action::Quit),
        (with(Char('c'), KeyModifiers::CONTROL), Action::Quit),
        (press(Esc), Action::Dismiss),
        (press(Down), Action::SelectNext),
        (press(Char('j')), Action::SelectNext),
        (press(Tab), Action::SelectNext),
        (press(Up), Action::SelectPrev),
        (press(Char('k')), Action::SelectPrev),
        (with(BackTab, KeyModifiers::SHIFT), Action::SelectPrev),
        (press(PageDown), Action::ScrollLog(PAGE)),
        (press(PageUp), Action::ScrollLog(-PAGE)),
        (press(End), Action::ScrollLog(i32::MAX)),
        (press(Home), Action::ScrollLog(i32::MIN)),
        (press(Char('?')), Action::ToggleHelp),
        (with(Char('?'), KeyModifiers::SHIFT), Action::ToggleHelp),
        (press(Char('h')), Action::ToggleHelp),
        (press(F(1)), Action::ToggleHelp),
        // Keys with no meaning.
        (press(Enter), Action::None),
        (press(Char('x')), Action::None),
        (press(Char(' ')), Action::None),
        (press(F(2)), Action::None),
        (with(Char('q'), KeyModifiers::CONTROL), Action::None),
        (with(Char('q'), KeyModifiers::ALT), Action::None),
        (
            with(Char('c'), KeyModifiers::ALT | KeyModifiers::CONTROL),
            Action::None,
        ),
    ];
    for (key, want) in table {
        assert_eq!(action_for(key), want, "{key:?}");
    }
}

#[test]
fn key_releases_do_nothing_and_repeats_act() {
    let release = KeyEvent {
        code: KeyCode::Char('q'),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Release,
        state: KeyEventState::NONE,
    };
    assert_eq!(action_for(release), Action::None);
    let repeat = KeyEvent {
        kind: KeyEventKind::Repeat,
        code: KeyCode::Down,
        ..release
    };
    assert_eq!(action_for(repeat), Action::SelectNext);
}

#[test]
fn quit_drains_then_aborts_then_does_nothing() {
    let mut s = personalizing();
    assert_eq!(s.handle(Action::Quit), Some(Command::Stop(Stop::Drain)));
    assert_eq!(s.ui().stop_asked, Stop::Drain);
    assert_eq!(s.handle(Action::Quit), Some(Command::Stop(Stop::Abort)));
    assert_eq!(s.ui().stop_asked, Stop::Abort);
    assert_eq!(s.handle(Action::Quit), None);
}

#[test]
fn quit_while_the_run_stops_by_itself_rejects_the_cards_in_flight() {
    let mut s = personalizing();
    s.apply(&stopping("the job is done"));
    assert_eq!(s.handle(Action::Quit), Some(Command::Stop(Stop::Abort)));
    assert_eq!(s.handle(Action::Quit), None);
}

#[test]
fn once_finished_keys_close_the_console_but_navigation_does_not() {
    let mut s = finished();
    for a in [
        Action::SelectNext,
        Action::SelectPrev,
        Action::ScrollLog(3),
        Action::ToggleHelp,
    ] {
        assert_eq!(s.handle(a), None, "{a:?}");
    }
    assert!(s.ui().help);
    assert_eq!(s.handle(Action::Dismiss), None, "Esc closes the help first");
    assert!(!s.ui().help);
    assert_eq!(s.handle(Action::Dismiss), Some(Command::Exit));
    assert_eq!(s.handle(Action::None), Some(Command::Exit));
    assert_eq!(s.handle(Action::Quit), Some(Command::Exit));
}

#[test]
fn while_running_only_quit_asks_the_runtime_for_anything() {
    let mut s = personalizing();
    for a in [
        Action::SelectNext,
        Action::SelectPrev,
        Action::ScrollLog(1),
        Action::ToggleHelp,
        Action::Dismiss,
        Action::None,
    ] {
        assert_eq!(s.handle(a), None, "{a:?}");
    }
}

#[test]
fn selection_stays_on_the_readers() {
    let mut s = personalizing();
    assert_eq!(s.selected().unwrap().name, "sim 0");
    s.handle(Action::SelectPrev);
    assert_eq!(s.ui().selected, 0);
    s.handle(Action::SelectNext);
    assert_eq!(s.selected().unwrap().name, "sim 1");
    s.handle(Action::SelectNext);
    assert_eq!(s.selected().unwrap().name, "sim 1", "no wrap");
    let mut empty = ConsoleState::new();
    empty.handle(Action::SelectNext);
    assert_eq!(empty.ui().selected, 0);
    assert!(empty.selected().is_none());
}

#[test]
fn the_log_scrolls_within_its_lines() {
    let mut s = personalizing();
    let len = s.log().len();
    s.handle(Action::ScrollLog(2));
    assert_eq!(s.ui().log_scroll, 2);
    s.handle(Action::ScrollLog(-1));
    assert_eq!(s.ui().log_scroll, 1);
    s.handle(Action::ScrollLog(i32::MAX));
    assert_eq!(s.ui().log_scroll, len - 1, "the oldest line stays in view");
    s.handle(Action::ScrollLog(i32::MIN));
    assert_eq!(s.ui().log_scroll, 0);
}

#[test]
fn help_toggles_and_esc_closes_it() {
    let mut s = connecting();
    s.handle(Action::ToggleHelp);
    assert!(s.ui().help);
    s.handle(Action::ToggleHelp);
    assert!(!s.ui().help);
    s.handle(Action::ToggleHelp);
    s.handle(Action::Dismiss);
    assert!(!s.ui().help);
}
