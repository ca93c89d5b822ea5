//! The panes of `top` (pure: rows in, tables out): connections (stuck
//! ones in red), listeners, TIME_WAIT and stuck connections, each a table
//! fitted to its area ([`super::columns`]) and scrolled to its window.
use std::ops::Range;

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Block, Row, Table},
};

use super::{
    app::{Pane, ViewState},
    columns::{Col, Fit, cut_left},
    feed::Rows,
    population::Place,
};
use crate::{
    escape::escape,
    output::{human_ns, millis},
};

/// What a local and a remote address need together before less wanted
/// columns get room: two IPv4 addresses of 17 (`93.184.216.34:443`).
const ADDRESSES: u16 = 34;
const KEYS: &str = " q quit  p pause  s sort  / filter  Esc clear  Tab pane  ↑↓ PgUp PgDn ";
/// Bars of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A program's name before less wanted columns get room.
const COMM: u16 = 15;

/// Connections stuck in a state they should pass through.
const STUCK: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Listeners that dropped connections (a full accept queue).
const DROPPING: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Short-lived listeners.
const SHORT_LIVED: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);
const FOCUSED: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

pub fn connections(frame: &mut Frame, area: Rect, rows: &Rows, view: &mut ViewState) {
    let shown = view.connections(rows);
    let range = window(view, Pane::Connections, area, shown.len());
    let mut title = format!(" Connections {} ", count(&range, shown.len()));
    if rows.untracked > 0 {
        title.push_str(&format!("(+{} untracked) ", rows.untracked));
    }
    let cols = [
        Col::fixed("PID", 7),
        Col::fixed("COMM", if area.width < 100 { 12 } else { 15 }),
        Col::fixed("STATE", 11),
        Col::fixed("AGE", 7),
        Col::fill("LOCAL").keep_end(),
        Col::fill("REMOTE").keep_end(),
        Col::optional("CONN_MS", 10, 1),
        Col::optional("RETR", 4, 0),
    ];
    let shown = &shown[range];
    let cells: Vec<Vec<String>> = shown
        .iter()
        .map(|c| {
            let (pid, comm) = match c.pid {
                Some(pid) => (pid.to_string(), c.comm.to_string()),
                None => ("-".into(), "-".into()),
            };
            let h = c.handshake;
            vec![
                pid,
                comm,
                c.state.to_string(),
                age(c.age_ns, c.before_start),
                c.local.to_string(),
                c.remote.to_string(),
                millis(h.connect_ns),
                h.syn_retransmits.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    let fit = Fit::new(&cols, &cells, inner(area), ADDRESSES);
    let body = cells.into_iter().zip(shown).map(|(cells, c)| {
        let row = fit.row(cells);
        if c.stuck { row.style(STUCK) } else { row }
    });
    let table = Table::new(body, fit.constraints())
        .header(fit.header(&cols).style(HEADER))
        .block(block(title, view.focus == Pane::Connections));
    frame.render_widget(table, area);
}

/// Connections stuck over `threshold_ns`, the oldest first.
pub fn stuck(frame: &mut Frame, area: Rect, rows: &Rows, view: &mut ViewState, threshold_ns: u64) {
    let all = &rows.stuck;
    let range = window(view, Pane::Stuck, area, all.len());
    let title = format!(
        " Stuck {} over {} ",
        count(&range, all.len()),
        human_ns(threshold_ns)
    );
    let cols = [
        Col::fixed("PID", 7),
        Col::fixed("COMM", 15),
        Col::fixed("STATE", 11),
        Col::fixed("AGE", 7),
        Col::fill("LOCAL").keep_end(),
        Col::fill("REMOTE").keep_end(),
    ];
    let cells: Vec<Vec<String>> = all[range]
        .iter()
        .map(|s| {
            let c = &s.conn;
            let (pid, comm) = if c.owner.is_known() {
                (c.owner.pid.to_string(), c.owner.comm.to_string())
            } else {
                ("-".into(), "-".into())
            };
            vec![
                pid,
                comm,
                c.state.to_string(),
                age(s.age_ns, c.predates),
                c.local.to_string(),
                c.remote.to_string(),
            ]
        })
        .collect();
    let fit = Fit::new(&cols, &cells, inner(area), ADDRESSES);
    let table = Table::new(cells.into_iter().map(|c| fit.row(c)), fit.constraints())
        .header(fit.header(&cols).style(HEADER))
        .block(block(title, view.focus == Pane::Stuck).title_bottom(KEYS));
    frame.render_widget(table, area);
}

pub fn listeners(frame: &mut Frame, area: Rect, rows: &Rows, view: &mut ViewState) {
    let all = &rows.listeners;
    let range = window(view, Pane::Listeners, area, all.len());
    let open: u64 = all.iter().map(|l| l.open).sum();
    let title = format!(" Listeners {} ({open} open) ", count(&range, all.len()));
    let cols = [
        Col::fixed("PROTO", 5),
        Col::fixed("PORT", 5),
        Col::fixed("KIND", 6),
        Col::fill("COMM"),
        Col::fixed("OPEN", 6),
        Col::optional("AGE", 7, 0),
        Col::fixed("QUEUE", 11),
        Col::fixed("DROPS", 8),
        Col::fixed("CYCLES", 8),
        Col::fixed("SHORT", 8),
        Col::fixed("FAILED", 8),
        Col::fixed("MEDIAN", 10),
    ];
    let shown = &all[range];
    let cells: Vec<Vec<String>> = shown
        .iter()
        .map(|l| {
            vec![
                l.key.proto.to_string(),
                l.key.port.to_string(),
                l.key.kind.name().to_string(),
                escape(&l.key.comm).into_owned(),
                l.open.to_string(),
                l.open_for
                    .map_or_else(|| "-".into(), |(ns, before)| age(ns, before)),
                l.queue
                    .map_or("-".into(), |(depth, backlog)| format!("{depth}/{backlog}")),
                l.drops.to_string(),
                l.cycles.to_string(),
                l.short.to_string(),
                l.failed_binds.to_string(),
                l.median_ns.map_or_else(|| "-".into(), human_ns),
            ]
        })
        .collect();
    let fit = Fit::new(&cols, &cells, inner(area), COMM);
    let body = cells.into_iter().zip(shown).map(|(c, l)| {
        let row = fit.row(c);
        if l.drops > 0 {
            row.style(DROPPING)
        } else if l.short > 0 {
            row.style(SHORT_LIVED)
        } else {
            row
        }
    });
    let table = Table::new(body, fit.constraints())
        .header(fit.header(&cols).style(HEADER))
        .block(block(title, view.focus == Pane::Listeners));
    frame.render_widget(table, area);
}

pub fn waiting(frame: &mut Frame, area: Rect, rows: &Rows, view: &mut ViewState) {
    let all = &rows.waiting;
    let range = window(view, Pane::TimeWait, area, all.len());
    let title = format!(
        " TIME_WAIT {} ({} now) ",
        count(&range, all.len()),
        rows.waiting_total
    );
    const FIXED: [u16; 3] = [24, 6, 6];
    // What is left of the inner width after the fixed columns and the
    // spaces between all four.
    let spark_width = area
        .width
        .saturating_sub(2 + FIXED.iter().sum::<u16>() + FIXED.len() as u16);
    let body = all[range].iter().map(|w| {
        let place = match w.place {
            Place::Port(port) => format!("local port {port}"),
            Place::To(addr) => format!("→ {}", cut_left(addr.to_string(), FIXED[0] - 2)),
            Place::Other => "(others)".into(),
        };
        let peak = w.peak();
        Row::new([
            place,
            w.now.to_string(),
            peak.to_string(),
            spark(&w.history, usize::from(spark_width), peak),
        ])
    });
    let widths = FIXED
        .map(Constraint::Length)
        .into_iter()
        .chain([Constraint::Fill(1)]);
    let table = Table::new(body, widths)
        .header(Row::new(["PORT / DESTINATION", "NOW", "PEAK", "LAST 5 MIN"]).style(HEADER))
        .block(block(title, view.focus == Pane::TimeWait));
    frame.render_widget(table, area);
}

/// The width inside a pane's borders.
fn inner(area: Rect) -> u16 {
    area.width.saturating_sub(2)
}

fn block(title: String, focused: bool) -> Block<'static> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(FOCUSED)
    } else {
        block
    }
}

/// The rows of `pane` that fit in `area` (inside the borders, under the
/// header) from its scroll position, which is kept in range; how many fit
/// is what PgUp and PgDn move.
fn window(view: &mut ViewState, pane: Pane, area: Rect, len: usize) -> Range<usize> {
    let fit = usize::from(area.height.saturating_sub(3));
    let i = pane.index();
    view.page[i] = fit.max(1);
    view.scroll[i] = view.scroll[i].min(len.saturating_sub(fit));
    view.scroll[i]..(view.scroll[i] + fit).min(len)
}

/// `12`, or `4-9 of 12` when not all rows fit.
fn count(shown: &Range<usize>, len: usize) -> String {
    if shown.len() == len {
        len.to_string()
    } else {
        format!("{}-{} of {len}", shown.start + 1, shown.end)
    }
}

/// `850ms`, `12s`, `3m04s`, `2h05m`, `3d04h`; `>` before a time that
/// began before socktrace did (it is at least that).
fn age(ns: u64, at_least: bool) -> String {
    let s = ns / 1_000_000_000;
    let text = match s {
        0 => format!("{}ms", ns / 1_000_000),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    };
    if at_least { format!(">{text}") } else { text }
}

/// `values` (oldest first) as at most `width` bars, the newest at the
/// right, each the most of the seconds it covers, scaled to `peak`; a
/// blank for none.
fn spark(values: &[u32], width: usize, peak: u32) -> String {
    if width == 0 || peak == 0 {
        return String::new();
    }
    let per_bar = values.len().div_ceil(width).max(1);
    let bars: Vec<u32> = values
        .rchunks(per_bar)
        .rev()
        .map(|seconds| seconds.iter().copied().max().unwrap_or(0))
        .collect();
    let mut out = " ".repeat(width.saturating_sub(bars.len()));
    for n in bars {
        out.push(match n {
            0 => ' ',
            n => {
                let level = (u64::from(n) * 8).div_ceil(u64::from(peak)).clamp(1, 8);
                BARS[level as usize - 1]
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(850_000_000, false), "850ms");
        assert_eq!(age(12_500_000_000, false), "12s");
        assert_eq!(age(184_000_000_000, true), ">3m04s");
        assert_eq!(age(7_500 * 1_000_000_000, false), "2h05m");
        assert_eq!(age(3 * 86_400 * 1_000_000_000, false), "3d00h");
    }

    #[test]
    fn sparklines() {
        assert_eq!(spark(&[0, 1, 2, 4, 8], 5, 8), " ▁▂▄█");
        // Fewer seconds than bars: right-aligned.
        assert_eq!(spark(&[8], 4, 8), "   █");
        // More: each bar the most of its seconds, the newest complete.
        assert_eq!(spark(&[8, 0, 0, 0, 4, 0], 3, 8), "█ ▄");
        assert_eq!(spark(&[0, 0], 3, 0), "");
    }
}
