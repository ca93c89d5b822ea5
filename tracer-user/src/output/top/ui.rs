//! Drawing `top` (pure: the app in, a frame out): a status line, then the
//! panes ([`super::panes`]) laid out: connections, listeners, TIME_WAIT and stuck
//! connections, stacked on narrow terminals (80x24 shows every pane);
//! listeners and TIME_WAIT side by side on wide ones.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use super::{
    app::{App, ViewState},
    feed::Feed,
    panes::{connections, listeners, stuck, waiting},
};

/// Wide enough to put listeners and TIME_WAIT side by side.
const WIDE: u16 = 140;

/// Draws every pane, keeping each pane's scroll position in range.
pub fn render(app: &mut App, frame: &mut Frame) {
    let App { feed, frozen, view } = app;
    let paused = frozen.is_some();
    let now;
    let rows = match frozen {
        Some(rows) => &*rows,
        None => {
            now = feed.rows();
            &now
        }
    };
    let [status_area, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(frame.area());
    // Below the connections: listeners and TIME_WAIT (side by side when
    // wide), then stuck connections (their borders alone when there are
    // none). Each takes the rows it needs while together they leave the
    // connections a third of the height; else the tallest gives way.
    let wide = body.width >= WIDE;
    let stuck_need = match rows.stuck.len() {
        0 => 2,
        n => rows_height(n),
    };
    let (listeners_need, waiting_need) = (
        rows_height(rows.listeners.len()),
        rows_height(rows.waiting.len()),
    );
    let budget = body.height - body.height / 3;
    let [conns_area, listeners_area, waiting_area, stuck_area] = if wide {
        let [bottom, stuck] = share(
            [listeners_need.max(waiting_need), stuck_need],
            [4, stuck_need.min(4)],
            budget,
        );
        let [top, bottom, stuck] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(bottom),
            Constraint::Length(stuck),
        ])
        .areas(body);
        let [left, right] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(bottom);
        [top, left, right, stuck]
    } else {
        let heights = share(
            [listeners_need, waiting_need, stuck_need],
            [4, 4, stuck_need.min(4)],
            budget,
        );
        let [top, listeners, waiting, stuck] = Layout::vertical(
            [Constraint::Fill(1)]
                .into_iter()
                .chain(heights.map(Constraint::Length)),
        )
        .areas(body);
        [top, listeners, waiting, stuck]
    };
    status(frame, status_area, feed, paused, view);
    connections(frame, conns_area, rows, view);
    listeners(frame, listeners_area, rows, view);
    waiting(frame, waiting_area, rows, view);
    stuck(frame, stuck_area, rows, view, feed.stuck_ns());
}

/// Heights for panes that `need` so many lines, together at most
/// `budget`: the tallest gives a line at a time, down to its `floor`.
fn share<const N: usize>(need: [u16; N], floor: [u16; N], budget: u16) -> [u16; N] {
    let mut heights = need.map(|n| n.min(budget));
    while heights.iter().sum::<u16>() > budget {
        let tallest = (0..N)
            .filter(|&i| heights[i] > floor[i])
            .max_by_key(|&i| (heights[i], std::cmp::Reverse(i)));
        match tallest {
            Some(i) => heights[i] -= 1,
            None => break,
        }
    }
    heights
}

/// The height of a pane of `len` rows: borders and header, and at least
/// one row.
fn rows_height(len: usize) -> u16 {
    u16::try_from(len)
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .max(4)
}

fn status(frame: &mut Frame, area: Rect, feed: &Feed, paused: bool, view: &ViewState) {
    let bar = || Span::raw("│");
    let dropped = feed.dropped();
    let mut spans = vec![
        Span::raw(format!(" {} ev/s ", feed.rate())),
        bar(),
        Span::styled(
            format!(" dropped {dropped} "),
            if dropped > 0 {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            },
        ),
        bar(),
        if paused {
            Span::styled(" PAUSED ", Style::new().fg(Color::Black).bg(Color::Yellow))
        } else {
            Span::styled(" LIVE ", Style::new().fg(Color::Green))
        },
        bar(),
        Span::raw(format!(" sort {} ", view.sort.name())),
        bar(),
    ];
    if view.editing {
        spans.push(Span::raw(format!(" filter: {}", view.filter)));
        spans.push(Span::styled(
            " ",
            Style::new().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(" (Enter keeps, Esc clears)"));
    } else if view.filter.is_empty() {
        spans.push(Span::raw(" filter: - "));
    } else {
        spans.push(Span::styled(
            format!(" filter: {} ", view.filter),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Line::from(spans), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tallest_pane_gives_way_first() {
        assert_eq!(share([8, 6, 2], [4, 4, 2], 17), [8, 6, 2], "all fit");
        assert_eq!(share([7, 5, 9], [4, 4, 4], 17), [6, 5, 6]);
        assert_eq!(share([30, 4, 4], [4, 4, 4], 10), [4, 4, 4], "floors hold");
    }
}
