//! The streaming modes (`watch`, `listeners`, `record`, `top`): attach,
//! snapshot what exists, then ring -> decode -> track -> filter -> render
//! -> output until stopped; then detach, drain what is left and summarise.
use std::{
    io::{self, Write},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use rustc_hash::FxHashSet;
use tokio::time::{MissedTickBehavior, interval};

use crate::{
    analysis::listeners::Listeners,
    cli::{Common, ListenersArgs, WatchArgs},
    clock::{self, Clock},
    diag::{self, Dump},
    event::{self, Owner, SockId, TcpState},
    filter::Filter,
    logsink::{self, Journal, Sink, Syslog},
    metrics::Metrics,
    output::{Json, ListenersView, Palette, Render, Text, TextMode, summary_line},
    privileges,
    probe::{self, Mode, Options, Probe},
    proc::{self, Cgroups},
    session::{self, Stop},
    source::{KernelCounters, Source},
    summary::Summary,
    track::{Known, Record, Tracker},
    writer::Output,
};

/// How often the reader drains the ring without being woken: the most a
/// quiet event waits before it is shown.
pub const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The kernel wakes the reader early once this much is waiting.
pub const WAKEUP_BYTES: u64 = 256 << 10;
/// How often loss counters are checked and kernel log lines collected.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What to stream, how to show it and where.
pub struct Plan {
    pub common: Common,
    pub mode: Mode,
    /// Print the sockets that exist at start (`--snapshot`).
    pub snapshot: bool,
    /// Which existing sockets to learn at start.
    pub existing: Dump,
    pub track_limit: usize,
    pub tw_poll: Duration,
    /// Call the view's periodic report this often.
    pub interval: Option<Duration>,
    pub view: View,
    /// Where lines go (`record`'s file); stdout when `None`.
    pub output: Option<Box<dyn Write>>,
    /// A first line before anything else (`record`'s header).
    pub header: Option<String>,
    /// Also log each record to the journal and/or syslog.
    pub log_to: LogTo,
}

/// `--journal`, `--syslog`.
#[derive(Clone, Debug, Default)]
pub struct LogTo {
    pub journal: bool,
    /// The syslog socket.
    pub syslog: Option<std::path::PathBuf>,
}

/// How records are shown.
pub enum View {
    Text(TextMode),
    Json,
    /// `listeners`: lines when listeners open and close, then a table.
    Listeners {
        short: Duration,
        json: bool,
    },
    /// A view that draws itself and reads keys (`top`).
    Live(Box<dyn Render>),
}

impl Plan {
    /// `socktrace watch`: every event, as text or JSON, on stdout.
    pub fn watch(args: WatchArgs) -> Plan {
        let view = match (args.common.json, args.lifecycle) {
            (true, _) => View::Json,
            (false, true) => View::Text(TextMode::Lifecycles),
            (false, false) => View::Text(TextMode::Events),
        };
        Plan {
            mode: Mode::Watch,
            snapshot: args.snapshot,
            existing: Dump::All,
            track_limit: args.track_limit as usize,
            tw_poll: args.tw_poll,
            interval: None,
            view,
            output: None,
            header: None,
            log_to: LogTo {
                journal: args.journal,
                syslog: args.syslog,
            },
            common: args.common,
        }
    }

    /// `socktrace listeners`.
    pub fn listeners(args: ListenersArgs) -> Plan {
        Plan {
            mode: Mode::Listeners,
            // Listeners that predate us must be known to see them close;
            // nothing else is followed.
            snapshot: true,
            existing: Dump::Listeners,
            track_limit: 1 << 18,
            tw_poll: Duration::from_secs(1),
            interval: args.interval,
            view: View::Listeners {
                short: args.short.short,
                json: args.common.json,
            },
            output: None,
            header: None,
            log_to: LogTo::default(),
            common: args.common,
        }
    }
}

pub async fn run(plan: Plan) -> anyhow::Result<Summary> {
    let Plan {
        common: args,
        mode,
        snapshot: print_snapshot,
        existing: which,
        track_limit,
        tw_poll,
        interval: report_every,
        view,
        output,
        header,
        log_to,
    } = plan;
    let Probe {
        programs,
        ring,
        counters,
        tallies: _,
        mut logger,
        mounted_tracefs,
        degraded,
        attach_time,
    } = Probe::attach(&Options {
        wakeup_bytes: WAKEUP_BYTES,
        filter: args.filter.kernel(),
        mode,
        verbose: args.verbose,
    })?;
    let mut source = Source::new(ring, counters).context("watching the ring buffer")?;
    session::announce(mounted_tracefs, &degraded, args.nice);
    let (metrics, server) = session::serve_metrics(args.metrics).await?;
    let clock = Clock::system();
    let json = matches!(view, View::Json | View::Listeners { json: true, .. });
    let palette = Palette::for_stdout(args.color, json);
    let mut render: Box<dyn Render> = match view {
        View::Json => Box::new(Json::new(clock)),
        View::Text(mode) => Box::new(Text::new(clock, mode, palette)),
        View::Listeners { short, json } => Box::new(ListenersView::new(
            clock,
            Listeners::new(short.as_nanos().try_into().unwrap_or(u64::MAX)),
            json,
            palette,
        )),
        View::Live(view) => view,
    };
    let mut out = match output {
        Some(writer) => Output::new(writer),
        None => Output::stdout(),
    };
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if log_to.journal {
        sinks.push(Box::new(Journal));
    }
    if let Some(socket) = &log_to.syslog {
        sinks.push(Box::new(Syslog::open(socket).map_err(anyhow::Error::msg)?));
    }
    let mut pipeline = Pipeline::new(track_limit, Taps { metrics, sinks }, args.filter);
    if let Some(header) = header {
        out.buf.push_str(&header);
        out.buf.push('\n');
    }
    render.preamble(&mut out.buf);

    // After attaching, so a socket opened meanwhile is in one or the other.
    let now = clock.mono_now();
    // Sockets whose events may pass the filter, to learn their owners.
    let wanted =
        |local: &SocketAddr, remote: &SocketAddr| pipeline.filter.may_match_socket(local, remote);
    let mut existing =
        snapshot(which, wanted).context("snapshot of existing sockets (sock_diag)")?;
    for known in &mut existing {
        pipeline.cgroups.resolve(&mut known.owner);
    }
    // A TIME_WAIT socket's only record left is its end, with the owner it
    // has now: no need to follow it (and poll for its end) if that cannot
    // match.
    existing.retain(|k| k.state != TcpState::TimeWait || pipeline.filter.matches_owner(&k.owner));
    if print_snapshot {
        for known in &existing {
            let record = Record::Existing(known.clone(), now);
            if pipeline.filter.matches(&record) {
                render.record(&record, &mut out.buf);
                out.flush_if_full();
            }
        }
    }
    pipeline.tracker.preload(existing, now);
    privileges::drop_all(args.user.as_deref())?;
    // Ready: tests (and people) may start acting on sockets now.
    say!(
        "socktrace: attached in {} ms; Ctrl-C to stop",
        attach_time.as_millis()
    );

    let mut stop = Stop::new(args.duration)?;
    let mut drain_tick = interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stats_tick = interval(STATS_EVERY);
    stats_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tw_tick = interval(tw_poll);
    tw_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The view's periodic report; never, unless asked for.
    let mut report_tick = interval(report_every.unwrap_or(Duration::from_secs(1 << 30)));
    report_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    report_tick.reset();
    let mut reported = KernelCounters::default();

    loop {
        tokio::select! {
            _ = stop.wait() => break,
            stopped = std::future::poll_fn(|cx| render.poll_input(cx)) => {
                stopped?;
                break;
            }
            woken = source.woken() => woken.context("waiting on the ring buffer")?,
            _ = drain_tick.tick() => {}
            _ = stats_tick.tick() => {
                if let Some(logger) = logger.as_mut() {
                    logger.flush();
                }
                let now = losses(&source, &programs);
                pipeline.report_losses(reported, now, clock.mono_now(), render.as_mut(), &mut out);
                reported = now;
            }
            _ = report_tick.tick() => {
                pipeline.drain(&mut source, render.as_mut(), &mut out);
                render.tick(clock.mono_now(), &mut out.buf);
            }
            _ = tw_tick.tick() => {
                // Everything the kernel reported before the dump first, so
                // entries into TIME_WAIT are known when we look for ends.
                pipeline.drain(&mut source, render.as_mut(), &mut out);
                pipeline.poll_sockets(clock.mono_now(), render.as_mut(), &mut out)?;
            }
        }
        pipeline.drain(&mut source, render.as_mut(), &mut out);
        out.flush();
        crate::stderr::flush();
        if out.closed {
            break; // stdout closed (`| head`) or failed: stop.
        }
    }

    // Detach first so nothing new arrives, then take what is left.
    let mut last = losses(&source, &programs);
    drop(programs);
    pipeline.drain(&mut source, render.as_mut(), &mut out);
    pipeline.finish(render.as_mut(), &mut out);
    if let Some(logger) = logger.as_mut() {
        logger.flush();
    }
    let misses = last.recursion_misses;
    last = source.counters();
    last.recursion_misses = misses;
    pipeline.report_losses(reported, last, clock.mono_now(), render.as_mut(), &mut out);
    render.finish(clock.mono_now(), &mut out.buf);
    out.flush();
    if let Some(server) = server {
        server.abort();
    }
    pipeline.summary.kernel = last;
    pipeline.summary.untracked = pipeline.tracker.evicted;
    pipeline.summary.gone = pipeline.tracker.gone;
    pipeline.summary.output_dropped = out.dropped_total;
    if json {
        let time = clock::rfc3339(clock, clock.mono_now());
        summary_line(&pipeline.summary, &time, &mut out.buf);
    }
    // A reader that is not reading now will not get the rest: counted.
    out.finish();
    pipeline.summary.output_dropped = out.dropped_total;
    if let Some(err) = out.error.take() {
        // Not all it saw could be written (a full disk): said after the
        // summary of what it saw, and a failure.
        say!("{}", pipeline.summary);
        return Err(anyhow::Error::new(err).context("writing the output"));
    }
    Ok(pipeline.summary)
}

/// The kernel's loss counters now.
fn losses(source: &Source, programs: &aya::Ebpf) -> KernelCounters {
    let mut counters = source.counters();
    counters.recursion_misses = source.skipped_runs(programs);
    counters
}

/// Every TCP socket that exists now and that `wanted(local, remote)`, with
/// its owner from /proc.
fn snapshot(
    which: Dump,
    wanted: impl Fn(&SocketAddr, &SocketAddr) -> bool,
) -> io::Result<Vec<Known>> {
    let owners = proc::socket_owners(probe::cgroup_v2_root().as_deref());
    session::announce_denied_owners(&owners.denied);
    let mut known = Vec::new();
    let netns = diag::own_netns();
    diag::for_each(which, |s| {
        if wanted(&s.local, &s.remote) {
            known.push(Known {
                netns,
                owner: owners
                    .by_inode
                    .get(&s.inode)
                    .cloned()
                    .unwrap_or(Owner::UNKNOWN),
                sock: s.sock,
                state: s.state,
                local: s.local,
                remote: s.remote,
            });
        }
    })?;
    Ok(known)
}

/// Decode, track, filter and render, counting as we go.
struct Pipeline {
    cgroups: Cgroups,
    tracker: Tracker,
    summary: Summary,
    records: Vec<Record>,
    taps: Taps,
    filter: Filter,
    /// Our network namespace: what sock_diag dumps show.
    netns: u32,
    /// The sockets the last dump listed (kept to reuse its memory).
    present: FxHashSet<SockId>,
}

impl Pipeline {
    fn new(track_limit: usize, taps: Taps, filter: Filter) -> Pipeline {
        Pipeline {
            cgroups: Cgroups::new(probe::cgroup_v2_root()),
            tracker: Tracker::new(track_limit),
            summary: Summary::default(),
            records: Vec::new(),
            taps,
            filter,
            netns: diag::own_netns(),
            present: FxHashSet::default(),
        }
    }

    fn drain(&mut self, source: &mut Source, render: &mut dyn Render, out: &mut Output) {
        let Pipeline {
            cgroups,
            tracker,
            summary,
            records,
            taps,
            filter,
            ..
        } = self;
        // Record by record, so nothing piles up however much is waiting.
        source.drain(|bytes| match event::decode(bytes) {
            Ok(mut event) => {
                cgroups.resolve(&mut event.owner);
                tracker.observe(event, records);
                emit(records, summary, taps, filter, render, out);
            }
            Err(err) => {
                if summary.malformed == 0 {
                    log::warn!("skipping malformed ring record: {err}");
                }
                summary.malformed += 1;
            }
        });
    }

    /// What the kernel sends no event for, from a sock_diag dump of our
    /// network namespace: TIME_WAIT sockets that have ended, and followed
    /// connections it no longer has (their close was missed; kept, they
    /// would pile up to the tracking limit).
    fn poll_sockets(
        &mut self,
        now: u64,
        render: &mut dyn Render,
        out: &mut Output,
    ) -> anyhow::Result<()> {
        if self.tracker.is_empty() && self.tracker.timewaits.is_empty() {
            return Ok(());
        }
        let present = &mut self.present;
        present.clear();
        diag::for_each(Dump::All, |s| {
            present.insert(s.sock);
        })
        .context("sock_diag dump of all sockets")?;
        let mut ended = Vec::new();
        let tracker = &mut self.tracker;
        tracker
            .timewaits
            .reconcile(&self.present, now, self.netns, &mut ended);
        tracker.forget_gone(&self.present, now, self.netns);
        self.records.extend(ended.into_iter().map(Record::Event));
        self.emit(render, out);
        Ok(())
    }

    /// At exit: TIME_WAITs we saw begin end by expiry (computed).
    fn finish(&mut self, render: &mut dyn Render, out: &mut Output) {
        let mut ended = Vec::new();
        self.tracker.timewaits.expire_all(&mut ended);
        self.records.extend(ended.into_iter().map(Record::Event));
        self.emit(render, out);
    }

    fn emit(&mut self, render: &mut dyn Render, out: &mut Output) {
        emit(
            &mut self.records,
            &mut self.summary,
            &mut self.taps,
            &self.filter,
            render,
            out,
        );
    }

    /// Says what the kernel could not deliver since `before`: on stderr,
    /// and as a `loss` record.
    fn report_losses(
        &mut self,
        before: KernelCounters,
        now: KernelCounters,
        mono_ns: u64,
        render: &mut dyn Render,
        out: &mut Output,
    ) {
        if let Some(metrics) = &self.taps.metrics {
            metrics.set_losses(&now, self.tracker.evicted);
        }
        let dropped = now.ring_drops - before.ring_drops;
        let missed = now.recursion_misses - before.recursion_misses;
        if dropped > 0 {
            say!(
                "socktrace: lost {dropped} events: ring buffer full ({} lost so far)",
                now.ring_drops
            );
        }
        if missed > 0 {
            say!(
                "socktrace: lost {missed} events: another BPF program was running \
                 ({} lost so far)",
                now.recursion_misses
            );
        }
        if dropped > 0 || missed > 0 {
            self.records.push(Record::Loss(now, mono_ns));
            self.emit(render, out);
        }
    }
}

/// Renders and counts those of `records` that pass `filter`, emptying it.
fn emit(
    records: &mut Vec<Record>,
    summary: &mut Summary,
    taps: &mut Taps,
    filter: &Filter,
    render: &mut dyn Render,
    out: &mut Output,
) {
    for record in records.drain(..) {
        if !filter.matches(&record) {
            summary.filtered += 1;
            continue;
        }
        let short_before = summary.short_listeners_total;
        summary.count(&record);
        taps.record(&record, summary, short_before);
        render.record(&record, &mut out.buf);
        out.flush_if_full();
    }
}

/// Where records go besides the output: Prometheus metrics, the journal,
/// syslog.
pub struct Taps {
    pub metrics: Option<Arc<Metrics>>,
    pub sinks: Vec<Box<dyn Sink>>,
}

impl Taps {
    fn record(&mut self, record: &Record, summary: &mut Summary, short_before: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.observe(record);
            if summary.short_listeners_total > short_before {
                metrics.short_lived_listener();
            }
            metrics.set_listeners_open(summary.listeners_open());
        }
        if self.sinks.is_empty() {
            return;
        }
        if let Some(entry) = logsink::entry(record) {
            for sink in &mut self.sinks {
                if let Err(err) = sink.send(&entry) {
                    if summary.log_failed == 0 {
                        log::warn!("cannot log an event: {err}");
                    }
                    summary.log_failed += 1;
                }
            }
        }
    }
}
