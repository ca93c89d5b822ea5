//! `socktrace timewait`, live: the kernel counts connection ends by owner
//! and destination (nothing is streamed per connection); every interval we
//! read those totals, count the connections in use per destination
//! (sock_diag) and the kernel's TIME_WAIT total (sockstat), and report.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuHashMap};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::time::{MissedTickBehavior, interval};
use tracer_common::{
    AF_INET, RecordKind, TALLIES_CAPACITY, Tally, TallyKey, TallyRecord, service_port,
};

use crate::{
    analysis::timewait::{
        Before, Counted, Dest, Host, Key, Report, Role, Settings, Timewait, Totals,
    },
    cli::TimewaitArgs,
    clock::Clock,
    cmd::live::{DRAIN_EVERY, Session, say_learnt},
    event::{self, Comm, TcpState},
    filter::Filter,
    host::{
        self,
        diag::{self, Dump},
        owners::SocketOwners,
        pace::Pace,
    },
    metrics::{Metrics, TimewaitRow},
    output::{Palette, TimewaitView, summary_line},
    probe::{Mode, Tallies},
    source::Source,
    summary::Summary,
    writer::write_out,
};

/// Connections per second from one process to one destination, nearly all
/// short, that we call connection-per-request.
pub const PER_REQUEST_RATE: u32 = 10;

pub async fn run(args: TimewaitArgs) -> anyhow::Result<Summary> {
    let common = &args.common;
    let mode = Mode::Timewait {
        short: args.report.short.short,
    };
    // Nothing else is streamed in this mode.
    let mut session = Session::attach(common, mode, "opening the kernel counters").await?;
    let mut tallies = match session.tallies.take() {
        Some(Tallies::Map(map)) => Counts::Map(map),
        Some(Tallies::Ring) => Counts::Ring(RingTallies::default()),
        None => anyhow::bail!("the kernel object has no TALLIES map"),
    };
    let socket_files = session.socket_files.take();
    let mut stop = session.ready(common.user.as_deref(), common.duration)?;
    // After attached: nothing here needs privileges, and a host's 500,000
    // sockets need not hold the start up.
    let since_ns = session.counting_since_ns;
    let mut live = Live::new(&args, session.clock, socket_files, since_ns)?;
    let mut tick = interval(args.report.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.reset();
    // Counts sent through the ring are taken often enough that it never
    // fills between reports.
    let mut drain = interval(DRAIN_EVERY);
    let mut out = String::new();
    let mut stdout = io::stdout().lock();
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            _ = tick.tick() => {}
            _ = drain.tick(), if matches!(tallies, Counts::Ring(_)) => {
                tallies.take(&mut session.source);
                continue;
            }
        }
        live.report(&mut session, &mut tallies, &common.filter, &mut out)?;
        if !write_out(&mut stdout, &mut out)? {
            break; // stdout closed (`| head`): stop quietly.
        }
        crate::stderr::flush();
    }
    let summary = finish(session, &tallies, &live).await;
    if common.json {
        let time = crate::clock::rfc3339(live.clock, live.clock.mono_now());
        summary_line(&summary, &time, &mut out);
        if let Err(err) = write_out(&mut stdout, &mut out) {
            say!("{summary}");
            return Err(err);
        }
    }
    Ok(summary)
}

/// Detaches and stops serving; the run's summary.
async fn finish(mut session: Session, tallies: &Counts, live: &Live) -> Summary {
    let missed = session.detach();
    if let Some(polls) = live.pace.summary() {
        say!("{polls}");
    }
    session.stop_serving().await;
    let mut summary = Summary::default();
    summary.kernel = session.source.counters();
    if let Counts::Ring(ring) = tallies {
        summary.kernel.tally_overflow += ring.overflow;
    }
    summary.kernel.recursion_misses = missed;
    summary.time_waits = live.analysis.entries_by_place();
    summary
}

/// The analysis of a live run and what it reads at each report.
struct Live {
    analysis: Timewait,
    view: TimewaitView,
    clock: Clock,
    host: Host,
    netns: u32,
    /// Owners of the listeners that existed at start, by port.
    servers: FxHashMap<u16, (u32, String)>,
    /// Client connections in use by destination, as the last dump saw them.
    in_use: FxHashMap<Dest, u64>,
    /// How often that dump is taken: each report, unless it costs more.
    pace: Pace,
    /// When it was last taken.
    in_use_ns: u64,
}

impl Live {
    /// What existed when the kernel began counting at `since_ns`
    /// (TIME_WAIT sockets, listeners' owners), and the analysis and view
    /// `args` ask for.
    fn new(
        args: &TimewaitArgs,
        clock: Clock,
        socket_files: Option<std::fs::File>,
        since_ns: u64,
    ) -> anyhow::Result<Live> {
        let (report, common) = (&args.report, &args.common);
        let host = host::settings();
        // Our network namespace, what the kernel's keys carry: read once.
        let netns = diag::own_netns();
        let started = Instant::now();
        let (before, found) = existing(&host, netns, &common.filter, since_ns)
            .context("sock_diag dump of TIME_WAIT")?;
        let servers = listeners(socket_files).context("owners of listeners")?;
        // Connections in use are a gauge, beside the kernel's own count:
        // on a big host, counted seldom rather than costly. The first count
        // is part of the start; the next comes a paced period after it.
        let mut pace = Pace::unbounded(report.interval);
        let in_use = pace
            .first_after(|| in_use(&host, netns, &common.filter))
            .context("sock_diag dump")?;
        let in_use_ns = clock.mono_now();
        say_learnt(found, started);
        let settings = Settings {
            top: report.top as usize,
            threshold_pct: report.threshold,
            per_request_rate: PER_REQUEST_RATE,
        };
        Ok(Live {
            analysis: Timewait::new(settings, host, since_ns, before),
            view: TimewaitView::new(
                clock,
                common.json,
                Palette::for_stdout(common.color, common.json),
            ),
            clock,
            host,
            netns,
            servers,
            in_use,
            pace,
            in_use_ns,
        })
    }

    /// Counts the connections in use per destination again if the last
    /// count is a period old.
    fn refresh_in_use(&mut self, now: u64, filter: &Filter) -> anyhow::Result<()> {
        let period = crate::clock::nanos(self.pace.period());
        // Half a report's interval of slack: reports come a little late.
        let slack = crate::clock::nanos(self.pace.asked()) / 2;
        if now + slack >= self.in_use_ns + period {
            let (host, netns) = (&self.host, self.netns);
            let (counts, _) = self.pace.poll(|| in_use(host, netns, filter));
            self.in_use = counts.context("sock_diag dump")?;
            self.in_use_ns = now;
        }
        Ok(())
    }

    /// One interval's report into `out` (and the exporter).
    fn report(
        &mut self,
        session: &mut Session,
        tallies: &mut Counts,
        filter: &Filter,
        out: &mut String,
    ) -> anyhow::Result<()> {
        let now = session.clock.mono_now();
        self.refresh_in_use(now, filter)?;
        tallies.take(&mut session.source);
        let mut counted = tallies.read()?;
        own_by_listener(&mut counted, &self.servers);
        // The kernel checked ports and family and the owners it knew.
        counted.retain(|c| filter.matches_row(c.key.pid, &c.comm, c.key.local, c.key.remote));
        let time_waits = host::time_wait_count();
        let mut r = self.analysis.tick(now, &counted, &self.in_use, time_waits);
        r.missed = session.skipped_runs();
        if let Some(metrics) = &session.metrics {
            export(metrics, &r, &session.source)?;
            metrics.set_netns_timewait(time_waits, self.host.max_tw_buckets);
        }
        self.view.report(&r, out);
        Ok(())
    }
}

/// Feeds one interval's report to the Prometheus exporter.
fn export(metrics: &Metrics, r: &Report, source: &Source) -> anyhow::Result<()> {
    metrics.timewait_entries(None, r.client_entries);
    for &(port, n) in &r.server_entries_by_port {
        metrics.timewait_entries(Some(port), n);
    }
    let mut rows = vec![TimewaitRow {
        local_port: "client".into(),
        entries: r.client_entries,
        population: r.client_population,
    }];
    rows.extend(r.by_local_port.iter().map(|row| TimewaitRow {
        local_port: row.id.to_string(),
        entries: row.population,
        population: row.population,
    }));
    let listed: u64 = r.by_local_port.iter().map(|row| row.population).sum();
    rows.push(TimewaitRow {
        local_port: "other".into(),
        entries: 0,
        population: r.server_population.saturating_sub(listed),
    });
    metrics.set_timewait(&rows);
    metrics.set_port_headroom(&r.by_destination);
    let mut kernel = source.counters();
    kernel.recursion_misses = r.missed;
    metrics.set_losses(&kernel, 0);
    Ok(())
}

/// Where this run's counts are: the kernel's map, or summed here from the
/// ring (see `probe::Tallies`).
enum Counts {
    Map(PerCpuHashMap<MapData, TallyKey, Tally>),
    Ring(RingTallies),
}

/// What the kernel's `TALLIES` would hold, summed from `TallyRecord`s,
/// with the same bound and overflow row.
#[derive(Default)]
struct RingTallies {
    totals: FxHashMap<TallyKey, Tally>,
    /// Counts that went to the overflow row (the all-zero key).
    overflow: u64,
}

impl RingTallies {
    fn add(&mut self, r: &TallyRecord) {
        let full = self.totals.len() >= TALLIES_CAPACITY as usize;
        let key = if full && !self.totals.contains_key(&r.key) {
            self.overflow += 1;
            TallyKey::default()
        } else {
            r.key
        };
        let t = self.totals.entry(key).or_default();
        t.closes += 1;
        t.time_waits += u64::from(r.time_wait);
        t.short += u64::from(r.short);
        t.comm = r.comm;
    }
}

impl Counts {
    /// Takes the counts waiting in the ring (none in the map route).
    fn take(&mut self, source: &mut Source) {
        if let Counts::Ring(ring) = self {
            source.drain(|bytes| {
                if let Some(r) = tally_record(bytes) {
                    ring.add(&r);
                }
            });
        }
    }

    /// The totals so far, by key.
    fn read(&self) -> anyhow::Result<Vec<Counted>> {
        let counted =
            |raw: &TallyKey, totals: Totals, comm: &[u8; tracer_common::COMM_LEN]| Counted {
                key: key(raw),
                comm: Comm::new(comm).as_str().into_owned(),
                totals,
            };
        match self {
            Counts::Map(map) => {
                let mut all = Vec::new();
                for entry in map.iter() {
                    let (raw, per_cpu) = entry.context("reading the TALLIES map")?;
                    let mut totals = Totals::default();
                    let mut comm = [0u8; tracer_common::COMM_LEN];
                    for t in per_cpu.iter() {
                        add(&mut totals, t);
                        if t.comm[0] != 0 {
                            comm = t.comm;
                        }
                    }
                    all.push(counted(&raw, totals, &comm));
                }
                Ok(all)
            }
            Counts::Ring(ring) => Ok(ring
                .totals
                .iter()
                .map(|(raw, t)| {
                    let mut totals = Totals::default();
                    add(&mut totals, t);
                    counted(raw, totals, &t.comm)
                })
                .collect()),
        }
    }
}

fn add(totals: &mut Totals, t: &Tally) {
    totals.time_waits += t.time_waits;
    totals.closes += t.closes;
    totals.short += t.short;
}

/// A ring record of one counted connection end; `None` for anything else.
fn tally_record(bytes: &[u8]) -> Option<TallyRecord> {
    match event::kind_of(bytes) {
        Ok((_, RecordKind::Tally)) => event::read(bytes),
        _ => None,
    }
}

fn key(raw: &TallyKey) -> Key {
    let ip = |a: &[u8; 16]| -> IpAddr {
        if raw.family == AF_INET {
            Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
        } else {
            Ipv6Addr::from(*a).into()
        }
    };
    Key {
        netns: raw.netns,
        pid: raw.pid,
        role: Role::from_raw(raw.role),
        local: ip(&raw.laddr),
        remote: ip(&raw.raddr),
        port: raw.port,
    }
}

/// Owners of the listeners that existed at start, by port: connections
/// they accept carry no owner in the kernel (we did not see them listen).
fn listeners(socket_files: Option<std::fs::File>) -> io::Result<FxHashMap<u16, (u32, String)>> {
    let owners = SocketOwners::read(socket_files)?;
    let mut by_port = FxHashMap::default();
    diag::for_each(Dump::Listeners, |s| {
        if let Some(owner) = owners.get(s.inode) {
            let comm = owner.comm.as_str().into_owned();
            by_port.insert(s.local.port(), (owner.pid, comm));
        }
    })?;
    Ok(by_port)
}

/// Server-side counts without an owner get the listener's, if we know it.
fn own_by_listener(counted: &mut [Counted], servers: &FxHashMap<u16, (u32, String)>) {
    for c in counted {
        if c.key.pid == 0
            && c.key.role == Role::Server
            && let Some((pid, comm)) = servers.get(&c.key.port)
        {
            c.key.pid = *pid;
            c.comm.clone_from(comm);
        }
    }
}

/// The TIME_WAIT sockets that exist now and began before `since_ns`, by
/// key (a local port in the ephemeral range marks a client's), with when
/// each ends; and how many TIME_WAITs there are in all. Those that began
/// since, the kernel counted (a TIME_WAIT's timer says when it began: it
/// fires 60 s on). Their owner is unknown: none passes a filter on owners.
fn existing(host: &Host, netns: u32, filter: &Filter, since_ns: u64) -> io::Result<(Before, u64)> {
    let mut counts: FxHashMap<Key, Vec<u64>> = FxHashMap::default();
    let mut found = 0;
    diag::for_each(Dump::TimeWait, |s| {
        // The dump lists FIN_WAIT2 timewait sockets too (see `Dump`).
        if s.state != TcpState::TimeWait {
            return;
        }
        found += 1;
        let read_ns = crate::clock::mono_now();
        if s.began_since(read_ns, since_ns) {
            return;
        }
        let unowned = filter.matches_row(0, "", s.local.ip(), s.remote.ip());
        if !unowned || !filter.may_match_socket(&s.local, &s.remote) {
            return;
        }
        let role = if ephemeral(host, s.local.port()) {
            Role::Client
        } else {
            Role::Server
        };
        let key = Key {
            netns,
            pid: 0,
            role,
            local: s.local.ip(),
            remote: s.remote.ip(),
            port: service_port(role.raw(), s.local.port(), s.remote.port()),
        };
        counts.entry(key).or_default().push(s.ends_ns(read_ns));
    })?;
    Ok((counts.into_iter().collect(), found))
}

/// Client connections in use now, by destination: whoever holds them (the
/// ports are the destination's, whichever process runs short of them).
fn in_use(host: &Host, netns: u32, filter: &Filter) -> io::Result<FxHashMap<Dest, u64>> {
    let listening = listening_ports()?;
    let mut counts = FxHashMap::default();
    diag::for_each(Dump::Connections, |s| {
        count_in_use(host, (netns, &listening), filter, &s, &mut counts);
    })?;
    Ok(counts)
}

/// The local ports something listens on: a connection on one was accepted
/// (it is no client's, though the port may be in the ephemeral range). A
/// dump of listeners only is quick: the kernel walks its listening table.
fn listening_ports() -> io::Result<FxHashSet<u16>> {
    let mut ports = FxHashSet::default();
    diag::for_each(Dump::Listeners, |s| {
        ports.insert(s.local.port());
    })?;
    Ok(ports)
}

/// Counts `s` in `counts` if it is a client connection `filter` may want:
/// from an ephemeral port that nothing listens on, in network namespace
/// `netns`.
fn count_in_use(
    host: &Host,
    (netns, listening): (u32, &FxHashSet<u16>),
    filter: &Filter,
    s: &diag::DiagSocket,
    counts: &mut FxHashMap<Dest, u64>,
) {
    let port = s.local.port();
    if ephemeral(host, port)
        && !listening.contains(&port)
        && filter.may_match_socket(&s.local, &s.remote)
    {
        let dest = Dest {
            netns,
            local: s.local.ip(),
            remote: s.remote,
        };
        *counts.entry(dest).or_default() += 1;
    }
}

fn ephemeral(host: &Host, port: u16) -> bool {
    (host.port_range.0..=host.port_range.1).contains(&port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{ROLE_CLIENT, ROLE_SERVER};

    #[test]
    fn kernel_keys() {
        let mut raw = TallyKey {
            netns: 7,
            pid: 42,
            family: AF_INET,
            role: ROLE_CLIENT,
            port: 443,
            ..TallyKey::default()
        };
        raw.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let k = key(&raw);
        assert_eq!((k.netns, k.pid, k.role, k.port), (7, 42, Role::Client, 443));
        assert_eq!(k.local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(k.remote, "10.0.0.2".parse::<IpAddr>().unwrap());
        raw.family = tracer_common::AF_INET6;
        raw.role = ROLE_SERVER;
        raw.raddr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(key(&raw).remote, IpAddr::from(Ipv6Addr::LOCALHOST));
        assert_eq!(key(&raw).role, Role::Server);
    }
}
