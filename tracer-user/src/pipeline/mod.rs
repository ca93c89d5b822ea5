//! The stages after the ring, one record at a time: raw bytes -> decode
//! -> enrich (cgroups) -> track -> filter -> render and count. Nothing
//! here reads the kernel or the host: the live loop hands it ring records
//! and sock_diag's answers, and tests hand it recorded bytes.
mod snapshot;

use std::sync::Arc;

use self::snapshot::Pending;
use crate::{
    analysis::stuck::{Stuck, may_stick},
    event::{self, Decoded, Event, SockId, TcpState},
    filter::Filter,
    host::Cgroups,
    logsink::{self, Sink},
    metrics::Metrics,
    output::Render,
    source::KernelCounters,
    summary::Summary,
    track::{Known, Record, Tracker},
    writer::Output,
};

/// Decode, track, filter and render, counting as we go.
pub struct Pipeline {
    cgroups: Cgroups,
    tracker: Tracker,
    pub summary: Summary,
    records: Vec<Record>,
    taps: Taps,
    pub filter: Filter,
    /// Our network namespace: what sock_diag dumps show.
    netns: u32,
    /// The start-up snapshot, until it settles (see [`Pipeline::learn`]).
    pending: Option<Pending>,
}

impl Pipeline {
    /// `netns`: our network namespace, what sock_diag dumps show.
    pub fn new(
        track_limit: usize,
        taps: Taps,
        filter: Filter,
        cgroups: Cgroups,
        netns: u32,
    ) -> Pipeline {
        Pipeline {
            cgroups,
            tracker: Tracker::new(track_limit),
            summary: Summary::default(),
            records: Vec::new(),
            taps,
            filter,
            netns,
            pending: None,
        }
    }

    /// Learns a socket the start-up snapshot found at `now`, taken after
    /// attaching; printed if it passes the filter and `print`
    /// (`--snapshot`). Held until [`Pipeline::settle`]: records that were
    /// in the ring first may show it was born after we attached. But for a
    /// TIME_WAIT that began before (the snapshot leaves out the others): no
    /// record comes of it but its end, so it is learnt at once.
    pub fn learn(
        &mut self,
        known: Known,
        now: u64,
        print: bool,
        render: &mut dyn Render,
        out: &mut Output,
    ) {
        if known.state == TcpState::TimeWait {
            self.preload(known, now, print, render, out);
            return;
        }
        self.pending
            .get_or_insert_with(|| Pending::new(now, print))
            .add(known);
    }

    /// Once the records that waited in the ring while the snapshot was
    /// taken are in: learns the snapshot's sockets none of them was about.
    pub fn settle(&mut self, render: &mut dyn Render, out: &mut Output) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let (now, print) = (pending.now, pending.print);
        for known in pending.into_rest() {
            self.preload(known, now, print, render, out);
        }
    }

    /// Learns a socket that existed at start (`now`), printing it if it
    /// passes the filter and `print`.
    fn preload(
        &mut self,
        mut known: Known,
        now: u64,
        print: bool,
        render: &mut dyn Render,
        out: &mut Output,
    ) {
        if !self.filter.may_match_socket(&known.local, &known.remote) {
            return;
        }
        self.cgroups.resolve(&mut known.owner);
        // A TIME_WAIT socket's only record left is its end, with the owner
        // it has now: no need to follow it (and poll for its end) if that
        // cannot match.
        if known.state == TcpState::TimeWait && !self.filter.matches_owner(&known.owner) {
            return;
        }
        // One stuck since before we started counts in the gauge, shown or not.
        let stuck = self.taps.stuck.as_mut().filter(|_| may_stick(known.state));
        if print || stuck.is_some() {
            let record = Record::Existing(known.clone(), now);
            if self.filter.matches(&record) {
                if let Some(stuck) = stuck {
                    stuck.observe(&record);
                }
                if print {
                    render.record(&record, &mut out.buf);
                    out.flush_if_full();
                }
            }
        }
        self.tracker.preload([known], now);
    }

    /// One raw ring record, through every stage.
    pub fn record(&mut self, bytes: &[u8], render: &mut dyn Render, out: &mut Output) {
        match event::decode(bytes) {
            Ok(Decoded::Reset { sock, code }) => {
                self.tracker.reset(sock, code, &mut self.records);
                self.emit(render, out);
            }
            Ok(Decoded::Event(mut event)) => {
                if let Some(pending) = self.pending.as_mut()
                    && let Some(known) = pending.meet(&event)
                {
                    let (now, print) = (pending.now, pending.print);
                    self.preload(known, now, print, render, out);
                }
                self.cgroups.resolve(&mut event.owner);
                self.tracker.observe(event, &mut self.records);
                self.emit(render, out);
            }
            Err(err) => {
                if self.summary.malformed == 0 {
                    log::warn!("skipping malformed ring record: {err}");
                }
                self.summary.malformed += 1;
            }
        }
    }

    /// Every record of `records`, in order.
    pub fn run<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a [u8]>,
        render: &mut dyn Render,
        out: &mut Output,
    ) {
        for bytes in records {
            self.record(bytes, render, out);
        }
    }

    /// Whether TIME_WAIT sockets are followed, whose end only sock_diag
    /// can tell (see [`Pipeline::time_waits_listed`]).
    pub fn follows_time_waits(&self) -> bool {
        !self.tracker.timewaits.is_empty()
    }

    /// Whether connections are followed (see
    /// [`Pipeline::connections_listed`]).
    pub fn follows_connections(&self) -> bool {
        !self.tracker.is_empty()
    }

    /// The TIME_WAIT sockets of our network namespace, from a sock_diag
    /// dump that began at `now` (`present`, sorted): those we follow that
    /// it misses have ended (the kernel sends no event for that).
    pub fn time_waits_listed(
        &mut self,
        present: &[SockId],
        now: u64,
        render: &mut dyn Render,
        out: &mut Output,
    ) {
        let mut emitter = Emitter {
            summary: &mut self.summary,
            taps: &mut self.taps,
            filter: &self.filter,
            render,
            out,
        };
        self.tracker
            .timewaits
            .reconcile(present, now, self.netns, &mut emitter);
    }

    /// The connections of our network namespace, from a sock_diag dump
    /// that began at `now` (`present`, sorted): those we follow that it
    /// misses are forgotten (their close was lost; kept, they would pile
    /// up to the tracking limit).
    pub fn connections_listed(&mut self, present: &[SockId], now: u64) {
        self.tracker.forget_gone(present, now, self.netns);
    }

    /// The kernel's names of its reasons to reset, by value: closes that
    /// end in a RST sent here wait for its reason (see [`crate::track::Resets`]).
    pub fn name_resets(&mut self, names: Vec<String>) {
        self.tracker.resets.name(names);
    }

    /// Closes whose RST's reason did not come by `now` go out without one.
    pub fn release_resets(&mut self, now: u64, render: &mut dyn Render, out: &mut Output) {
        self.tracker.resets.release(Some(now), &mut self.records);
        self.emit(render, out);
    }

    /// Sets the gauge of stuck connections, by program and state, to what
    /// they are at `now` (with metrics only).
    pub fn count_stuck(&self, now: u64) {
        if let (Some(stuck), Some(metrics)) = (&self.taps.stuck, &self.taps.metrics) {
            metrics.set_stuck(&stuck.by_process(now));
        }
    }

    /// At exit: closes still waiting for their RST's reason go out, and
    /// TIME_WAITs we saw begin end by expiry (computed).
    pub fn finish(&mut self, render: &mut dyn Render, out: &mut Output) {
        self.tracker.resets.release(None, &mut self.records);
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
    pub fn report_losses(
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

impl Pipeline {
    /// The summary's totals at the end: the kernel's counters `kernel`,
    /// the tracker's and `output_dropped` lines the output dropped.
    pub fn close_summary(&mut self, kernel: KernelCounters, output_dropped: u64) {
        self.summary.kernel = kernel;
        self.summary.untracked = self.tracker.evicted;
        self.summary.gone = self.tracker.gone;
        self.summary.output_dropped = output_dropped;
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
    let mut emitter = Emitter {
        summary,
        taps,
        filter,
        render,
        out,
    };
    for record in records.drain(..) {
        emitter.emit(&record);
    }
}

/// Where each record goes once made: counted, filtered, tapped, rendered.
struct Emitter<'a> {
    summary: &'a mut Summary,
    taps: &'a mut Taps,
    filter: &'a Filter,
    render: &'a mut dyn Render,
    out: &'a mut Output,
}

impl Emitter<'_> {
    fn emit(&mut self, record: &Record) {
        if !self.filter.matches(record) {
            self.summary.filtered += 1;
            return;
        }
        let short_before = self.summary.short_listeners_total;
        self.summary.count(record);
        self.taps.record(record, self.summary, short_before);
        self.render.record(record, &mut self.out.buf);
        self.out.flush_if_full();
    }
}

/// Events rendered as they come, none held.
impl Extend<Event> for Emitter<'_> {
    fn extend<I: IntoIterator<Item = Event>>(&mut self, events: I) {
        for event in events {
            self.emit(&Record::Event(event));
        }
    }
}

/// Where records go besides the output: Prometheus metrics, the journal,
/// syslog.
pub struct Taps {
    pub metrics: Option<Arc<Metrics>>,
    /// The connections that may be stuck, for the metrics' gauge.
    pub stuck: Option<Stuck>,
    pub sinks: Vec<Box<dyn Sink>>,
}

impl Taps {
    fn record(&mut self, record: &Record, summary: &mut Summary, short_before: u64) {
        if let Some(stuck) = &mut self.stuck {
            stuck.observe(record);
        }
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

#[cfg(test)]
mod tests;
