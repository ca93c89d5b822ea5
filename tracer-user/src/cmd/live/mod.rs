//! What every live mode shares, written once: attach the kernel programs,
//! announce what that did, serve metrics, drop privileges and say we are
//! ready, know when to stop, detach. [`stream`] is the loop of the modes
//! that stream records (`watch`, `listeners`, `record`, `top`);
//! `timewait` runs its own loop between [`Session::attach`] and
//! [`Session::detach`].
mod announce;
mod stream;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use aya_log::EbpfLogger;
use tokio::task::JoinHandle;

use self::announce::Exporters;
pub use self::{
    announce::Stop,
    stream::{LogTo, Plan, TRACK_LIMIT, TW_POLL, View, stream},
};
use crate::{
    cli::Common,
    clock::Clock,
    metrics::{
        Metrics,
        otlp::{Otlp, Pusher},
    },
    privileges,
    probe::{Mode, Options, Probe, Tallies},
    source::{KernelCounters, Source},
};

/// How often the reader drains the ring without being woken: the most a
/// quiet event waits before it is shown.
pub const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The kernel wakes the reader early once this much is waiting.
pub const WAKEUP_BYTES: u64 = 256 << 10;

/// Says that the `found` sockets that predate us are known, since
/// `started`: from then on their owners are too.
pub fn say_learnt(found: u64, started: std::time::Instant) {
    say!(
        "socktrace: {found} sockets open before start, learnt in {} ms",
        started.elapsed().as_millis()
    );
}

/// An attached run: the programs, their ring and counters, and what
/// serves the user besides the output.
pub struct Session {
    /// The loaded programs; `None` once detached.
    programs: Option<aya::Ebpf>,
    pub source: Source,
    /// `Mode::Timewait`'s counters.
    pub tallies: Option<Tallies>,
    /// Who holds the sockets that predate us, to read once (see
    /// [`crate::host::owners`]).
    pub socket_files: Option<std::fs::File>,
    /// When the kernel programs began to see transitions (see
    /// `Probe::counting_since_ns`).
    pub counting_since_ns: u64,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    pub metrics: Option<Arc<Metrics>>,
    server: Option<JoinHandle<()>>,
    /// `--otlp-metrics` until [`Session::ready`] starts it...
    otlp: Option<Otlp>,
    /// ...and then.
    pusher: Option<Pusher>,
    otlp_interval: Duration,
    attach_time: Duration,
    /// The kernel's names of its reasons to reset, where its RSTs carry one.
    pub reset_reasons: Option<Vec<String>>,
    pub clock: Clock,
}

impl Session {
    /// Loads and attaches the programs for `mode`, says what that did,
    /// sets the niceness and starts the metrics server. `reading` names
    /// what the ring is for, should it fail to open.
    pub async fn attach(common: &Common, mode: Mode, reading: &str) -> anyhow::Result<Session> {
        let Probe {
            programs,
            ring,
            counters,
            doze,
            tallies,
            socket_files,
            counting_since_ns,
            catcher_wanted,
            logger,
            mounted_tracefs,
            degraded,
            reset_reasons,
            steps,
        } = Probe::attach(&Options {
            wakeup_bytes: WAKEUP_BYTES,
            filter: common.filter.kernel(),
            mode,
            verbose: common.verbose,
        })?;
        let source = Source::new(ring, counters, doze, catcher_wanted)
            .with_context(|| reading.to_string())?;
        announce::announce(mounted_tracefs, &degraded, common.nice);
        if common.verbose {
            say!("socktrace: attaching took: {steps}");
        }
        let Exporters {
            metrics,
            server,
            otlp,
        } = announce::serve_metrics(common.metrics, common.otlp_metrics.as_ref()).await?;
        Ok(Session {
            programs: Some(programs),
            source,
            tallies,
            socket_files,
            counting_since_ns,
            logger,
            metrics,
            server,
            otlp,
            pusher: None,
            otlp_interval: common.otlp_interval,
            attach_time: steps.total(),
            reset_reasons,
            clock: Clock::system(),
        })
    }

    /// Drops privileges (to `--user`), starts pushing metrics
    /// (`--otlp-metrics`: its threads, if any, start without privileges),
    /// says we are ready (tests and people may act on sockets from now on)
    /// and returns what says when to stop (`--duration`, Ctrl-C, SIGTERM).
    pub fn ready(
        &mut self,
        user: Option<&str>,
        duration: Option<Duration>,
    ) -> anyhow::Result<Stop> {
        privileges::drop_all(user)?;
        if let Some(otlp) = self.otlp.take() {
            let url = otlp.url().clone();
            self.pusher = Some(otlp.start(self.otlp_interval)?);
            say!(
                "socktrace: pushing metrics to {url} every {} s",
                self.otlp_interval.as_secs_f64()
            );
        }
        say!(
            "socktrace: attached in {} ms; Ctrl-C to stop",
            self.attach_time.as_millis()
        );
        Ok(Stop::new(duration)?)
    }

    /// Collects the kernel programs' log lines (`--verbose`).
    pub fn flush_log(&mut self) {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
    }

    /// Events lost to runs the kernel skipped (see
    /// [`Source::skipped_runs`]); 0 once detached.
    pub fn skipped_runs(&self) -> u64 {
        self.programs
            .as_ref()
            .map_or(0, |programs| self.source.skipped_runs(programs))
    }

    /// The kernel's loss counters now.
    pub fn losses(&self) -> KernelCounters {
        let mut counters = self.source.counters();
        counters.recursion_misses = self.skipped_runs();
        counters
    }

    /// Detaches the programs so nothing new arrives (what is in the ring
    /// stays to be drained); returns the runs skipped until now.
    pub fn detach(&mut self) -> u64 {
        let missed = self.skipped_runs();
        self.programs = None;
        missed
    }

    /// Stops serving metrics; pushes them a last time.
    pub async fn stop_serving(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(pusher) = self.pusher.take() {
            pusher.finish().await;
        }
    }
}
