//! What the records say (pure: records, the clock and listeners' queue
//! samples in, rows out): the numbers behind every pane of `top` and its
//! status line.
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    conns::{Conn, Conns},
    population::{Population, Waiting},
};
use crate::{
    analysis::{
        listeners::{Listeners, Note, RowKey},
        stuck::{Stuck, Waiting as Stalled},
    },
    event::{QueueSample, SockId},
    track::Record,
};

/// What the panes show at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    /// Connections open now, in no particular order.
    pub conns: Vec<Conn>,
    /// Connections not followed (too many).
    pub untracked: u64,
    pub listeners: Vec<Listener>,
    /// TIME_WAIT sockets by place, most first.
    pub waiting: Vec<Waiting>,
    pub waiting_total: u64,
    /// Connections stuck now, the oldest first.
    pub stuck: Vec<StuckConn>,
}

/// A row of the stuck pane: a connection too long in CLOSE_WAIT,
/// FIN_WAIT2 or SYN_SENT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckConn {
    pub conn: Stalled,
    pub age_ns: u64,
}

/// A row of the listeners pane: one port, protocol, kind and program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub key: RowKey,
    pub open: u64,
    /// How long the oldest open one has been open, and whether it was
    /// already open at start (then it is at least that long).
    pub open_for: Option<(u64, bool)>,
    /// Listen (or bind) cycles that ended, and those shorter than the
    /// short-lived threshold.
    pub cycles: u64,
    pub short: u64,
    pub failed_binds: u64,
    /// The median lifetime of the ended cycles.
    pub median_ns: Option<u64>,
    /// The fullest accept queue of its open listeners at the last sample:
    /// (waiting, backlog).
    pub queue: Option<(u32, u32)>,
    /// SYNs and connections its listeners dropped since we started.
    pub drops: u64,
}

pub struct Feed {
    conns: Conns,
    listeners: Listeners,
    population: Population,
    stuck: Stuck,
    rate: Rate,
    /// Events lost so far: the ring buffer was full, or another BPF
    /// program was running.
    dropped: u64,
    now_ns: u64,
    start_ns: Option<u64>,
}

impl Feed {
    /// Listeners that close within `short_ns` are short-lived; connections
    /// `stuck_ns` in CLOSE_WAIT, FIN_WAIT2 or SYN_SENT are stuck.
    pub fn new(short_ns: u64, stuck_ns: u64) -> Feed {
        Feed {
            conns: Conns::default(),
            listeners: Listeners::new(short_ns),
            population: Population::default(),
            stuck: Stuck::new(stuck_ns),
            rate: Rate::default(),
            dropped: 0,
            now_ns: 0,
            start_ns: None,
        }
    }

    pub fn record(&mut self, record: &Record) {
        let at = record.at();
        self.clock(at);
        match record {
            Record::Loss(counters, _) => {
                self.dropped = counters.ring_drops + counters.recursion_misses;
            }
            Record::Event(_) => self.rate.event(at),
            _ => {}
        }
        self.conns.observe(record);
        self.listeners.observe(record);
        self.population.observe(record);
        self.stuck.observe(record);
    }

    /// The time is `now_ns` (the records' clock).
    pub fn tick(&mut self, now_ns: u64) {
        self.clock(now_ns);
        self.rate.roll(now_ns);
        self.population.tick(now_ns);
    }

    /// A sample of every listener's accept queue at `now_ns`: what each
    /// dropped since the last one.
    pub fn queues(&mut self, now_ns: u64, samples: &[QueueSample]) -> Vec<Note> {
        self.listeners.queues(now_ns, samples)
    }

    /// Events in the last whole second.
    pub fn rate(&self) -> u64 {
        self.rate.last
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How long in a state a connection should pass through is stuck.
    pub fn stuck_ns(&self) -> u64 {
        self.stuck.threshold_ns()
    }

    /// Every pane's rows now.
    pub fn rows(&self) -> Rows {
        let stuck = self.stuck.stuck(self.now_ns);
        let marked: FxHashSet<SockId> = stuck.iter().map(|s| s.sock).collect();
        Rows {
            conns: self.conns.rows(self.now_ns, &marked),
            untracked: self.conns.untracked,
            listeners: self.listeners(),
            waiting: self.population.rows(),
            waiting_total: self.population.total(),
            stuck: stuck
                .into_iter()
                .map(|s| StuckConn {
                    conn: s.waiting.clone(),
                    age_ns: s.age_ns,
                })
                .collect(),
        }
    }

    fn listeners(&self) -> Vec<Listener> {
        // The oldest open socket of each row (`None`: open before start).
        let mut oldest: FxHashMap<RowKey, Option<u64>> = FxHashMap::default();
        for (key, since) in self.listeners.open() {
            let o = oldest.entry(key).or_insert(since);
            *o = o.zip(since).map(|(a, b)| a.min(b));
        }
        let start = self.start_ns.unwrap_or(self.now_ns);
        self.listeners
            .rows()
            .map(|(key, row)| Listener {
                key: key.clone(),
                open: row.open,
                open_for: oldest.get(key).map(|since| match since {
                    Some(at) => (self.now_ns.saturating_sub(*at), false),
                    None => (self.now_ns.saturating_sub(start), true),
                }),
                cycles: row.cycles,
                short: row.short,
                failed_binds: row.failed_binds,
                median_ns: row.lifetimes().map(|(_, median, _)| median),
                queue: row.queue,
                drops: row.drops,
            })
            .collect()
    }

    fn clock(&mut self, at_ns: u64) {
        self.now_ns = self.now_ns.max(at_ns);
        self.start_ns.get_or_insert(at_ns);
    }
}

/// Events per second, counted in whole seconds.
#[derive(Default)]
struct Rate {
    sec: u64,
    count: u64,
    /// Events in the last whole second.
    last: u64,
}

impl Rate {
    fn event(&mut self, at_ns: u64) {
        self.roll(at_ns);
        self.count += 1;
    }

    /// Starts the second of `at_ns`, if it is a later one.
    fn roll(&mut self, at_ns: u64) {
        let sec = at_ns / 1_000_000_000;
        if sec > self.sec {
            self.last = if sec == self.sec + 1 { self.count } else { 0 };
            self.sec = sec;
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn rate_is_the_last_whole_second() {
        let mut r = Rate::default();
        for i in 0..5 {
            r.event(10 * S + i);
        }
        assert_eq!(r.last, 0, "second 10 is not over");
        r.event(11 * S);
        assert_eq!(r.last, 5);
        r.roll(11 * S + S / 2);
        assert_eq!(r.last, 5);
        r.roll(12 * S);
        assert_eq!(r.last, 1);
        r.roll(14 * S);
        assert_eq!(r.last, 0, "nothing in second 13");
    }
}
