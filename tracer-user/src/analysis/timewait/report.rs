//! What one interval's report holds, and the ranked rows of it.
use rustc_hash::FxHashMap;

use super::{Dest, Key, Role, Timewait};

/// What one interval looked like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub now_ns: u64,
    /// Length of the interval this report covers.
    pub interval_ns: u64,
    pub entries: u64,
    pub client_entries: u64,
    pub server_entries: u64,
    /// TIME_WAIT sockets now, from the entries of the last 60 s (and an
    /// estimate of those that predate counting).
    pub population: u64,
    /// Of `population`, the client side's and the server side's.
    pub client_population: u64,
    pub server_population: u64,
    /// This interval's server-side entries by local port (all of them).
    pub server_entries_by_port: Vec<(u16, u64)>,
    /// Transitions our programs did not see so far (the kernel's
    /// `recursion_misses`), as the live driver reads them; a connection
    /// end among them is not counted above.
    pub missed: u64,
    /// The kernel's own count, when it could be read (`/proc/net/sockstat`).
    pub kernel_population: Option<u64>,
    /// Entries since counting began.
    pub total_entries: u64,
    pub by_process: Vec<Row>,
    pub by_destination: Vec<DestRow>,
    pub by_local_port: Vec<Row>,
    pub pressure: Vec<Pressure>,
    pub per_request: Vec<PerRequest>,
    /// What the host's settings imply, one sentence each.
    pub settings: Vec<String>,
}

impl Report {
    /// TIME_WAIT entries per second in this interval.
    pub fn rate(&self) -> f64 {
        per_sec(self.entries, self.interval_ns)
    }
}

/// A process or a server port.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// A pid, or a local port for server rows.
    pub id: u32,
    pub comm: String,
    pub per_sec: f64,
    pub population: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DestRow {
    pub dest: Dest,
    pub per_sec: f64,
    pub time_wait: u64,
    pub in_use: u64,
    /// Its ephemeral-port headroom.
    pub ports: Headroom,
}

/// How many of the ephemeral ports (`ip_local_port_range`) one
/// destination holds, and when, at the current rate, none is left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headroom {
    /// In TIME_WAIT or in use.
    pub held: u64,
    /// The size of the range.
    pub range: u64,
    pub percent: f64,
    /// Seconds until `held` reaches `range` at the rate it grew over the
    /// last interval; `None` when it did not grow. (A connection in use
    /// when a destination is first seen is taken to have been there
    /// before: only TIME_WAIT entries and later connections count as
    /// growth.)
    pub runs_out_in_s: Option<f64>,
    /// `tcp_tw_reuse` lets new connections here take ports in TIME_WAIT.
    pub tw_reuse: bool,
}

/// A destination holding too many of the ephemeral ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Pressure {
    pub dest: Dest,
    pub ports: Headroom,
    /// The process holding most of them in TIME_WAIT (0: none known).
    pub pid: u32,
    pub comm: String,
}

/// One process opening short connections to one place at a high rate.
#[derive(Clone, Debug, PartialEq)]
pub struct PerRequest {
    pub pid: u32,
    pub comm: String,
    pub dest: Dest,
    pub per_sec: f64,
    pub short_pct: f64,
}

impl Timewait {
    /// `pid`'s name; pid 0 holds what predates us or has no known owner.
    pub(super) fn comm(&self, pid: u32) -> String {
        match self.comms.get(&pid) {
            Some(c) if pid != 0 => c.clone(),
            _ => "(unknown)".into(),
        }
    }

    /// Top server rows, by local port (no names: a port has many owners).
    pub(super) fn port_rows(
        &self,
        by_key: &FxHashMap<&Key, (u64, u64)>,
        interval_ns: u64,
    ) -> Vec<Row> {
        let mut rows = self.rows(by_key, interval_ns, |k| {
            (k.role == Role::Server).then_some(u32::from(k.port))
        });
        for row in &mut rows {
            row.comm.clear();
        }
        rows
    }

    /// Top rows grouped by `group` (skipping keys it maps to `None`).
    pub(super) fn rows(
        &self,
        by_key: &FxHashMap<&Key, (u64, u64)>,
        interval_ns: u64,
        group: impl Fn(&Key) -> Option<u32>,
    ) -> Vec<Row> {
        let mut rows: Vec<Row> = sum_by(by_key, group)
            .into_iter()
            .filter(|(_, (entries, population))| entries + population > 0)
            .map(|(id, (entries, population))| Row {
                id,
                comm: self.comm(id),
                per_sec: per_sec(entries, interval_ns),
                population,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.per_sec
                .total_cmp(&a.per_sec)
                .then(b.population.cmp(&a.population))
                .then(a.id.cmp(&b.id))
        });
        rows.truncate(self.settings.top);
        rows
    }
}

/// (entries, population) of `by_key`, summed by `group` (keys it maps to
/// `None` left out).
pub(super) fn sum_by<G: std::hash::Hash + Eq>(
    by_key: &FxHashMap<&Key, (u64, u64)>,
    group: impl Fn(&Key) -> Option<G>,
) -> FxHashMap<G, (u64, u64)> {
    let mut grouped: FxHashMap<G, (u64, u64)> = FxHashMap::default();
    for (key, (entries, population)) in by_key {
        if let Some(g) = group(key) {
            let sum = grouped.entry(g).or_default();
            sum.0 += entries;
            sum.1 += population;
        }
    }
    grouped
}

pub(super) fn per_sec(n: u64, interval_ns: u64) -> f64 {
    n as f64 * 1e9 / interval_ns.max(1) as f64
}
