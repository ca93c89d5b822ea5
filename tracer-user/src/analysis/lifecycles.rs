//! Connection lifecycles by program and place (pure): how many
//! connections, how they ended, how long they lived, what they carried.
//! A client's connections group by destination, a server's by the local
//! address it serves on.
use std::collections::BTreeMap;

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
    durations: Vec<u64>,
}

/// The most durations kept per row for the percentiles.
const SAMPLE: usize = 8192;

impl Row {
    /// (median, 99th percentile, max) duration in nanoseconds.
    pub fn durations(&self) -> Option<(u64, u64, u64)> {
        let mut d = self.durations.clone();
        d.sort_unstable();
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        (!d.is_empty()).then(|| (at(0.5), at(0.99), at(1.0)))
    }

    fn add(&mut self, c: &Close) {
        self.connections += 1;
        self.failed += u64::from(c.failure.is_some());
        self.reset += u64::from(c.reset_by.is_some());
        self.time_wait += u64::from(c.time_wait);
        self.bytes_sent += c.bytes_sent;
        self.bytes_received += c.bytes_received;
        if self.durations.len() < SAMPLE {
            self.durations.push(c.duration_ns);
        } else {
            let at = self.connections as usize % SAMPLE;
            self.durations[at] = c.duration_ns;
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
