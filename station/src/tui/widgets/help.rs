//! The help, over the rest of the screen: the keys and what each reader
//! state means. `?` shows and hides it; `Esc` hides it.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

use super::{bold, dim, status_look};
use crate::report::ReaderStatus;

/// The help's size at most.
const WIDTH: u16 = 62;

pub struct Help;

fn key(k: &str, what: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("  {k:<12}"), bold()),
        Span::raw(what.to_owned()),
    ])
}

fn state(s: ReaderStatus, what: &str) -> Line<'static> {
    let (word, style) = status_look(Some(&s));
    Line::from(vec![
        Span::styled(format!("  {word:<14}"), style),
        Span::raw(what.to_owned()),
    ])
}

impl Help {
    fn lines() -> Vec<Line<'static>> {
        vec![
            Line::from(Span::styled("Keys", bold())),
            key("q, Ctrl-C", "stop: finish the cards in flight"),
            key("q again", "reject the cards in flight"),
            key("↑ ↓, j k", "select a reader: details under the table"),
            key("PgUp PgDn", "scroll the log (Home: newest, End: oldest)"),
            key("? h F1", "this help (Esc closes it)"),
            Line::from(Span::styled("Readers", bold())),
            state(ReaderStatus::Waiting, "no card in the reader"),
            state(ReaderStatus::Holding, "a card is in; waiting for the keyserver"),
            state(ReaderStatus::Personalizing, "(N): running round trip N"),
            state(ReaderStatus::Failed, "retried after a pause (· N s)"),
            state(ReaderStatus::Gone, "the reader went away"),
            state(ReaderStatus::Stopped, "no more cards in this run"),
            Line::from(Span::styled(
                "Shown of a card: its serial and the keyserver's reasons.",
                dim(),
            )),
        ]
    }
}

impl Widget for Help {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let lines = Help::lines();
        let want_h = u16::try_from(lines.len()).unwrap_or(u16::MAX).saturating_add(2);
        let w = WIDTH.min(area.width);
        let h = want_h.min(area.height);
        let at = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        Clear.render(at, buf);
        let block = Block::bordered()
            .border_style(Style::new().fg(Color::Cyan))
            .title(Span::styled(" Help ", bold()))
            .title_bottom(Line::from(Span::styled(" ? or Esc: close ", dim())).right_aligned());
        Paragraph::new(lines).block(block).render(at, buf);
    }
}
