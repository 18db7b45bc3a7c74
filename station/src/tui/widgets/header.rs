//! The header, four lines: a title bar (station, job, readers, elapsed
//! time), the keyserver link (colored, with its retry countdown and
//! detail), the job's totals from the keyserver, this run's counts.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{bold, clock, dim, link_look, plural};
use crate::report::LinkStatus;
use crate::tui::state::{ConsoleState, RunState};

/// The header's height.
pub const HEIGHT: u16 = 4;

const LABEL: usize = 10;

pub struct Header<'a>(pub &'a ConsoleState);

fn label(text: &str) -> Span<'static> {
    Span::styled(format!(" {text:<LABEL$} "), bold())
}

impl Header<'_> {
    fn title(&self, area: Rect, buf: &mut Buffer) {
        let s = self.0;
        let bar = Style::new()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD);
        let start = s.start();
        let right = format!(" {} ", clock(s.elapsed()));
        let room = usize::from(area.width).saturating_sub(right.chars().count());
        // What does not fit is left out, the readers first.
        let mut left = String::from(" Cardsmith station");
        let parts = [
            (" ", &start.station),
            (" · job ", &start.job),
            (" · readers ", &start.readers),
        ];
        for (i, (sep, value)) in parts.into_iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let part = format!("{sep}{value}");
            if i > 0 && left.chars().count() + part.chars().count() > room {
                break;
            }
            left.push_str(&part);
        }
        let width = u16::try_from(right.chars().count()).unwrap_or(u16::MAX);
        let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(width)]).areas(area);
        Paragraph::new(left).style(bar).render(l, buf);
        Paragraph::new(right).style(bar).render(r, buf);
    }

    fn link(&self) -> Line<'static> {
        let s = self.0;
        let link = s.link();
        let (word, style) = link_look(link.state.as_ref());
        let mut spans = vec![
            label("keyserver"),
            Span::styled("● ", style),
            Span::styled(word, style),
        ];
        let retrying = matches!(link.state, Some(LinkStatus::Unreachable | LinkStatus::Lost));
        if retrying && !s.is_finished() {
            match s.link_retry_left() {
                Some(0) => spans.push(Span::styled(" · retrying now", style)),
                Some(n) => spans.push(Span::styled(format!(" · retry in {n} s"), style)),
                None => {}
            }
        }
        let detail = link
            .detail
            .clone()
            .or_else(|| (!s.start().keyserver.is_empty()).then(|| s.start().keyserver.clone()));
        if let Some(d) = detail {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(d, dim()));
        }
        Line::from(spans)
    }

    fn job(&self) -> Line<'static> {
        let mut spans = vec![label("job")];
        match self.0.job() {
            Some(j) => {
                spans.push(Span::styled(format!("{}/{}", j.issued, j.total), bold()));
                spans.push(Span::raw(format!(
                    " issued · {} queued · {} in flight · {} voided",
                    j.queued, j.in_flight, j.voided
                )));
            }
            None => spans.push(Span::styled("no totals from the keyserver yet", dim())),
        }
        Line::from(spans)
    }

    fn run(&self) -> Line<'static> {
        let s = self.0;
        let (passed, rejected) = match s.run() {
            RunState::Finished(sum) => (sum.passed, sum.rejected),
            _ => (s.passed(), s.rejected()),
        };
        let rejected_style = if rejected > 0 {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        Line::from(vec![
            label("this run"),
            Span::styled(format!("{passed} passed"), Style::new().fg(Color::Green)),
            Span::raw(" · "),
            Span::styled(format!("{rejected} rejected"), rejected_style),
            Span::raw(" · "),
            Span::raw(plural(
                u64::try_from(s.readers().len()).unwrap_or(u64::MAX),
                "reader",
                "readers",
            )),
        ])
    }
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let rows = Layout::vertical([Constraint::Length(1); HEIGHT as usize]).split(area);
        if let Some(r) = rows.first() {
            self.title(*r, buf);
        }
        let lines = [self.link(), self.job(), self.run()];
        for (line, r) in lines.into_iter().zip(rows.iter().skip(1)) {
            Paragraph::new(line).render(*r, buf);
        }
    }
}
