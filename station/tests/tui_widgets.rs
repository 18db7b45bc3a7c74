//! Snapshots of the console's widgets and of the whole screen (80×24 and
//! a narrow 60×20) for representative states, drawn with ratatui's
//! `TestBackend`, against `tests/snapshots/tui/*.txt`; and the colors
//! that carry meaning.
//!
//! A snapshot that differs is written beside it as `NAME.txt.new`; run
//! with `UPDATE_SNAPSHOTS=1` to accept every new drawing, then review the
//! diff before committing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tui_support;

use std::path::PathBuf;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Widget;
use ratatui::Terminal;
use station::control::Stop;
use station::report::ReaderStatus;
use station::tui::widgets::{Banner, CardLog, Footer, Header, Help, Readers, Screen};
use station::tui::{Action, Command, ConsoleState};
use tui_support::*;

/// Columns `s` takes on a terminal.
fn width(s: &str) -> usize {
    ratatui::text::Span::raw(s).width()
}

/// The buffer as text: one line per row, trailing spaces cut.
fn text(buf: &Buffer) -> String {
    let mut out = String::new();
    let w = buf.area.width;
    for y in 0..buf.area.height {
        let mut line = String::new();
        let mut skip = 0usize;
        for x in 0..w {
            let sym = buf[(buf.area.x + x, buf.area.y + y)].symbol();
            if skip > 0 {
                skip -= 1;
                continue;
            }
            line.push_str(sym);
            skip = width(sym).saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/tui")
        .join(format!("{name}.txt"))
}

/// Compares `actual` with the snapshot `name`.
fn check(name: &str, actual: &str) {
    let path = snapshot_path(name);
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let expected = std::fs::read_to_string(&path).ok();
    if expected.as_deref() == Some(actual) {
        let _ = std::fs::remove_file(path.with_extension("txt.new"));
        return;
    }
    if update {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let new = path.with_extension("txt.new");
    std::fs::write(&new, actual).unwrap();
    match expected {
        None => panic!(
            "no snapshot {name}: the drawing is in {} (UPDATE_SNAPSHOTS=1 accepts it)\n{actual}",
            new.display()
        ),
        Some(e) => panic!(
            "snapshot {name} differs (new drawing in {}; UPDATE_SNAPSHOTS=1 accepts it)\n--- expected\n{e}--- actual\n{actual}",
            new.display()
        ),
    }
}

fn render(widget: impl Widget, width: u16, height: u16) -> Buffer {
    let mut buf = Buffer::empty(Rect::new(0, 0, width, height));
    widget.render(buf.area, &mut buf);
    buf
}

/// The whole screen, drawn through a terminal as the console does.
fn screen(state: &ConsoleState, width: u16, height: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| f.render_widget(Screen(state), f.area())).unwrap();
    t.backend().buffer().clone()
}

/// The style of the first cell of the first occurrence of `needle`.
fn style_of(buf: &Buffer, needle: &str) -> Style {
    let t = text(buf);
    for (y, line) in t.lines().enumerate() {
        if let Some(i) = line.find(needle) {
            let x = width(&line[..i]);
            return buf[(x as u16, y as u16)].style();
        }
    }
    panic!("{needle:?} is not on the screen:\n{t}");
}

#[test]
fn whole_screen_80x24() {
    for (name, state) in states() {
        check(&format!("screen_{name}_80x24"), &text(&screen(&state, 80, 24)));
    }
}

#[test]
fn whole_screen_60x20() {
    for (name, state) in states() {
        check(&format!("screen_{name}_60x20"), &text(&screen(&state, 60, 20)));
    }
}

#[test]
fn header() {
    check("header_connecting", &text(&render(Header(&connecting()), 80, 4)));
    check(
        "header_personalizing",
        &text(&render(Header(&personalizing()), 80, 4)),
    );
    check(
        "header_unreachable",
        &text(&render(Header(&unreachable()), 80, 4)),
    );
    check(
        "header_refused",
        &text(&render(Header(&refused_station()), 80, 4)),
    );
    check("header_finished", &text(&render(Header(&finished()), 80, 4)));
}

#[test]
fn readers() {
    check(
        "readers_connecting",
        &text(&render(Readers(&connecting()), 80, 6)),
    );
    check(
        "readers_personalizing",
        &text(&render(Readers(&personalizing()), 80, 6)),
    );
    check(
        "readers_unreachable_60",
        &text(&render(Readers(&unreachable()), 60, 6)),
    );
    check(
        "readers_none",
        &text(&render(Readers(&ConsoleState::new()), 60, 5)),
    );
    // More readers than rows: the table follows the selection.
    let mut s = personalizing();
    let names: Vec<String> = (0..8).map(|i| format!("Virtual PCD 00 {i:02}")).collect();
    for n in &names {
        s.apply(&reader(n, ReaderStatus::Waiting, None));
    }
    for _ in 0..9 {
        s.handle(Action::SelectNext);
    }
    check("readers_scrolled", &text(&render(Readers(&s), 80, 7)));
}

#[test]
fn banner() {
    let s = personalizing();
    assert_eq!(Banner(&s).height(80), 0, "no banner while the run runs");
    let mut stop = personalizing();
    stop.handle(Action::Quit);
    at(
        &mut stop,
        38.0,
        &[stopping(
            "interrupted: finishing the cards in flight (again to reject them)",
        )],
    );
    check(
        "banner_stopping",
        &text(&render(Banner(&stop), 80, Banner(&stop).height(80))),
    );
    let f = finished();
    check(
        "banner_finished",
        &text(&render(Banner(&f), 80, Banner(&f).height(80))),
    );
    check(
        "banner_finished_60",
        &text(&render(Banner(&f), 60, Banner(&f).height(60))),
    );
    let r = refused_station();
    check(
        "banner_refused_60",
        &text(&render(Banner(&r), 60, Banner(&r).height(60))),
    );
}

#[test]
fn card_log() {
    let mut s = unreachable();
    at(
        &mut s,
        45.0,
        &[settled(true), refused("request", "the record is locked")],
    );
    check("log", &text(&render(CardLog(&s), 80, 10)));
    s.handle(Action::ScrollLog(3));
    check("log_scrolled", &text(&render(CardLog(&s), 80, 6)));
    check("log_empty", &text(&render(CardLog(&ConsoleState::new()), 40, 3)));
}

#[test]
fn footer() {
    let mut s = personalizing();
    check("footer_running", &text(&render(Footer(&s), 80, 1)));
    assert_eq!(s.handle(Action::Quit), Some(Command::Stop(Stop::Drain)));
    check("footer_draining", &text(&render(Footer(&s), 80, 1)));
    assert_eq!(s.handle(Action::Quit), Some(Command::Stop(Stop::Abort)));
    check("footer_aborting", &text(&render(Footer(&s), 80, 1)));
    check("footer_finished", &text(&render(Footer(&finished()), 80, 1)));
}

#[test]
fn help_overlay() {
    check("help", &text(&render(Help, 80, 20)));
    check("help_small", &text(&render(Help, 40, 10)));
}

#[test]
fn colors_say_the_state() {
    let s = personalizing();
    let buf = screen(&s, 80, 24);
    assert_eq!(style_of(&buf, "● connected").fg, Some(Color::Green));
    let p = style_of(&buf, "personalizing (2)");
    assert_eq!(p.fg, Some(Color::Cyan));
    assert!(p.add_modifier.contains(Modifier::BOLD));
    assert_eq!(style_of(&buf, "✓ 47110005").fg, Some(Color::Green));
    assert_eq!(style_of(&buf, "reject ").fg, Some(Color::Red));
    assert_eq!(style_of(&buf, "pass ").fg, Some(Color::Green));
    // The selected reader is highlighted.
    assert!(style_of(&buf, "▶ sim 0")
        .add_modifier
        .contains(Modifier::REVERSED));

    let buf = screen(&unreachable(), 80, 24);
    assert_eq!(style_of(&buf, "● unreachable").fg, Some(Color::Red));
    assert_eq!(style_of(&buf, "retry in 5 s").fg, Some(Color::Red));
    assert_eq!(style_of(&buf, "holding").fg, Some(Color::Yellow));
    assert_eq!(style_of(&buf, "failed · 4 s").fg, Some(Color::Red));

    let buf = screen(&refused_station(), 80, 24);
    let r = style_of(&buf, "REFUSED");
    assert_eq!(r.fg, Some(Color::Red));
    assert!(r.add_modifier.contains(Modifier::BOLD));

    let mut s = personalizing();
    s.apply(&reader("sim 1", ReaderStatus::Gone, None));
    s.apply(&reader("sim 0", ReaderStatus::Stopped, None));
    let buf = screen(&s, 80, 24);
    assert_eq!(style_of(&buf, "gone").fg, Some(Color::Magenta));
    assert_eq!(style_of(&buf, "stopped").fg, Some(Color::DarkGray));
    let buf = screen(&connecting(), 80, 24);
    let plain = style_of(&buf, "waiting").fg;
    assert!(matches!(plain, None | Some(Color::Reset)), "{plain:?}");
    assert_eq!(style_of(&buf, "● connecting").fg, Some(Color::Yellow));
}

#[test]
fn countdowns_and_elapsed_time_follow_the_clock() {
    let mut s = unreachable();
    let t = text(&screen(&s, 80, 24));
    assert!(t.contains("retry in 5 s") && t.contains("00:00:44"), "{t}");
    s.set_clock(std::time::Duration::from_millis(49_000));
    let t = text(&screen(&s, 80, 24));
    assert!(t.contains("retry in 1 s") && t.contains("00:00:49"), "{t}");
    s.set_clock(std::time::Duration::from_millis(49_600));
    let t = text(&screen(&s, 80, 24));
    assert!(
        t.contains("retrying now") && t.contains("failed · retrying"),
        "{t}"
    );
    // Finished: the elapsed time stops.
    let f = finished();
    let t = text(&screen(&f, 80, 24));
    assert!(t.contains("00:00:46"), "{t}");
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    for (_, state) in states() {
        for (w, h) in [(0, 0), (1, 1), (5, 3), (20, 8), (30, 40), (200, 10), (300, 80)] {
            let _ = render(Screen(&state), w, h);
        }
    }
}
