//! TIME_WAIT churn (pure: counts in, a report out). Fed every interval with
//! running totals per owner and destination — from the kernel's tallies
//! live, from close records offline — it says how fast TIME_WAIT sockets
//! appear, who makes them, towards where, how many exist, how close each
//! destination is to running out of ephemeral ports, and which processes
//! open a connection per request.
mod feed;
mod keys;
mod per_request;
mod population;
mod ports;
mod report;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, net::SocketAddr};

pub use feed::Feed;
pub use keys::{Counted, Dest, Host, Key, Place, Role, Settings, Totals};
pub use report::{DestRow, Headroom, PerRequest, Pressure, Report, Row};
use report::{per_sec, sum_by};
use rustc_hash::FxHashMap;

/// TIME_WAIT sockets found when counting began, by key: when each ends
/// (`CLOCK_MONOTONIC` ns; its timer says, from sock_diag).
pub type Before = Vec<(Key, Vec<u64>)>;

pub struct Timewait {
    settings: Settings,
    host: Host,
    last: FxHashMap<Key, Totals>,
    comms: FxHashMap<u32, String>,
    /// Entries of the last 60 s: (when counted, key, how many).
    window: VecDeque<(u64, Key, u64)>,
    population: FxHashMap<Key, u64>,
    /// TIME_WAIT sockets that existed when counting began, by key: when
    /// each ends, sorted.
    before: Before,
    last_ns: u64,
    total_entries: u64,
    /// Each destination's (TIME_WAIT, in use) at the last tick, for the
    /// rate its ports fill at (in use not known for those found at start).
    last_held: FxHashMap<Dest, (u64, Option<u64>)>,
}

impl Timewait {
    /// Starts counting at `now_ns`, with the TIME_WAIT sockets that exist
    /// then (`before`: by key, when each ends).
    pub fn new(settings: Settings, host: Host, now_ns: u64, mut before: Before) -> Timewait {
        let mut last_held: FxHashMap<Dest, (u64, Option<u64>)> = FxHashMap::default();
        for (key, ends) in &mut before {
            ends.sort_unstable();
            if key.role == Role::Client {
                last_held.entry(key.destination()).or_default().0 += ends.len() as u64;
            }
        }
        Timewait {
            last_held,
            settings,
            host,
            last: FxHashMap::default(),
            comms: FxHashMap::default(),
            window: VecDeque::new(),
            population: FxHashMap::default(),
            before,
            last_ns: now_ns,
            total_entries: 0,
        }
    }

    /// TIME_WAIT entries since counting began, by where they point.
    pub fn entries_by_place(&self) -> FxHashMap<Place, u64> {
        let mut by = FxHashMap::default();
        for (key, totals) in &self.last {
            if totals.time_waits > 0 {
                let place = match key.role {
                    Role::Server => Place::Served(SocketAddr::new(key.local, key.port)),
                    _ => Place::To(SocketAddr::new(key.remote, key.port)),
                };
                *by.entry(place).or_default() += totals.time_waits;
            }
        }
        by
    }

    /// The interval ending at `now_ns`: `counted` holds running totals
    /// (keys absent keep their last totals), `in_use` the live client
    /// sockets per destination, `kernel_population` the kernel's count.
    pub fn tick(
        &mut self,
        now_ns: u64,
        counted: &[Counted],
        in_use: &FxHashMap<Dest, u64>,
        kernel_population: Option<u64>,
    ) -> Report {
        let interval_ns = now_ns.saturating_sub(self.last_ns).max(1);
        self.last_ns = now_ns;
        let mut report = Report {
            now_ns,
            interval_ns,
            kernel_population,
            ..Report::default()
        };
        let deltas = self.deltas(counted);
        self.enter(&mut report, &deltas);
        self.expire(now_ns);
        let before = self.before_now(now_ns);
        let by_key = self.by_key(&mut report, &deltas, &before);
        report.server_entries_by_port = server_entries_by_port(&deltas);
        report.by_process = self.rows(&by_key, interval_ns, |k| Some(k.pid));
        report.by_local_port = self.port_rows(&by_key, interval_ns);
        let mut destinations = self.destinations(&by_key, in_use, interval_ns);
        report.pressure = self.pressure(&by_key, &destinations);
        self.last_held = destinations
            .iter()
            .map(|d| (d.dest, (d.time_wait, Some(d.in_use))))
            .collect();
        destinations.truncate(self.settings.top);
        report.by_destination = destinations;
        report.per_request = self.per_request(&deltas, interval_ns);
        report.settings = self.settings_notes(report.population);
        report
    }

    /// What changed since the last tick, remembering the new totals and
    /// names.
    fn deltas<'c>(&mut self, counted: &'c [Counted]) -> Vec<(&'c Key, Totals)> {
        let mut deltas: Vec<(&Key, Totals)> = Vec::new();
        for c in counted {
            self.comms.insert(c.key.pid, c.comm.clone());
            let before = self
                .last
                .insert(c.key.clone(), c.totals)
                .unwrap_or_default();
            let delta = Totals {
                time_waits: c.totals.time_waits.saturating_sub(before.time_waits),
                closes: c.totals.closes.saturating_sub(before.closes),
                short: c.totals.short.saturating_sub(before.short),
            };
            if delta != Totals::default() {
                deltas.push((&c.key, delta));
            }
        }
        deltas
    }

    /// Counts this interval's TIME_WAIT entries (in `report` and in the
    /// population) at `report.now_ns`.
    fn enter(&mut self, report: &mut Report, deltas: &[(&Key, Totals)]) {
        for (key, d) in deltas {
            if d.time_waits == 0 {
                continue;
            }
            report.entries += d.time_waits;
            match key.role {
                Role::Server => report.server_entries += d.time_waits,
                _ => report.client_entries += d.time_waits,
            }
            self.window
                .push_back((report.now_ns, (*key).clone(), d.time_waits));
            *self.population.entry((*key).clone()).or_default() += d.time_waits;
        }
        self.total_entries += report.entries;
        report.total_entries = self.total_entries;
    }
}

/// This interval's server-side entries by local port, by port.
fn server_entries_by_port(deltas: &[(&Key, Totals)]) -> Vec<(u16, u64)> {
    let mut by_port: FxHashMap<u16, u64> = FxHashMap::default();
    for (key, d) in deltas {
        if key.role == Role::Server && d.time_waits > 0 {
            *by_port.entry(key.port).or_default() += d.time_waits;
        }
    }
    let mut by_port: Vec<(u16, u64)> = by_port.into_iter().collect();
    by_port.sort_unstable();
    by_port
}
