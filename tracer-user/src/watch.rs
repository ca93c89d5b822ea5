//! `socktrace watch`: attach, snapshot what exists, then ring -> decode ->
//! track -> render -> stdout until stopped; then detach, drain what is left
//! and summarise.
use std::{
    io::{self, Write},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use rustc_hash::FxHashSet;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    cli::WatchArgs,
    clock::Clock,
    diag::{self, Dump},
    event::{self, Owner},
    metrics::{self, Metrics},
    output::{Json, Render, Text, TextMode},
    probe::{self, Options, Probe},
    proc::{self, Cgroups},
    source::{KernelCounters, Source},
    summary::Summary,
    track::{Known, Record, Tracker},
};

/// How often the reader drains the ring without being woken: the most a
/// quiet event waits before it is shown.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The kernel wakes the reader early once this much is waiting.
const WAKEUP_BYTES: u64 = 256 << 10;
/// How often loss counters are checked and kernel log lines collected.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: WatchArgs) -> anyhow::Result<Summary> {
    let Probe {
        programs,
        ring,
        counters,
        mut logger,
        mounted_tracefs,
        degraded,
        attach_time,
    } = Probe::attach(&Options {
        wakeup_bytes: WAKEUP_BYTES,
        ports: args.ports.clone(),
    })?;
    let mut source = Source::new(ring, counters).context("watching the ring buffer")?;
    // SAFETY: setpriority on this process only.
    if args.nice != 0 && unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, args.nice) } != 0 {
        let err = io::Error::last_os_error();
        eprintln!(
            "socktrace: cannot set niceness {}: {err}; may drop events under load",
            args.nice
        );
    }
    if mounted_tracefs {
        eprintln!("socktrace: mounted tracefs at /sys/kernel/tracing");
    }
    for what in &degraded {
        eprintln!("socktrace: degraded: {what}");
    }
    let (metrics, server) = match args.metrics {
        Some(addr) => {
            let metrics = Arc::new(Metrics::new());
            let server = metrics::serve(addr, Arc::clone(&metrics))
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            eprintln!("socktrace: metrics at http://{addr}/metrics");
            (Some(metrics), Some(server))
        }
        None => (None, None),
    };
    let clock = Clock::system();
    let mut render: Box<dyn Render> = if args.json {
        Box::new(Json::new(clock))
    } else if args.lifecycle {
        Box::new(Text::new(clock, TextMode::Lifecycles))
    } else {
        Box::new(Text::new(clock, TextMode::Events))
    };
    let mut out = Output::new();
    let mut pipeline = Pipeline::new(args.track_limit as usize, metrics);
    render.preamble(&mut out.buf);

    // After attaching, so a socket opened meanwhile is in one or the other.
    let now = clock.mono_now();
    // The kernel filters events; the snapshot is ours to filter.
    let wanted = |local: u16, remote: u16| {
        args.ports.is_empty() || args.ports.contains(&local) || args.ports.contains(&remote)
    };
    let mut existing = snapshot(wanted).context("snapshot of existing sockets (sock_diag)")?;
    for known in &mut existing {
        pipeline.cgroups.resolve(&mut known.owner);
    }
    if args.snapshot {
        for known in &existing {
            render.record(&Record::Existing(known.clone(), now), &mut out.buf);
            out.flush_if_full();
        }
    }
    pipeline.tracker.preload(existing, now);
    // Ready: tests (and people) may start acting on sockets now.
    eprintln!(
        "socktrace: attached in {} ms; Ctrl-C to stop",
        attach_time.as_millis()
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut drain_tick = interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stats_tick = interval(STATS_EVERY);
    stats_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tw_tick = interval(args.tw_poll);
    tw_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reported = KernelCounters::default();

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
            woken = source.woken() => woken.context("waiting on the ring buffer")?,
            _ = drain_tick.tick() => {}
            _ = stats_tick.tick() => {
                if let Some(logger) = logger.as_mut() {
                    logger.flush();
                }
                let now = losses(&source, &programs)?;
                pipeline.report_losses(reported, now, clock.mono_now(), render.as_mut(), &mut out);
                reported = now;
            }
            _ = tw_tick.tick() => {
                // Everything the kernel reported before the dump first, so
                // entries into TIME_WAIT are known when we look for ends.
                pipeline.drain(&mut source, render.as_mut(), &mut out);
                pipeline.poll_timewaits(clock.mono_now(), render.as_mut(), &mut out)?;
            }
        }
        pipeline.drain(&mut source, render.as_mut(), &mut out);
        out.flush();
        if out.closed {
            break; // stdout closed (`| head`): stop quietly.
        }
    }

    // Detach first so nothing new arrives, then take what is left.
    let mut last = losses(&source, &programs)?;
    drop(programs);
    pipeline.drain(&mut source, render.as_mut(), &mut out);
    pipeline.finish(render.as_mut(), &mut out);
    if let Some(logger) = logger.as_mut() {
        logger.flush();
    }
    let misses = last.recursion_misses;
    last = source.counters()?;
    last.recursion_misses = misses;
    pipeline.report_losses(reported, last, clock.mono_now(), render.as_mut(), &mut out);
    out.flush();
    if let Some(server) = server {
        server.abort();
    }
    pipeline.summary.kernel = last;
    pipeline.summary.untracked = pipeline.tracker.evicted;
    Ok(pipeline.summary)
}

/// The kernel's loss counters now.
fn losses(source: &Source, programs: &aya::Ebpf) -> anyhow::Result<KernelCounters> {
    let mut counters = source.counters().context("reading loss counters")?;
    counters.recursion_misses = probe::total_recursion_misses(programs);
    Ok(counters)
}

/// Every TCP socket that exists now and that `wanted(local port, remote
/// port)`, with its owner from /proc.
fn snapshot(wanted: impl Fn(u16, u16) -> bool) -> io::Result<Vec<Known>> {
    let owners = proc::socket_owners(probe::cgroup_v2_root().as_deref());
    let mut known = Vec::new();
    diag::for_each(Dump::All, |s| {
        if wanted(s.local.port(), s.remote.port()) {
            known.push(Known {
                owner: owners.get(&s.inode).cloned().unwrap_or(Owner::UNKNOWN),
                sock: s.sock,
                state: s.state,
                local: s.local,
                remote: s.remote,
            });
        }
    })?;
    Ok(known)
}

/// Decode, track and render, counting as we go.
struct Pipeline {
    cgroups: Cgroups,
    tracker: Tracker,
    summary: Summary,
    records: Vec<Record>,
    metrics: Option<Arc<Metrics>>,
}

impl Pipeline {
    fn new(track_limit: usize, metrics: Option<Arc<Metrics>>) -> Pipeline {
        Pipeline {
            cgroups: Cgroups::new(probe::cgroup_v2_root()),
            tracker: Tracker::new(track_limit),
            summary: Summary::default(),
            records: Vec::new(),
            metrics,
        }
    }

    fn drain(&mut self, source: &mut Source, render: &mut dyn Render, out: &mut Output) {
        let Pipeline {
            cgroups,
            tracker,
            summary,
            records,
            metrics,
        } = self;
        // Record by record, so nothing piles up however much is waiting.
        source.drain(|bytes| match event::decode(bytes) {
            Ok(mut event) => {
                cgroups.resolve(&mut event.owner);
                tracker.observe(event, records);
                emit(records, summary, metrics.as_deref(), render, out);
            }
            Err(err) => {
                if summary.malformed == 0 {
                    log::warn!("skipping malformed ring record: {err}");
                }
                summary.malformed += 1;
            }
        });
    }

    /// Looks for TIME_WAIT sockets that have ended since the last poll.
    fn poll_timewaits(
        &mut self,
        now: u64,
        render: &mut dyn Render,
        out: &mut Output,
    ) -> anyhow::Result<()> {
        if self.tracker.timewaits.is_empty() {
            return Ok(());
        }
        let mut present = FxHashSet::default();
        diag::for_each(Dump::TimeWait, |s| {
            present.insert(s.sock);
        })
        .context("sock_diag dump of TIME_WAIT sockets")?;
        let mut ended = Vec::new();
        self.tracker.timewaits.reconcile(&present, now, &mut ended);
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
        let metrics = self.metrics.as_deref();
        emit(&mut self.records, &mut self.summary, metrics, render, out);
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
        if let Some(metrics) = &self.metrics {
            metrics.set_losses(&now, self.tracker.evicted);
        }
        let dropped = now.ring_drops - before.ring_drops;
        let missed = now.recursion_misses - before.recursion_misses;
        if dropped > 0 {
            eprintln!(
                "socktrace: lost {dropped} events: ring buffer full ({} lost so far)",
                now.ring_drops
            );
        }
        if missed > 0 {
            eprintln!(
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

/// Renders and counts `records`, emptying it.
fn emit(
    records: &mut Vec<Record>,
    summary: &mut Summary,
    metrics: Option<&Metrics>,
    render: &mut dyn Render,
    out: &mut Output,
) {
    for record in records.drain(..) {
        summary.count(&record);
        if let Some(metrics) = metrics {
            metrics.observe(&record);
        }
        render.record(&record, &mut out.buf);
        out.flush_if_full();
    }
}

/// stdout, written in large chunks. A write error (a closed pipe) stops
/// the output for good and is reported through `closed`.
struct Output {
    writer: io::StdoutLock<'static>,
    buf: String,
    closed: bool,
}

/// Write out once this much is buffered, even in the middle of a batch.
const OUTPUT_CHUNK: usize = 1 << 20;

impl Output {
    fn new() -> Self {
        Output {
            writer: io::stdout().lock(),
            buf: String::with_capacity(OUTPUT_CHUNK + (1 << 12)),
            closed: false,
        }
    }

    fn flush_if_full(&mut self) {
        if self.buf.len() >= OUTPUT_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.closed && !self.buf.is_empty() {
            self.closed = self
                .writer
                .write_all(self.buf.as_bytes())
                .and_then(|()| self.writer.flush())
                .is_err();
        }
        self.buf.clear();
    }
}
