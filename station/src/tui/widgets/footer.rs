//! The footer: the keys that matter now, and where the run is. On a
//! narrow screen the less needed keys are left out (the help has them
//! all).

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::dim;
use crate::control::Stop;
use crate::tui::state::{ConsoleState, RunState};

pub struct Footer<'a>(pub &'a ConsoleState);

/// A key and what it does.
fn item(key: &str, what: &str) -> Vec<Span<'static>> {
    vec![
        Span::styled(
            key.to_owned(),
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" {what}")),
    ]
}

impl Widget for Footer<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.0;
        let asked = s.ui().stop_asked;
        let (state, style) = match (s.run(), asked) {
            (RunState::Finished(_), _) => ("finished", Style::new().fg(Color::Green)),
            (_, Stop::Abort) => ("rejecting cards in flight", Style::new().fg(Color::Red)),
            (RunState::Stopping(_), _) | (_, Stop::Drain) => ("stopping", Style::new().fg(Color::Yellow)),
            (RunState::Running, Stop::Run) => ("running", Style::new().fg(Color::Green)),
        };
        let right = Line::from(vec![
            Span::styled("● ", style),
            Span::styled(state, style.add_modifier(Modifier::BOLD)),
            Span::raw(" "),
        ]);
        let first = if s.is_finished() {
            Some(item("any key", "close"))
        } else {
            match (asked, s.run()) {
                (Stop::Run, RunState::Running) => Some(item("q", "stop")),
                (Stop::Abort, _) => None,
                _ => Some(item("q", "reject in flight")),
            }
        };
        // In the order they are given up when space runs short: the
        // first (stop/close) and the help stay.
        let mut items: Vec<Vec<Span>> = first.into_iter().collect();
        let keep = items.len();
        items.push(item("?", "help"));
        items.insert(keep, item("PgUp/PgDn", "log"));
        items.insert(keep, item("↑↓", "reader"));
        let width = |items: &[Vec<Span>]| -> usize {
            items.iter().flatten().map(Span::width).sum::<usize>() + 3 * items.len() + 1
        };
        let room = usize::from(area.width).saturating_sub(right.width());
        while width(&items) > room && items.len() > keep + 1 {
            items.remove(keep);
        }
        let mut spans = vec![Span::raw(" ")];
        for (i, it) in items.into_iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", dim()));
            }
            spans.extend(it);
        }
        let rw = u16::try_from(right.width()).unwrap_or(u16::MAX);
        let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(rw)]).areas(area);
        Paragraph::new(Line::from(spans)).render(l, buf);
        Paragraph::new(right).render(r, buf);
    }
}
