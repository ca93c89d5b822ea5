//! The streaming modes' run (`watch`, `listeners`, `record`, `top`):
//! attach, snapshot what exists, then ring -> [`Pipeline`] -> output until
//! stopped; then detach, drain what is left and summarise.
use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::time::{Interval, MissedTickBehavior, interval};

use super::{DRAIN_EVERY, Session, Stop};
use crate::{
    analysis::{
        listeners::{Listeners, What},
        stuck::Stuck,
    },
    cli::{Common, StuckThreshold},
    clock::{self, Clock, nanos},
    event::SockId,
    host::{self, diag::Dump, pace::Pace},
    logsink::{Journal, Sink, Syslog},
    output::{Json, ListenersView, Palette, Render, StuckView, Text, TextMode, summary_line},
    pipeline::{Pipeline, Taps},
    probe::Mode,
    source::KernelCounters,
    summary::Summary,
    track::GONE_AFTER_NS,
    writer::Output,
};

/// Drains in a row that find nothing (0.1 s of them) before the reader
/// sleeps until a record wakes it.
const DOZE_AFTER: u32 = 10;
/// How often the reader drains while it sleeps all the same: a record
/// that raced with its falling asleep waits at most this long.
const DOZING_DRAIN_EVERY: Duration = Duration::from_secs(1);
/// How often loss counters are checked and kernel log lines collected.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// The most connections followed at once, unless `--track-limit` says.
pub const TRACK_LIMIT: u32 = 1 << 18;
/// How often ended TIME_WAITs are looked for, unless `--tw-poll` says.
pub const TW_POLL: Duration = Duration::from_secs(1);

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
    /// A connection is stuck after this long in CLOSE_WAIT, FIN_WAIT2 or
    /// SYN_SENT (`--stuck`): for the `stuck` view and the metrics' gauge.
    pub stuck: Duration,
}

impl Plan {
    /// Every event as text on stdout, learning every existing socket,
    /// with the default limits: what each mode starts from.
    pub fn live_defaults(common: Common) -> Plan {
        Plan {
            common,
            mode: Mode::Watch,
            snapshot: false,
            existing: Dump::All,
            track_limit: TRACK_LIMIT as usize,
            tw_poll: TW_POLL,
            interval: None,
            view: View::Text(TextMode::Events),
            output: None,
            header: None,
            log_to: LogTo::default(),
            stuck: StuckThreshold::default().stuck,
        }
    }
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
    /// `record`: the JSON stream, and every listener's accept queue each
    /// interval.
    Recording,
    /// `listeners`: lines when listeners open and close, then a table.
    Listeners {
        short: Duration,
        json: bool,
    },
    /// `stuck`: a table of connections stuck longer than `Plan::stuck`.
    Stuck {
        json: bool,
    },
    /// A view that draws itself and reads keys (`top`).
    Live(Box<dyn Render>),
}

impl View {
    fn is_json(&self) -> bool {
        matches!(
            self,
            View::Json
                | View::Recording
                | View::Listeners { json: true, .. }
                | View::Stuck { json: true, .. }
        )
    }

    /// The view, with `stuck`: the plan's threshold.
    fn render(self, clock: Clock, palette: Palette, stuck: Duration) -> Box<dyn Render> {
        match self {
            View::Json => Box::new(Json::new(clock)),
            View::Recording => Box::new(Json::recording(clock)),
            View::Text(mode) => Box::new(Text::new(clock, mode, palette)),
            View::Listeners { short, json } => Box::new(ListenersView::new(
                clock,
                Listeners::new(nanos(short)),
                json,
                palette,
            )),
            View::Stuck { json } => Box::new(StuckView::new(clock, Stuck::new(nanos(stuck)), json)),
            View::Live(view) => view,
        }
    }
}

/// One streaming run, start to summary.
pub async fn stream(plan: Plan) -> anyhow::Result<Summary> {
    let mut session = Session::attach(&plan.common, plan.mode, "watching the ring buffer").await?;
    let (user, duration) = (plan.common.user.clone(), plan.common.duration);
    let clock = session.clock;
    let json = plan.view.is_json();
    let mut render = plan.view.render(
        clock,
        Palette::for_stdout(plan.common.color, json),
        plan.stuck,
    );
    let mut out = match plan.output {
        Some(writer) => Output::new(writer),
        None => Output::stdout(),
    };
    let taps = Taps {
        // The gauge of stuck connections needs them followed.
        stuck: session
            .metrics
            .is_some()
            .then(|| Stuck::new(nanos(plan.stuck))),
        metrics: session.metrics.clone(),
        sinks: sinks(&plan.log_to)?,
    };
    let netns = crate::host::diag::own_netns();
    let cgroups = host::Cgroups::new(crate::probe::cgroup_v2_root());
    let mut pipeline = Pipeline::new(plan.track_limit, taps, plan.common.filter, cgroups, netns);
    if let Some(names) = session.reset_reasons.take() {
        pipeline.name_resets(names);
    }
    if let Some(header) = plan.header {
        out.buf.push_str(&header);
        out.buf.push('\n');
    }
    render.preamble(&mut out.buf);
    let started = Instant::now();
    let existing = Existing {
        which: plan.existing,
        socket_files: session.socket_files.take(),
        since_ns: session.counting_since_ns,
        print: plan.snapshot,
    };
    let mut pace = Pace::new(plan.tw_poll);
    // Shown, the sockets that exist must be all that existed when we say
    // we are attached (one closed before the dump would be missing); else
    // they only name the owners of older sockets, and need not hold the
    // start up. The snapshot is a dump too: the first poll comes a paced
    // period on.
    let (stop, found) = if plan.snapshot {
        let found =
            pace.first_after(|| existing.learn(&mut pipeline, clock, render.as_mut(), &mut out))?;
        (session.ready(user.as_deref(), duration)?, found)
    } else {
        let stop = session.ready(user.as_deref(), duration)?;
        let found =
            pace.first_after(|| existing.learn(&mut pipeline, clock, render.as_mut(), &mut out))?;
        (stop, found)
    };
    let ticks = Ticks::new(pace.period(), plan.interval);
    let mut run = Run {
        session,
        pipeline,
        render,
        out,
        reported: KernelCounters::default(),
        present: Vec::new(),
        pace,
        checked: KernelCounters::default(),
        loss_noticed_ns: None,
        empty_drains: 0,
        dozing: false,
    };
    // What happened while the snapshot was taken, then what it found.
    run.drain();
    run.pipeline.settle(run.render.as_mut(), &mut run.out);
    super::say_learnt(found, started);
    run.run(stop, ticks).await?;
    run.finish(json).await
}

/// The start-up snapshot: the sockets `which` names, their owners from the
/// iterator's `socket_files` (see [`host::owners`]), TIME_WAITs that began
/// before `since_ns` (when the programs began to see transitions), shown
/// if `print`.
struct Existing {
    which: Dump,
    socket_files: Option<std::fs::File>,
    since_ns: u64,
    print: bool,
}

impl Existing {
    /// Takes it into `pipeline` (see [`Pipeline::learn`]): once attached,
    /// so a socket opened meanwhile is in it or in the ring (or both); it
    /// needs no privilege. How many sockets it found.
    fn learn(
        self,
        pipeline: &mut Pipeline,
        clock: Clock,
        render: &mut dyn Render,
        out: &mut Output,
    ) -> anyhow::Result<u64> {
        let now = clock.mono_now();
        let mut found = 0u64;
        host::snapshot(self.which, self.socket_files, self.since_ns, |known| {
            found += 1;
            pipeline.learn(known, now, self.print, render, out);
        })
        .context("snapshot of existing sockets (sock_diag)")?;
        Ok(found)
    }
}

/// The journal and syslog sinks `--journal` and `--syslog` asked for.
fn sinks(log_to: &LogTo) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if log_to.journal {
        sinks.push(Box::new(Journal));
    }
    if let Some(socket) = &log_to.syslog {
        sinks.push(Box::new(Syslog::open(socket).map_err(anyhow::Error::msg)?));
    }
    Ok(sinks)
}

/// The loop's timers.
struct Ticks {
    drain: Interval,
    stats: Interval,
    tw: Interval,
    /// The view's periodic report; never, unless asked for.
    report: Interval,
}

impl Ticks {
    /// The first poll one `tw_poll` on (the snapshot has just listed
    /// everything).
    fn new(tw_poll: Duration, report_every: Option<Duration>) -> Ticks {
        let mut report = delayed(report_every.unwrap_or(Duration::from_secs(1 << 30)));
        report.reset();
        let mut tw = delayed(tw_poll);
        tw.reset();
        Ticks {
            drain: delayed(DRAIN_EVERY),
            stats: delayed(STATS_EVERY),
            tw,
            report,
        }
    }
}

/// A timer every `period`, the first now, that never bunches up ticks it
/// missed.
fn delayed(period: Duration) -> Interval {
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// A streaming run once ready: the session, its pipeline and output.
struct Run {
    session: Session,
    pipeline: Pipeline,
    render: Box<dyn Render>,
    out: Output,
    /// The loss counters last reported.
    reported: KernelCounters,
    /// The sockets the last dump listed (kept to reuse its memory).
    present: Vec<SockId>,
    /// How often sock_diag is polled.
    pace: Pace,
    /// The loss counters when followed connections were last checked.
    checked: KernelCounters,
    /// When a loss was noticed whose connections may still be followed.
    loss_noticed_ns: Option<u64>,
    /// Drains in a row that found the ring empty.
    empty_drains: u32,
    /// We told the programs that we sleep (see [`Run::doze`]).
    dozing: bool,
}

impl Run {
    /// Until stopped, the user quits or the output is gone.
    async fn run(&mut self, mut stop: Stop, mut ticks: Ticks) -> anyhow::Result<()> {
        let clock = self.session.clock;
        loop {
            tokio::select! {
                _ = stop.wait() => break,
                stopped = std::future::poll_fn(|cx| self.render.poll_input(cx)) => {
                    stopped?;
                    break;
                }
                woken = self.session.source.woken() => woken.context("waiting on the ring buffer")?,
                _ = ticks.drain.tick() => {}
                _ = ticks.stats.tick() => {
                    self.session.flush_log();
                    let now = self.session.losses();
                    self.report_losses(now);
                    self.pipeline.release_resets(
                        clock.mono_now(),
                        self.render.as_mut(),
                        &mut self.out,
                    );
                    self.pipeline.count_stuck(clock.mono_now());
                }
                _ = ticks.report.tick() => {
                    self.drain();
                    self.sample_queues(clock.mono_now())?;
                    self.render.tick(clock.mono_now(), &mut self.out.buf);
                }
                _ = ticks.tw.tick() => {
                    // Everything the kernel reported before the dump first, so
                    // entries into TIME_WAIT are known when we look for ends.
                    self.drain();
                    if self.poll_sockets(clock.mono_now())? {
                        ticks.tw = delayed(self.pace.period());
                        ticks.tw.reset();
                    }
                }
            }
            let drained = self.drain();
            self.doze(drained, &mut ticks.drain);
            self.out.flush();
            crate::stderr::flush();
            if self.out.closed {
                break; // stdout closed (`| head`) or failed: stop.
            }
        }
        Ok(())
    }

    /// Hands the view that shows them a sample of every listener's accept
    /// queue (sock_diag), and the exporter what they dropped.
    fn sample_queues(&mut self, now: u64) -> anyhow::Result<()> {
        if !self.render.samples_queues() {
            return Ok(());
        }
        let mut samples = Vec::new();
        host::diag::queues(|q| samples.push(q)).context("sock_diag dump of listeners")?;
        let notes = self.render.queues(now, &samples, &mut self.out.buf);
        if let Some(metrics) = &self.session.metrics {
            for note in &notes {
                if let What::Dropped { dropped, .. } = note.what {
                    metrics.listen_drops(note.addr.port(), dropped);
                }
            }
        }
        Ok(())
    }

    /// Says what was lost since last said (see
    /// [`Pipeline::report_losses`]).
    fn report_losses(&mut self, now: KernelCounters) {
        let mono_ns = self.session.clock.mono_now();
        self.pipeline.report_losses(
            self.reported,
            now,
            mono_ns,
            self.render.as_mut(),
            &mut self.out,
        );
        self.reported = now;
    }

    /// Detach first so nothing new arrives, then take what is left, say
    /// what was lost, report and summarise.
    async fn finish(mut self, json: bool) -> anyhow::Result<Summary> {
        let misses = self.session.detach();
        self.drain();
        if let Some(polls) = self.pace.summary() {
            say!("{polls}");
        }
        self.pipeline.finish(self.render.as_mut(), &mut self.out);
        self.session.flush_log();
        let mut last = self.session.source.counters();
        last.recursion_misses = misses;
        self.report_losses(last);
        let clock = self.session.clock;
        self.sample_queues(clock.mono_now())?;
        self.render.finish(clock.mono_now(), &mut self.out.buf);
        self.out.flush();
        self.session.stop_serving().await;
        let Run {
            mut pipeline,
            mut out,
            ..
        } = self;
        pipeline.close_summary(last, out.dropped_total);
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

    /// Takes every record waiting in the ring; how many there were.
    fn drain(&mut self) -> usize {
        let Run {
            session,
            pipeline,
            render,
            out,
            ..
        } = self;
        session
            .source
            .drain(|bytes| pipeline.record(bytes, render.as_mut(), out))
    }

    /// After `DOZE_AFTER` drains in a row found nothing (and no output
    /// waits for its reader), sleeps until a
    /// record wakes us (the programs wake us for each while we do), with
    /// `drain` slowed to `DOZING_DRAIN_EVERY`; back to `DRAIN_EVERY` once
    /// records come. An idle socktrace is not woken 100 times a second.
    fn doze(&mut self, drained: usize, drain: &mut Interval) {
        // Output waiting for its reader goes out as the loop comes round.
        if drained > 0 || self.out.behind() {
            self.empty_drains = 0;
            if self.dozing {
                self.dozing = false;
                self.session.source.doze(false);
                *drain = delayed(DRAIN_EVERY);
                drain.reset();
            }
            return;
        }
        self.empty_drains = self.empty_drains.saturating_add(1);
        if self.dozing || self.empty_drains < DOZE_AFTER {
            return;
        }
        self.session.source.doze(true);
        self.dozing = true;
        *drain = delayed(DOZING_DRAIN_EVERY);
        drain.reset();
        // A record put in the ring before the programs saw the word woke
        // nobody: taken now.
        let late = self.drain();
        self.doze(late, drain);
    }

    /// Asks sock_diag which TIME_WAIT sockets exist, if the pipeline
    /// follows any, and which connections, if events were lost since they
    /// were last checked: without a loss, every connection's close comes
    /// as an event. True if the polls' period changed (see [`Pace`]).
    fn poll_sockets(&mut self, now: u64) -> anyhow::Result<bool> {
        let losses = self.session.losses();
        if (losses.ring_drops, losses.recursion_misses)
            != (self.checked.ring_drops, self.checked.recursion_misses)
        {
            self.checked = losses;
            self.loss_noticed_ns = Some(now);
        }
        let check_connections = self.pipeline.follows_connections()
            && self.loss_noticed_ns.is_some_and(|noticed| {
                // Until a dump a while after it, when no followed socket
                // whose close was lost can have had an event too recently.
                if now >= noticed + GONE_AFTER_NS {
                    self.loss_noticed_ns = None;
                }
                true
            });
        if !self.pipeline.follows_time_waits() && !check_connections {
            return Ok(false);
        }
        let Run {
            pipeline,
            render,
            out,
            present,
            pace,
            ..
        } = self;
        let (listed, changed) = pace.poll(|| -> anyhow::Result<()> {
            if pipeline.follows_time_waits() {
                host::listed(Dump::TimeWait, present).context("sock_diag dump of TIME_WAIT")?;
                pipeline.time_waits_listed(present, now, render.as_mut(), out);
            }
            if check_connections {
                host::listed(Dump::Connections, present)
                    .context("sock_diag dump of connections")?;
                pipeline.connections_listed(present, now);
            }
            Ok(())
        });
        listed?;
        Ok(changed)
    }
}
