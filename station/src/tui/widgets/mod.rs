//! One widget per file, each drawn from a [`ConsoleState`](crate::tui::state::ConsoleState) alone:
//!
//! - [`Header`]: station, job, elapsed time; the keyserver link (colored,
//!   with its retry countdown); the job's totals; this run's counts.
//! - [`Readers`]: one row per reader (status colored, passed, rejected,
//!   cards/hour, last card) and the selected reader's details.
//! - [`Banner`]: the run stopping, refused, or finished with its summary.
//! - [`CardLog`]: card results, refusals and link changes, newest first.
//! - [`Footer`]: the keys, and where the run is.
//! - [`Help`]: the keys and reader states, over the rest.
//! - [`Screen`]: all of them laid out.
//!
//! Nothing here shows card data beyond serials and the keyserver's
//! reasons: the events carry nothing else.

use std::time::Duration;

use ratatui::style::{Color, Modifier, Style};

use super::state::LogKind;
use crate::report::{LinkStatus, ReaderStatus};

mod banner;
mod footer;
mod header;
mod help;
mod log;
mod readers;
mod screen;

pub use banner::Banner;
pub use footer::Footer;
pub use header::Header;
pub use help::Help;
pub use log::CardLog;
pub use readers::Readers;
pub use screen::Screen;

/// `h:mm:ss` with at least two digits for the hours: `00:03:12`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The link's word and color.
pub fn link_look(state: Option<&LinkStatus>) -> (&'static str, Style) {
    match state {
        None => ("not contacted yet", Style::new().fg(Color::DarkGray)),
        Some(LinkStatus::Connecting) => ("connecting", Style::new().fg(Color::Yellow)),
        Some(LinkStatus::Connected) => ("connected", Style::new().fg(Color::Green)),
        Some(LinkStatus::Unreachable) => ("unreachable", Style::new().fg(Color::Red)),
        Some(LinkStatus::Lost) => ("connection lost", Style::new().fg(Color::Red)),
        Some(LinkStatus::Refused) => (
            "REFUSED",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    }
}

/// A reader status's word and color (`None`: listed, nothing said yet).
pub fn status_look(status: Option<&ReaderStatus>) -> (&'static str, Style) {
    match status {
        None => ("found", Style::new().fg(Color::DarkGray)),
        Some(ReaderStatus::Waiting) => ("waiting", Style::new()),
        Some(ReaderStatus::Holding) => ("holding", Style::new().fg(Color::Yellow)),
        Some(ReaderStatus::Personalizing) => (
            "personalizing",
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Some(ReaderStatus::Failed) => ("failed", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        Some(ReaderStatus::Gone) => ("gone", Style::new().fg(Color::Magenta)),
        Some(ReaderStatus::Stopped) => ("stopped", Style::new().fg(Color::DarkGray)),
    }
}

/// A log line's tag and color.
pub fn log_look(kind: LogKind) -> (&'static str, Style) {
    match kind {
        LogKind::Pass => ("pass", Style::new().fg(Color::Green)),
        LogKind::Reject => ("reject", Style::new().fg(Color::Red)),
        LogKind::Untouched => ("skipped", Style::new().fg(Color::Yellow)),
        LogKind::Refused => (
            "refused",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        LogKind::Settled => ("settled", Style::new().fg(Color::Magenta)),
        LogKind::Link => ("link", Style::new().fg(Color::Yellow)),
        LogKind::Stopping => ("stop", Style::new().fg(Color::Yellow)),
    }
}

/// A dim style for details.
pub(crate) fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A bold style for labels and names.
pub(crate) fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// "1 card", "2 cards".
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `text` cut into lines of at most `width` characters, at spaces where
/// it can; at most `max` lines (the last one ends with `…` when cut).
pub(crate) fn wrap(text: &str, width: usize, max: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let rest = word.split_off(width.min(word.len()));
            lines.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    if lines.len() > max {
        lines.truncate(max);
        if let Some(last) = lines.last_mut() {
            let mut cut: Vec<char> = last.chars().collect();
            cut.truncate(width.saturating_sub(1));
            *last = cut.into_iter().collect::<String>() + "…";
        }
    }
    lines
}
