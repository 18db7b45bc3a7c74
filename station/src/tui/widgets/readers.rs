//! The readers: one row per reader (name, status colored, cards passed and
//! rejected, cards/hour, the last card), the selected one highlighted,
//! and under the table the selected reader's details (what it does in
//! words, its last card and the reason it was rejected).

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, HighlightSpacing, Paragraph, Row, StatefulWidget, Table, TableState, Widget,
};

use super::{bold, dim, status_look};
use crate::readers::Bin;
use crate::report::{Event, ReaderStatus};
use crate::tui::state::{ConsoleState, ReaderRow};

/// Below this inner width the last-card column is left out.
const WIDE: u16 = 70;

/// Lines the block takes besides its rows: borders, heading, details.
pub const CHROME: u16 = 4;

pub struct Readers<'a>(pub &'a ConsoleState);

/// The status cell's words: `personalizing (2)`, `failed · 4 s`.
fn status_text(state: &ConsoleState, row: &ReaderRow) -> String {
    let (word, _) = status_look(row.status.as_ref());
    match (&row.status, row.round_trip) {
        (Some(ReaderStatus::Personalizing), Some(rt)) => format!("{word} ({rt})"),
        (Some(ReaderStatus::Failed), _) if !state.is_finished() => match state.reader_retry_left(row) {
            Some(0) => format!("{word} · retrying"),
            Some(n) => format!("{word} · {n} s"),
            None => word.to_owned(),
        },
        _ => word.to_owned(),
    }
}

fn last_card_cell(row: &ReaderRow) -> Cell<'static> {
    match &row.last_card {
        None => Cell::from(""),
        Some(c) => {
            let (mark, style) = match c.bin {
                Bin::Pass => ("✓", Style::new().fg(Color::Green)),
                Bin::Reject => ("✗", Style::new().fg(Color::Red)),
                Bin::Untouched => ("-", Style::new().fg(Color::Yellow)),
            };
            let serial = match (c.bin, c.serial.is_empty()) {
                (_, false) => c.serial.as_str(),
                (Bin::Untouched, true) => "untouched",
                (_, true) => "no serial",
            };
            Cell::from(Line::from(vec![
                Span::styled(mark, style),
                Span::raw(" "),
                Span::raw(serial.to_owned()),
            ]))
        }
    }
}

/// The selected reader in words.
fn details(row: &ReaderRow) -> Line<'static> {
    let mut spans = vec![Span::styled(format!("{}: ", row.name), bold())];
    let doing = match &row.status {
        Some(state) => {
            let text = Event::Reader {
                reader: String::new(),
                state: state.clone(),
                round_trip: row.round_trip,
                retry_in_s: None,
                detail: row.detail.clone(),
            }
            .text();
            text.trim_start_matches(": ").to_owned()
        }
        None => "found, not opened yet".to_owned(),
    };
    spans.push(Span::raw(doing));
    if let Some(c) = &row.last_card {
        let who = if c.serial.is_empty() {
            format!("request {}", c.request_id)
        } else {
            format!("card {}", c.serial)
        };
        let verdict = match c.bin {
            Bin::Pass => "passed",
            Bin::Reject => "rejected",
            Bin::Untouched => "left untouched",
        };
        let mut text = format!(" · last {who} {verdict}");
        if !c.reason.is_empty() {
            text.push_str(": ");
            text.push_str(&c.reason);
        }
        spans.push(Span::styled(text, dim()));
    }
    Line::from(spans)
}

impl Widget for Readers<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.0;
        let block = Block::bordered().title(Line::from(vec![
            Span::raw(" Readers "),
            Span::styled(format!("({}) ", s.readers().len()), dim()),
        ]));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        if s.readers().is_empty() {
            Paragraph::new(Span::styled("no reader found yet", dim())).render(inner, buf);
            return;
        }
        let wide = inner.width >= WIDE;
        let longest = s
            .readers()
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        let name = if wide {
            Constraint::Length(u16::try_from(longest.clamp(6, 30)).unwrap_or(30))
        } else {
            Constraint::Fill(1)
        };
        let mut head = vec!["reader", "status", "passed", "rejected", "cards/h"];
        let mut widths = vec![
            name,
            Constraint::Length(17),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
        ];
        if wide {
            head.push("last card");
            widths.push(Constraint::Fill(1));
        }
        let rows = s.readers().iter().map(|r| {
            let (_, style) = status_look(r.status.as_ref());
            let rejected_style = if r.rejected > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            let mut cells = vec![
                Cell::from(r.name.clone()),
                Cell::from(Span::styled(status_text(s, r), style)),
                Cell::from(Line::from(r.passed.to_string()).right_aligned()),
                Cell::from(Line::from(Span::styled(r.rejected.to_string(), rejected_style)).right_aligned()),
                Cell::from(Line::from(r.cards_per_hour().to_string()).right_aligned()),
            ];
            if wide {
                cells.push(last_card_cell(r));
            }
            Row::new(cells)
        });
        let table = Table::new(rows, widths)
            .header(Row::new(head).style(dim().add_modifier(Modifier::UNDERLINED)))
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶ ")
            .highlight_spacing(HighlightSpacing::Always)
            .column_spacing(1);
        let detail_h = u16::from(inner.height >= 3);
        let table_area = Rect {
            height: inner.height - detail_h,
            ..inner
        };
        let mut ts = TableState::default().with_selected(Some(s.ui().selected));
        StatefulWidget::render(table, table_area, buf, &mut ts);
        if detail_h == 1 {
            if let Some(row) = s.selected() {
                let at = Rect {
                    y: inner.y + inner.height - 1,
                    height: 1,
                    ..inner
                };
                Paragraph::new(details(row)).render(at, buf);
            }
        }
    }
}
