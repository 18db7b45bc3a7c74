//! The whole console: header, readers, banner, log, footer, and the help
//! over them when asked for.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Widget;

use super::{header, readers, Banner, CardLog, Footer, Header, Help, Readers};
use crate::tui::state::ConsoleState;

/// The fewest log lines (with its borders) the layout keeps.
const MIN_LOG: u16 = 4;

pub struct Screen<'a>(pub &'a ConsoleState);

impl Widget for Screen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.0;
        let banner = Banner(s);
        let banner_h = banner.height(area.width);
        let fixed = header::HEIGHT + banner_h + 1;
        let rows = u16::try_from(s.readers().len().max(1)).unwrap_or(u16::MAX);
        // The readers take what they need, as long as the log keeps a few
        // lines; the table scrolls to the selected reader otherwise.
        let room = area
            .height
            .saturating_sub(fixed + MIN_LOG)
            .max(readers::CHROME + 1);
        let readers_h = rows.saturating_add(readers::CHROME).min(room);
        let [head, table, note, log, foot] = Layout::vertical([
            Constraint::Length(header::HEIGHT),
            Constraint::Length(readers_h),
            Constraint::Length(banner_h),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        Header(s).render(head, buf);
        Readers(s).render(table, buf);
        banner.render(note, buf);
        CardLog(s).render(log, buf);
        Footer(s).render(foot, buf);
        if s.ui().help {
            Help.render(area, buf);
        }
    }
}
