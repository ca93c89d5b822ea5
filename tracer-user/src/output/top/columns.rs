//! Table columns fitted to the width a pane has: each column as wide as
//! its header or its widest cell (up to a cap), the fill columns sharing
//! what is left. When that is less than the fill columns need, optional
//! columns give way, lowest rank first: a narrow terminal loses detail,
//! never the essentials.
use ratatui::{layout::Constraint, widgets::Row};

/// Space between columns (ratatui's default).
const GAP: u16 = 1;

#[derive(Clone, Copy, Debug)]
pub struct Col {
    pub header: &'static str,
    /// The widest it gets; longer cells are cut.
    pub cap: u16,
    pub kind: Kind,
    /// Where a long cell is cut: an address keeps its end (the port).
    pub keep_end: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Always shown.
    Fixed,
    /// Shares, with the other fill columns, what the rest leave.
    Fill,
    /// Shown while the fill columns keep what they need; rank 0 gives way
    /// first.
    Optional(u8),
}

impl Col {
    pub const fn fixed(header: &'static str, cap: u16) -> Col {
        Col {
            header,
            cap,
            kind: Kind::Fixed,
            keep_end: false,
        }
    }

    pub const fn fill(header: &'static str) -> Col {
        Col {
            header,
            cap: u16::MAX,
            kind: Kind::Fill,
            keep_end: false,
        }
    }

    pub const fn optional(header: &'static str, cap: u16, rank: u8) -> Col {
        Col {
            kind: Kind::Optional(rank),
            ..Col::fixed(header, cap)
        }
    }

    /// Long cells keep their end.
    pub const fn keep_end(self) -> Col {
        Col {
            keep_end: true,
            ..self
        }
    }
}

/// The columns shown and their widths.
#[derive(Debug)]
pub struct Fit {
    /// Per column: its width, `None` when left out.
    widths: Vec<Option<u16>>,
    /// Per column: whether a long cell keeps its end.
    keep_end: Vec<bool>,
}

impl Fit {
    /// Fits `cols` with these `rows` (a cell per column) in `width`
    /// terminal columns, leaving the fill columns at least `fill_need` of
    /// them together while optional columns can give way.
    pub fn new(cols: &[Col], rows: &[Vec<String>], width: u16, fill_need: u16) -> Fit {
        let natural: Vec<u16> = cols
            .iter()
            .enumerate()
            .map(|(i, col)| {
                let widest = rows.iter().map(|r| len(&r[i])).max().unwrap_or(0);
                widest.max(len(col.header)).min(col.cap)
            })
            .collect();
        let mut shown: Vec<bool> = cols
            .iter()
            .map(|c| !matches!(c.kind, Kind::Optional(_)))
            .collect();
        let used = |shown: &[bool]| -> u16 {
            let (mut sum, mut n) = (0u16, 0u16);
            for (i, col) in cols.iter().enumerate() {
                if shown[i] {
                    n += 1;
                    if col.kind != Kind::Fill {
                        sum = sum.saturating_add(natural[i]);
                    }
                }
            }
            sum.saturating_add(n.saturating_sub(1) * GAP)
        };
        let mut ranked: Vec<(u8, usize)> = cols
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.kind {
                Kind::Optional(rank) => Some((rank, i)),
                _ => None,
            })
            .collect();
        // The most wanted first.
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in ranked {
            shown[i] = true;
            if width.saturating_sub(used(&shown)) < fill_need {
                shown[i] = false;
            }
        }
        let mut fills_left = cols
            .iter()
            .zip(&shown)
            .filter(|(c, s)| **s && c.kind == Kind::Fill)
            .count() as u16;
        let mut left = width.saturating_sub(used(&shown));
        let mut widths = Vec::with_capacity(cols.len());
        for (i, col) in cols.iter().enumerate() {
            widths.push(shown[i].then(|| {
                if col.kind == Kind::Fill {
                    // Equal shares; the last takes what division leaves.
                    let share = left / fills_left;
                    left -= share;
                    fills_left -= 1;
                    share
                } else {
                    natural[i]
                }
            }));
        }
        Fit {
            widths,
            keep_end: cols.iter().map(|c| c.keep_end).collect(),
        }
    }

    /// The width constraints of the columns shown.
    pub fn constraints(&self) -> Vec<Constraint> {
        self.widths
            .iter()
            .flatten()
            .map(|&w| Constraint::Length(w))
            .collect()
    }

    /// The headers of the columns shown.
    pub fn header(&self, cols: &[Col]) -> Row<'static> {
        Row::new(
            cols.iter()
                .zip(&self.widths)
                .filter(|(_, w)| w.is_some())
                .map(|(c, _)| c.header),
        )
    }

    /// The row of `cells` (one per column): those shown, cut to their
    /// widths.
    pub fn row(&self, cells: Vec<String>) -> Row<'static> {
        Row::new(
            cells
                .into_iter()
                .zip(self.widths.iter().zip(&self.keep_end))
                .filter_map(|(cell, (width, keep_end))| {
                    // The table cuts the others' ends.
                    let width = (*width)?;
                    Some(if *keep_end {
                        cut_left(cell, width)
                    } else {
                        cell
                    })
                }),
        )
    }
}

fn len(text: &str) -> u16 {
    u16::try_from(text.chars().count()).unwrap_or(u16::MAX)
}

/// `text` in `width` columns: when too long, its end (an address's port
/// matters most) after an ellipsis.
pub fn cut_left(text: String, width: u16) -> String {
    let width = usize::from(width);
    let len = text.chars().count();
    if len <= width || width == 0 {
        return text;
    }
    let tail: String = text.chars().skip(len - (width - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Col; 4] = [
        Col::fixed("PID", 7),
        Col::optional("EXTRA", 9, 0),
        Col::optional("MORE", 9, 1),
        Col::fill("ADDR").keep_end(),
    ];

    fn rows() -> Vec<Vec<String>> {
        vec![["42", "a", "bb", "10.0.0.1:80"].map(String::from).to_vec()]
    }

    #[test]
    fn columns_are_as_wide_as_their_header_or_widest_cell() {
        let mut rows = rows();
        rows.push(["123456789", "", "", ""].map(String::from).to_vec());
        let fit = Fit::new(&COLS, &rows, 40, 11);
        // PID capped at 7; EXTRA 5, MORE 4; what is left for ADDR.
        assert_eq!(fit.widths, [Some(7), Some(5), Some(4), Some(40 - 16 - 3)]);
    }

    #[test]
    fn optional_columns_give_way_lowest_rank_first() {
        // 3 PID + 1 + 4 MORE + 1 leaves 11 for ADDR; EXTRA does not fit.
        let fit = Fit::new(&COLS, &rows(), 20, 11);
        assert_eq!(fit.widths, [Some(3), None, Some(4), Some(11)]);
        let fit = Fit::new(&COLS, &rows(), 10, 11);
        assert_eq!(fit.widths, [Some(3), None, None, Some(6)]);
    }

    #[test]
    fn fill_columns_share_and_addresses_keep_their_port() {
        let cols = [Col::fill("A").keep_end(), Col::fill("B")];
        let row = vec!["192.168.100.200:54321".to_string(), "x".into()];
        let fit = Fit::new(&cols, std::slice::from_ref(&row), 36, 0);
        assert_eq!(fit.widths, [Some(17), Some(18)]);
        assert_eq!(
            cut_left("192.168.100.200:54321".into(), 17),
            "…68.100.200:54321"
        );
        assert_eq!(cut_left("10.0.0.1:80".into(), 17), "10.0.0.1:80");
    }
}
