//! The banner between the readers and the log: the run stopping (and
//! what the quit key does next), the station or its job refused, or the
//! run finished with its summary. Nothing while the run simply runs.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::{bold, wrap};
use crate::control::Stop;
use crate::report::RunEnd;
use crate::tui::state::{ConsoleState, RunState};

pub struct Banner<'a>(pub &'a ConsoleState);

impl Banner<'_> {
    /// Its height at `width` (0: nothing to say).
    pub fn height(&self, width: u16) -> u16 {
        match self.content(width) {
            Some((_, _, lines)) => u16::try_from(lines.len()).unwrap_or(u16::MAX).saturating_add(2),
            None => 0,
        }
    }

    fn content(&self, width: u16) -> Option<(&'static str, Color, Vec<Line<'static>>)> {
        let s = self.0;
        let text_width = usize::from(width.saturating_sub(2));
        match s.run() {
            RunState::Finished(sum) => {
                let color = match sum.end {
                    RunEnd::Failed | RunEnd::Aborted => Color::Red,
                    RunEnd::Interrupted => Color::Yellow,
                    _ if s.refusal().is_some() => Color::Red,
                    _ => Color::Green,
                };
                let why = match (sum.end, s.refusal()) {
                    (RunEnd::Failed, Some(r)) => format!("stopped: {r}"),
                    _ => sum.end.text().to_owned(),
                };
                let mut counts = vec![
                    Span::styled(format!("passed {}", sum.passed), bold()),
                    Span::raw(" · "),
                    Span::styled(format!("rejected {}", sum.rejected), bold()),
                ];
                if sum.recovered > 0 {
                    counts.push(Span::raw(format!(" ({} in flight at start)", sum.recovered)));
                }
                let rates = format!(
                    "round trips per card {} · cards/hour {}",
                    sum.round_trips_per_card, sum.cards_per_hour
                );
                let mut lines: Vec<Line> = wrap(&why, text_width, 3)
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, Style::new().fg(color))))
                    .collect();
                let one = Line::from(counts.clone()).width() + 3 + rates.chars().count();
                if one <= text_width {
                    counts.push(Span::raw(" · "));
                    counts.push(Span::raw(rates));
                    lines.push(Line::from(counts));
                } else {
                    lines.push(Line::from(counts));
                    lines.push(Line::from(rates));
                }
                Some((" Finished ", color, lines))
            }
            RunState::Stopping(reason) => {
                let mut lines: Vec<Line> = wrap(reason, text_width, 2).into_iter().map(Line::from).collect();
                let next = match s.ui().stop_asked {
                    Stop::Run => "q rejects the cards in flight",
                    Stop::Drain => "q again rejects the cards in flight",
                    Stop::Abort => "rejecting the cards in flight",
                };
                lines.push(Line::from(Span::styled(next, Style::new().fg(Color::Yellow))));
                Some((" Stopping ", Color::Yellow, lines))
            }
            RunState::Running => s.refusal().map(|r| {
                let lines = wrap(r, text_width, 3)
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, Style::new().fg(Color::Red))))
                    .collect();
                (" Refused ", Color::Red, lines)
            }),
        }
    }
}

impl Widget for Banner<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some((title, color, lines)) = self.content(area.width) else {
            return;
        };
        let block = Block::bordered()
            .border_style(Style::new().fg(color))
            .title(Span::styled(
                title,
                Style::new().fg(color).add_modifier(Modifier::BOLD),
            ));
        Paragraph::new(lines).block(block).render(area, buf);
    }
}
