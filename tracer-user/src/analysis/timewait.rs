//! TIME_WAIT churn (pure: counts in, a report out). Fed every interval with
//! running totals per owner and destination — from the kernel's tallies
//! live, from close records offline — it says how fast TIME_WAIT sockets
//! appear, who makes them, towards where, how many exist, how close each
//! destination is to running out of ephemeral ports, and which processes
//! open a connection per request.
use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
};

use rustc_hash::FxHashMap;
use tracer_common::{ROLE_CLIENT, ROLE_SERVER, service_port};

use crate::{
    event::{Detail, SockId, TcpState},
    track::{Opener, Record, TW_LEN_NS},
};

/// Which end of its connection a socket was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// It connected: its TIME_WAIT holds an ephemeral port towards the
    /// server.
    Client,
    /// A listener accepted it: the server closed first.
    Server,
    /// Its start was not seen.
    Unknown,
}

impl Role {
    /// From a tally key's `role` (`ROLE_*`, 0 unknown).
    pub fn from_raw(raw: u8) -> Role {
        match raw {
            ROLE_CLIENT => Role::Client,
            ROLE_SERVER => Role::Server,
            _ => Role::Unknown,
        }
    }

    /// The tally key's `role`: the inverse of [`Role::from_raw`].
    pub fn raw(self) -> u8 {
        match self {
            Role::Client => ROLE_CLIENT,
            Role::Server => ROLE_SERVER,
            Role::Unknown => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
}

/// Where TIME_WAIT sockets point: a client's destination, or the local
/// address of a server that closed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    To(SocketAddr),
    Served(SocketAddr),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::To(addr) => write!(f, "to {addr}"),
            Place::Served(addr) => write!(f, "served on {addr}"),
        }
    }
}

/// Who and where: what the kernel counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub netns: u32,
    /// Owner's pid; 0 when unknown.
    pub pid: u32,
    pub role: Role,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// The service port: remote for a client, local for a server.
    pub port: u16,
}

impl Key {
    /// A client's destination: local address, remote address and port.
    fn destination(&self) -> Dest {
        Dest {
            netns: self.netns,
            local: self.local,
            remote: SocketAddr::new(self.remote, self.port),
        }
    }
}

/// Where a client's ephemeral ports go: one (local address, remote
/// address:port) shares one range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub netns: u32,
    pub local: IpAddr,
    pub remote: SocketAddr,
}

/// Running totals for a key since counting began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections that ended in TIME_WAIT (this side closed first).
    pub time_waits: u64,
    pub closes: u64,
    /// Closes of connections shorter than the short threshold.
    pub short: u64,
}

/// One key's totals and its owner's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub key: Key,
    pub comm: String,
    pub totals: Totals,
}

/// Host settings that decide what TIME_WAIT costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: (u16, u16),
    /// `net.ipv4.tcp_tw_reuse`.
    pub tw_reuse: Option<u8>,
    /// `net.ipv4.tcp_max_tw_buckets`.
    pub max_tw_buckets: Option<u64>,
}

impl Host {
    fn range_size(&self) -> u64 {
        u64::from(self.port_range.1.saturating_sub(self.port_range.0)) + 1
    }

    /// Whether a new connection to `remote` may take a port still in
    /// TIME_WAIT.
    fn reuses_towards(&self, remote: IpAddr) -> bool {
        match self.tw_reuse {
            Some(1) => true,
            Some(2) => remote.is_loopback(),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub top: usize,
    /// Warn above this share of the ephemeral range, in percent.
    pub threshold_pct: u8,
    /// Connections per second to one destination from one process that
    /// count as connection-per-request (with nearly all of them short).
    pub per_request_rate: u32,
}

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

pub struct Timewait {
    settings: Settings,
    host: Host,
    last: FxHashMap<Key, Totals>,
    comms: FxHashMap<u32, String>,
    /// Entries of the last 60 s: (when counted, key, how many).
    window: VecDeque<(u64, Key, u64)>,
    population: FxHashMap<Key, u64>,
    /// TIME_WAIT sockets that existed when counting began, by key, and then.
    before: Vec<(Key, u64)>,
    started_ns: u64,
    last_ns: u64,
    total_entries: u64,
    /// Each destination's (TIME_WAIT, in use) at the last tick, for the
    /// rate its ports fill at (in use not known for those found at start).
    last_held: FxHashMap<Dest, (u64, Option<u64>)>,
}

impl Timewait {
    /// Starts counting at `now_ns`, with the TIME_WAIT sockets that exist
    /// then (`before`, counted by key).
    pub fn new(settings: Settings, host: Host, now_ns: u64, before: Vec<(Key, u64)>) -> Timewait {
        let mut last_held: FxHashMap<Dest, (u64, Option<u64>)> = FxHashMap::default();
        for (key, n) in &before {
            if key.role == Role::Client {
                last_held.entry(key.destination()).or_default().0 += n;
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
            started_ns: now_ns,
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
        // What changed since the last tick.
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
        for (key, d) in &deltas {
            if d.time_waits == 0 {
                continue;
            }
            report.entries += d.time_waits;
            match key.role {
                Role::Server => report.server_entries += d.time_waits,
                _ => report.client_entries += d.time_waits,
            }
            self.window
                .push_back((now_ns, (*key).clone(), d.time_waits));
            *self.population.entry((*key).clone()).or_default() += d.time_waits;
        }
        self.total_entries += report.entries;
        report.total_entries = self.total_entries;
        self.expire(now_ns);
        let before = self.before_now(now_ns);
        report.population =
            self.population.values().sum::<u64>() + before.iter().map(|(_, n)| n).sum::<u64>();

        let mut by_key: FxHashMap<&Key, (u64, u64)> = FxHashMap::default(); // (entries, population)
        for (key, d) in &deltas {
            by_key.entry(key).or_default().0 += d.time_waits;
        }
        for (key, n) in self
            .population
            .iter()
            .chain(before.iter().map(|(k, n)| (k, n)))
        {
            by_key.entry(key).or_default().1 += n;
            match key.role {
                Role::Server => report.server_population += n,
                _ => report.client_population += n,
            }
        }
        let mut by_port: FxHashMap<u16, u64> = FxHashMap::default();
        for (key, d) in &deltas {
            if key.role == Role::Server && d.time_waits > 0 {
                *by_port.entry(key.port).or_default() += d.time_waits;
            }
        }
        report.server_entries_by_port = by_port.into_iter().collect();
        report.server_entries_by_port.sort_unstable();
        report.by_process = self.rows(&by_key, interval_ns, |k| Some(k.pid));
        report.by_local_port = self.rows(&by_key, interval_ns, |k| {
            (k.role == Role::Server).then_some(u32::from(k.port))
        });
        for row in &mut report.by_local_port {
            row.comm.clear();
        }
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

    fn expire(&mut self, now_ns: u64) {
        while let Some((at, _, _)) = self.window.front() {
            if at + TW_LEN_NS > now_ns {
                break;
            }
            let Some((_, key, n)) = self.window.pop_front() else {
                break;
            };
            if let Some(left) = self.population.get_mut(&key) {
                *left = left.saturating_sub(n);
                if *left == 0 {
                    self.population.remove(&key);
                }
            }
        }
    }

    /// Those that predate counting and are still there, estimated: ages
    /// spread evenly over 60 s, so a share leaves every second.
    fn before_now(&self, now_ns: u64) -> Vec<(Key, u64)> {
        let elapsed = now_ns.saturating_sub(self.started_ns);
        if elapsed >= TW_LEN_NS {
            return Vec::new();
        }
        let left =
            |n: u64| (n as u128 * u128::from(TW_LEN_NS - elapsed) / TW_LEN_NS as u128) as u64;
        self.before
            .iter()
            .map(|(k, n)| (k.clone(), left(*n)))
            .collect()
    }

    /// `pid`'s name; pid 0 holds what predates us or has no known owner.
    fn comm(&self, pid: u32) -> String {
        match self.comms.get(&pid) {
            Some(c) if pid != 0 => c.clone(),
            _ => "(unknown)".into(),
        }
    }

    /// Top rows grouped by `group` (skipping keys it maps to `None`).
    fn rows(
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

    /// Every destination, busiest first.
    fn destinations(
        &self,
        by_key: &FxHashMap<&Key, (u64, u64)>,
        in_use: &FxHashMap<Dest, u64>,
        interval_ns: u64,
    ) -> Vec<DestRow> {
        let mut grouped = sum_by(by_key, |k| {
            (k.role == Role::Client).then(|| k.destination())
        });
        for dest in in_use.keys() {
            grouped.entry(*dest).or_default();
        }
        let mut rows: Vec<DestRow> = grouped
            .into_iter()
            .map(|(dest, (entries, time_wait))| {
                let in_use = in_use.get(&dest).copied().unwrap_or(0);
                DestRow {
                    dest,
                    per_sec: per_sec(entries, interval_ns),
                    time_wait,
                    in_use,
                    ports: self.headroom(&dest, time_wait, in_use, interval_ns),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.per_sec
                .total_cmp(&a.per_sec)
                .then((b.time_wait + b.in_use).cmp(&(a.time_wait + a.in_use)))
                .then(a.dest.cmp(&b.dest))
        });
        rows
    }

    /// `dest`'s headroom with `time_wait` and `in_use` ports held now.
    fn headroom(&self, dest: &Dest, time_wait: u64, in_use: u64, interval_ns: u64) -> Headroom {
        let range = self.host.range_size();
        let held = time_wait + in_use;
        let (tw_before, in_use_before) = self.last_held.get(dest).copied().unwrap_or_default();
        let before = tw_before + in_use_before.unwrap_or(in_use);
        let grown = held as f64 - before as f64;
        let rate = grown * 1e9 / interval_ns.max(1) as f64;
        Headroom {
            held,
            range,
            percent: held as f64 * 100.0 / range as f64,
            runs_out_in_s: (rate > 0.0).then(|| range.saturating_sub(held) as f64 / rate),
            tw_reuse: self.host.reuses_towards(dest.remote.ip()),
        }
    }

    /// The destinations (of `all`) holding more than the threshold, with
    /// the process holding most of each.
    fn pressure(&self, by_key: &FxHashMap<&Key, (u64, u64)>, all: &[DestRow]) -> Vec<Pressure> {
        let threshold = f64::from(self.settings.threshold_pct);
        let mut out: Vec<Pressure> = all
            .iter()
            .filter(|row| row.ports.percent > threshold)
            .map(|row| {
                let pid = by_key
                    .iter()
                    .filter(|(key, _)| key.role == Role::Client && key.destination() == row.dest)
                    .max_by_key(|(key, (_, population))| (*population, std::cmp::Reverse(key.pid)))
                    .map_or(0, |(key, _)| key.pid);
                Pressure {
                    dest: row.dest,
                    ports: row.ports,
                    pid,
                    comm: self.comm(pid),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.ports
                .percent
                .total_cmp(&a.ports.percent)
                .then(a.dest.cmp(&b.dest))
        });
        out
    }

    fn per_request(&self, deltas: &[(&Key, Totals)], interval_ns: u64) -> Vec<PerRequest> {
        let mut grouped: FxHashMap<(u32, Dest), Totals> = FxHashMap::default();
        for (key, d) in deltas {
            if key.role == Role::Client && key.pid != 0 {
                let g = grouped.entry((key.pid, key.destination())).or_default();
                g.closes += d.closes;
                g.short += d.short;
            }
        }
        let mut out: Vec<PerRequest> = grouped
            .into_iter()
            .filter_map(|((pid, dest), t)| {
                let rate = per_sec(t.closes, interval_ns);
                let short_pct = t.short as f64 * 100.0 / t.closes.max(1) as f64;
                (rate >= f64::from(self.settings.per_request_rate) && short_pct >= 90.0).then(
                    || PerRequest {
                        pid,
                        comm: self.comm(pid),
                        dest,
                        per_sec: rate,
                        short_pct,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| b.per_sec.total_cmp(&a.per_sec).then(a.pid.cmp(&b.pid)));
        out.truncate(self.settings.top);
        out
    }

    fn settings_notes(&self, population: u64) -> Vec<String> {
        let mut notes = Vec::new();
        let per_dest = self.host.range_size() / 60;
        notes.push(match self.host.tw_reuse {
            Some(0) => format!(
                "tcp_tw_reuse=0: ports in TIME_WAIT are not reused; one destination runs out \
                 of local ports above about {per_dest} new connections/s"
            ),
            Some(1) => "tcp_tw_reuse=1: new outgoing connections may take ports in TIME_WAIT \
                        (with TCP timestamps), so TIME_WAIT alone does not exhaust ports"
                .into(),
            Some(2) => format!(
                "tcp_tw_reuse=2: ports in TIME_WAIT are reused towards loopback only; another \
                 destination runs out of local ports above about {per_dest} new connections/s"
            ),
            Some(other) => format!("tcp_tw_reuse={other}"),
            None => "tcp_tw_reuse: unknown".into(),
        });
        if let Some(max) = self.host.max_tw_buckets {
            notes.push(format!(
                "tcp_max_tw_buckets={max}: {population} in use ({:.0}%); beyond it closes skip \
                 TIME_WAIT (TcpExtTCPTimeWaitOverflow), risking stray segments on reused ports",
                population as f64 * 100.0 / max.max(1) as f64
            ));
        }
        notes
    }
}

/// (entries, population) of `by_key`, summed by `group` (keys it maps to
/// `None` left out).
fn sum_by<G: std::hash::Hash + Eq>(
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

fn per_sec(n: u64, interval_ns: u64) -> f64 {
    n as f64 * 1e9 / interval_ns.max(1) as f64
}

/// Offline: the same running totals the kernel keeps, from close records,
/// and the live client sockets per destination, from state events.
pub struct Feed {
    short_ns: u64,
    totals: FxHashMap<Key, (String, Totals)>,
    live: FxHashMap<SockId, Dest>,
    in_use: FxHashMap<Dest, u64>,
}

impl Feed {
    /// Connections shorter than `short_ns` count as short.
    pub fn new(short_ns: u64) -> Feed {
        Feed {
            short_ns,
            totals: FxHashMap::default(),
            live: FxHashMap::default(),
            in_use: FxHashMap::default(),
        }
    }

    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Event(e) => {
                let (
                    Some(sock),
                    Detail::State {
                        local,
                        remote,
                        old,
                        new,
                        ..
                    },
                ) = (e.sock, e.detail)
                else {
                    return;
                };
                if old == TcpState::Close && new == TcpState::SynSent {
                    let dest = Dest {
                        netns: e.netns,
                        local: local.ip(),
                        remote,
                    };
                    if self.live.insert(sock, dest).is_none() {
                        *self.in_use.entry(dest).or_default() += 1;
                    }
                }
            }
            Record::Close(c) => {
                if let Some(dest) = self.live.remove(&c.sock)
                    && let Some(n) = self.in_use.get_mut(&dest)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.in_use.remove(&dest);
                    }
                }
                let role = match c.opener {
                    Opener::Active => Role::Client,
                    Opener::Passive => Role::Server,
                    Opener::Listener | Opener::Unknown => Role::Unknown,
                };
                let key = Key {
                    netns: c.netns,
                    pid: if c.owner.is_known() { c.owner.pid } else { 0 },
                    role,
                    local: c.local.ip(),
                    remote: c.remote.ip(),
                    port: service_port(role.raw(), c.local.port(), c.remote.port()),
                };
                let comm = c.owner.comm.as_str().into_owned();
                let (name, t) = self
                    .totals
                    .entry(key)
                    .or_insert_with(|| (comm, Totals::default()));
                if c.owner.is_known() {
                    *name = c.owner.comm.as_str().into_owned();
                }
                t.closes += 1;
                t.time_waits += u64::from(c.time_wait);
                t.short += u64::from(c.duration_ns < self.short_ns);
            }
            _ => {}
        }
    }

    pub fn counted(&self) -> Vec<Counted> {
        self.totals
            .iter()
            .map(|(key, (comm, totals))| Counted {
                key: key.clone(),
                comm: comm.clone(),
                totals: *totals,
            })
            .collect()
    }

    pub fn in_use(&self) -> &FxHashMap<Dest, u64> {
        &self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn client(pid: u32, remote: &str, port: u16) -> Key {
        Key {
            netns: 1,
            pid,
            role: Role::Client,
            local: "127.0.0.1".parse().unwrap(),
            remote: remote.parse().unwrap(),
            port,
        }
    }

    fn counted(key: &Key, time_waits: u64, closes: u64, short: u64) -> Counted {
        Counted {
            key: key.clone(),
            comm: format!("p{}", key.pid),
            totals: Totals {
                time_waits,
                closes,
                short,
            },
        }
    }

    fn analysis(range: (u16, u16), tw_reuse: u8) -> Timewait {
        counting_from(range, Some(tw_reuse), Vec::new())
    }

    /// Counting from 0, with the TIME_WAITs of `before` there then.
    fn counting_from(range: (u16, u16), tw_reuse: Option<u8>, before: Vec<(Key, u64)>) -> Timewait {
        let settings = Settings {
            top: 10,
            threshold_pct: 50,
            per_request_rate: 10,
        };
        let host = Host {
            port_range: range,
            tw_reuse,
            max_tw_buckets: Some(1000),
        };
        Timewait::new(settings, host, 0, before)
    }

    #[test]
    fn rates_population_and_expiry() {
        let mut tw = analysis((1000, 1999), 0);
        let a = client(10, "10.0.0.2", 80);
        let none = FxHashMap::default();
        let r = tw.tick(S, &[counted(&a, 100, 100, 100)], &none, Some(100));
        assert_eq!((r.entries, r.client_entries, r.population), (100, 100, 100));
        assert_eq!(r.rate(), 100.0);
        assert_eq!(r.by_process[0].id, 10);
        assert_eq!(r.by_process[0].comm, "p10");
        assert_eq!(r.by_destination[0].time_wait, 100);
        // Running totals: only the difference counts.
        let r = tw.tick(2 * S, &[counted(&a, 150, 150, 150)], &none, None);
        assert_eq!((r.entries, r.population, r.total_entries), (50, 150, 150));
        // 60 s after the first entries they are gone.
        let r = tw.tick(61 * S, &[counted(&a, 150, 150, 150)], &none, None);
        assert_eq!((r.entries, r.population), (0, 50));
        let r = tw.tick(62 * S, &[counted(&a, 150, 150, 150)], &none, None);
        assert_eq!(r.population, 0);
        assert_eq!(
            tw.entries_by_place(),
            FxHashMap::from_iter([(Place::To("10.0.0.2:80".parse().unwrap()), 150)])
        );
    }

    #[test]
    fn port_pressure_names_the_process() {
        // 1000 ports; 450 in TIME_WAIT and 100 in use = 55 % > 50 %.
        let mut tw = analysis((1000, 1999), 0);
        let a = client(10, "10.0.0.2", 80);
        let b = client(11, "10.0.0.2", 80);
        let dest = a.destination();
        let in_use = FxHashMap::from_iter([(dest, 100)]);
        let r = tw.tick(
            S,
            &[counted(&a, 400, 400, 0), counted(&b, 50, 50, 0)],
            &in_use,
            None,
        );
        assert_eq!(r.pressure.len(), 1, "{r:?}");
        let p = &r.pressure[0];
        assert_eq!((p.ports.held, p.ports.range, p.pid), (550, 1000, 10));
        assert_eq!(p.comm, "p10");
        assert!((p.ports.percent - 55.0).abs() < 1e-9);
        assert!(!p.ports.tw_reuse);
        assert_eq!(r.by_destination[0].in_use, 100);
        // Under the threshold: no warning. Loopback with reuse=2: noted.
        let mut tw = analysis((1000, 1999), 2);
        let c = client(12, "127.0.0.2", 80);
        let r = tw.tick(S, &[counted(&c, 499, 499, 0)], &FxHashMap::default(), None);
        assert!(r.pressure.is_empty());
        let r = tw.tick(
            2 * S,
            &[counted(&c, 600, 600, 0)],
            &FxHashMap::default(),
            None,
        );
        assert!(r.pressure[0].ports.tw_reuse);
        assert!(
            r.settings[0].starts_with("tcp_tw_reuse=2"),
            "{:?}",
            r.settings
        );
        assert!(
            r.settings[1].contains("600 in use (60%)"),
            "{:?}",
            r.settings
        );
    }

    #[test]
    fn every_destination_says_its_port_headroom() {
        // 1000 ports. Counting starts at 0 with 100 TIME_WAITs towards A.
        let a = client(10, "10.0.0.2", 80);
        let b = client(11, "127.0.0.3", 80);
        let before = vec![(client(0, "10.0.0.2", 80), 100)];
        let mut tw = counting_from((1000, 1999), Some(2), before);
        let ports = |r: &Report, key: &Key| {
            let row = r
                .by_destination
                .iter()
                .find(|d| d.dest == key.destination());
            let h = row.expect("a row").ports;
            (h.held, h.range, h.percent, h.runs_out_in_s, h.tw_reuse)
        };
        // At 0.5 s: A has 300 new TIME_WAITs (+300 in 0.5 s: 600/s), and 50
        // connections in use, there when first seen; B only 20 in use.
        let in_use = FxHashMap::from_iter([(a.destination(), 50), (b.destination(), 20)]);
        let half = S / 2;
        // (Those from before fade: 100 at 0 s, 99 at 0.5 s.)
        let r = tw.tick(half, &[counted(&a, 300, 300, 300)], &in_use, None);
        assert_eq!(ports(&r, &a), (449, 1000, 44.9, Some(551.0 / 598.0), false));
        assert_eq!(ports(&r, &b), (20, 1000, 2.0, None, true));
        assert!(r.pressure.is_empty());
        // At 1.5 s: A +100 TIME_WAITs and +50 in use in 1 s (150/s; the
        // old ones down to 97), past the threshold; B down to 10 in use.
        let in_use = FxHashMap::from_iter([(a.destination(), 100), (b.destination(), 10)]);
        let r = tw.tick(3 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
        assert_eq!(ports(&r, &a), (597, 1000, 59.7, Some(403.0 / 148.0), false));
        assert_eq!(ports(&r, &b), (10, 1000, 1.0, None, true));
        assert_eq!(r.pressure.len(), 1);
        assert_eq!(
            (r.pressure[0].ports, r.pressure[0].pid),
            (r.by_destination[0].ports, 10)
        );
        // Nothing new: A's ports do not fill, whatever it holds.
        let r = tw.tick(5 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
        assert_eq!(ports(&r, &a).3, None);
        // Full (400 + 94 from before + 700): it ran out.
        let in_use = FxHashMap::from_iter([(a.destination(), 700)]);
        let r = tw.tick(7 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
        assert_eq!(ports(&r, &a), (1194, 1000, 119.4, Some(0.0), false));
    }

    #[test]
    fn connection_per_request() {
        let mut tw = analysis((1000, 60999), 0);
        let fast = client(10, "10.0.0.2", 80);
        let slow = client(11, "10.0.0.3", 80);
        let long = client(12, "10.0.0.4", 80);
        let r = tw.tick(
            2 * S,
            &[
                counted(&fast, 40, 40, 40), // 20/s, all short
                counted(&slow, 10, 10, 10), // 5/s: too slow
                counted(&long, 40, 40, 10), // 20/s, mostly long
            ],
            &FxHashMap::default(),
            None,
        );
        assert_eq!(r.per_request.len(), 1, "{r:?}");
        assert_eq!((r.per_request[0].pid, r.per_request[0].per_sec), (10, 20.0));
    }

    #[test]
    fn servers_are_counted_by_local_port() {
        let mut tw = analysis((32768, 60999), 0);
        let server = Key {
            role: Role::Server,
            port: 8080,
            ..client(20, "10.0.0.9", 0)
        };
        let r = tw.tick(
            S,
            &[counted(&server, 30, 30, 0)],
            &FxHashMap::default(),
            None,
        );
        assert_eq!((r.server_entries, r.client_entries), (30, 0));
        assert_eq!(r.by_local_port[0].id, 8080);
        assert_eq!(r.by_local_port[0].population, 30);
        assert!(r.by_destination.is_empty());
    }

    #[test]
    fn sockets_from_before_start_fade_over_a_minute() {
        let before = vec![(client(0, "10.0.0.2", 80), 600)];
        let mut tw = counting_from((1000, 1999), None, before);
        let none = FxHashMap::default();
        assert_eq!(tw.tick(30 * S, &[], &none, None).population, 300);
        assert_eq!(tw.tick(60 * S, &[], &none, None).population, 0);
    }
}
