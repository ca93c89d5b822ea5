//! Connection lifecycles by program and place (pure): how many
//! connections, how they ended, how long they lived, what they carried.
//! A client's connections group by destination, a server's by the local
//! address it serves on.
use std::{collections::BTreeMap, sync::Arc};

use super::timewait::Place;
use crate::track::{Close, Opener, Record};

/// A row: one program and where its connections went.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    /// The owner's name, `-` when `known` is not.
    pub comm: String,
    pub known: bool,
    pub place: Place,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub connections: u64,
    /// Never established (refused, timed out, ...).
    pub failed: u64,
    pub reset: u64,
    /// Ended in TIME_WAIT on this side.
    pub time_wait: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Segments retransmitted, over the connections whose kernel counts.
    pub retransmits: u64,
    /// RSTs sent here, by the kernel's reason (where it gave one).
    pub reset_reasons: BTreeMap<Arc<str>, u64>,
    durations: Sample,
    connects: Sample,
}

/// The most values kept per row for the percentiles.
const SAMPLE: usize = 8192;

/// Values for percentiles: all of them up to [`SAMPLE`], then the latest
/// in turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sample {
    seen: usize,
    kept: Vec<u64>,
}

impl Sample {
    fn add(&mut self, value: u64) {
        if self.kept.len() < SAMPLE {
            self.kept.push(value);
        } else {
            self.kept[self.seen % SAMPLE] = value;
        }
        self.seen += 1;
    }

    /// (median, 99th percentile, max).
    fn quantiles(&self) -> Option<(u64, u64, u64)> {
        let mut d = self.kept.clone();
        d.sort_unstable();
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        (!d.is_empty()).then(|| (at(0.5), at(0.99), at(1.0)))
    }
}

impl Row {
    /// (median, 99th percentile, max) duration in nanoseconds.
    pub fn durations(&self) -> Option<(u64, u64, u64)> {
        self.durations.quantiles()
    }

    /// (median, 99th percentile, max) handshake time in nanoseconds, of
    /// the connections whose handshake was seen.
    pub fn connects(&self) -> Option<(u64, u64, u64)> {
        self.connects.quantiles()
    }

    fn add(&mut self, c: &Close) {
        self.connections += 1;
        self.failed += u64::from(c.failure.is_some());
        self.reset += u64::from(c.reset_by.is_some());
        self.time_wait += u64::from(c.time_wait);
        self.bytes_sent += c.bytes_sent;
        self.bytes_received += c.bytes_received;
        self.retransmits += c.tcp.map_or(0, |t| u64::from(t.retransmits));
        if let Some(why) = &c.reset_reason {
            *self.reset_reasons.entry(Arc::clone(why)).or_default() += 1;
        }
        self.durations.add(c.duration_ns);
        if let Some(ns) = c.connect_ns {
            self.connects.add(ns);
        }
    }
}

#[derive(Debug, Default)]
pub struct Lifecycles {
    rows: BTreeMap<RowKey, Row>,
}

impl Lifecycles {
    pub fn observe(&mut self, record: &Record) {
        if let Record::Close(c) = record {
            let comm = if c.owner.is_known() {
                c.owner.comm.as_str().into_owned()
            } else {
                "-".into()
            };
            let place = match c.opener {
                Opener::Passive => Place::Served(c.local),
                _ => Place::To(c.remote),
            };
            let key = RowKey {
                comm,
                known: c.owner.is_known(),
                place,
            };
            self.rows.entry(key).or_default().add(c);
        }
    }

    /// Rows, the busiest first.
    pub fn rows(&self) -> Vec<(&RowKey, &Row)> {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| b.1.connections.cmp(&a.1.connections).then(a.0.cmp(b.0)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Owner, TcpStats};

    #[test]
    fn handshake_times_and_retransmits_by_row() {
        let mut l = Lifecycles::default();
        for (i, connect_ms) in [Some(1), Some(2), Some(1003), None].into_iter().enumerate() {
            let mut c = Close::sample(i as u64, Owner::UNKNOWN, "127.0.0.1:40000", "127.0.0.1:80");
            c.connect_ns = connect_ms.map(|ms| ms * 1_000_000);
            c.tcp = Some(TcpStats {
                retransmits: i as u32,
                srtt_us: 1,
                rttvar_us: 1,
            });
            l.observe(&Record::Close(c));
        }
        let rows = l.rows();
        let (_, row) = rows[0];
        assert_eq!(row.connections, 4);
        assert_eq!(
            row.connects(),
            Some((2_000_000, 1_003_000_000, 1_003_000_000)),
            "of the three seen"
        );
        assert_eq!(row.retransmits, 6);
    }

    #[test]
    fn a_sample_keeps_the_latest_once_full() {
        let mut s = Sample::default();
        for v in 0..(SAMPLE as u64 + 10) {
            s.add(v);
        }
        assert_eq!(s.kept.len(), SAMPLE);
        assert_eq!(s.kept[9], SAMPLE as u64 + 9);
        assert_eq!(s.kept[10], 10);
    }
}
