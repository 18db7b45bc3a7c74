//! The log: card results (serial, bin, the keyserver's reason), refusals,
//! link changes and the run stopping, newest first, scrolled by the
//! operator (`PgUp`/`PgDn`).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::{bold, clock, dim, log_look};
use crate::tui::state::ConsoleState;

pub struct CardLog<'a>(pub &'a ConsoleState);

impl Widget for CardLog<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.0;
        let scroll = s.ui().log_scroll;
        let mut title = vec![Span::raw(" Log ")];
        if scroll > 0 {
            title.push(Span::styled(format!("(↑ {scroll} newer, Home) "), dim()));
        }
        let block = Block::bordered().title(Line::from(title));
        let inner = block.inner(area);
        block.render(area, buf);
        if s.log().is_empty() {
            Paragraph::new(Span::styled("nothing yet", dim())).render(inner, buf);
            return;
        }
        let lines: Vec<Line> = s
            .log()
            .iter()
            .skip(scroll)
            .take(usize::from(inner.height))
            .map(|l| {
                let (tag, style) = log_look(l.kind);
                let mut spans = vec![
                    Span::styled(clock(l.at), dim()),
                    Span::raw(" "),
                    Span::styled(format!("{tag:<8}"), style),
                ];
                if let Some(r) = &l.reader {
                    spans.push(Span::styled(format!("{r}: "), bold()));
                }
                spans.push(Span::raw(l.text.clone()));
                Line::from(spans)
            })
            .collect();
        Paragraph::new(lines).render(inner, buf);
    }
}
