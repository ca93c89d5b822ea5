//! `socktrace watch`: attach, then ring -> decode -> render -> stdout until
//! stopped; then detach, drain what is left and summarise.
use std::{
    io::{self, Write},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    cli::WatchArgs,
    clock::Clock,
    event::{Decoder, Detail},
    output::{Json, Render, Text},
    probe::{Options, Probe},
    source::{KernelCounters, Source},
    summary::Summary,
};

/// How often the reader drains the ring without being woken: the most a
/// quiet event waits before it is shown.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The kernel wakes the reader early once this much is waiting.
const WAKEUP_BYTES: u64 = 256 << 10;
/// How often loss counters are checked and kernel log lines collected.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: WatchArgs) -> anyhow::Result<Summary> {
    let probe = Probe::attach(&Options {
        wakeup_bytes: WAKEUP_BYTES,
    })?;
    let Probe {
        programs,
        ring,
        counters,
        mut logger,
        mounted_tracefs,
        attach_time,
    } = probe;
    let mut source = Source::new(ring, counters).context("watching the ring buffer")?;
    if mounted_tracefs {
        eprintln!("socktrace: mounted tracefs at /sys/kernel/tracing");
    }
    eprintln!(
        "socktrace: attached in {} ms; Ctrl-C to stop",
        attach_time.as_millis()
    );

    let clock = Clock::system();
    let mut render: Box<dyn Render> = if args.json {
        Box::new(Json::new(clock))
    } else {
        Box::new(Text::new(clock))
    };
    let mut out = Output::new(io::stdout().lock());
    let mut pipeline = Pipeline::default();
    render.preamble(&mut out.buf);

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
                reported = report_losses(&source, reported)?;
            }
        }
        pipeline.drain(&mut source, render.as_mut(), &mut out.buf);
        if out.flush().is_err() {
            break; // stdout closed (`| head`): stop quietly.
        }
    }

    // Detach first so nothing new arrives, then take what is left.
    drop(programs);
    pipeline.drain(&mut source, render.as_mut(), &mut out.buf);
    let _ = out.flush();
    if let Some(logger) = logger.as_mut() {
        logger.flush();
    }
    let counters = source.counters()?;
    report_losses(&source, reported)?;
    pipeline.summary.kernel = counters;
    Ok(pipeline.summary)
}

/// Decode and render, counting as we go.
#[derive(Default)]
struct Pipeline {
    decoder: Decoder,
    summary: Summary,
}

impl Pipeline {
    fn drain(&mut self, source: &mut Source, render: &mut dyn Render, out: &mut String) {
        let Pipeline { decoder, summary } = self;
        source.drain(|bytes| match decoder.decode(bytes) {
            Ok(event) => {
                match event.detail {
                    Detail::State { .. } => summary.state += 1,
                    Detail::Bind { .. } => summary.bind += 1,
                    Detail::Listen { .. } => summary.listen += 1,
                }
                render.event(&event, out);
            }
            Err(err) => {
                if summary.malformed == 0 {
                    log::warn!("skipping malformed ring record: {err}");
                }
                summary.malformed += 1;
            }
        });
    }
}

/// Says on stderr what the kernel could not deliver since `before`.
fn report_losses(source: &Source, before: KernelCounters) -> anyhow::Result<KernelCounters> {
    let now = source.counters().context("reading loss counters")?;
    if now.ring_drops > before.ring_drops {
        eprintln!(
            "socktrace: lost {} events: ring buffer full ({} lost so far)",
            now.ring_drops - before.ring_drops,
            now.ring_drops
        );
    }
    Ok(now)
}

/// stdout with one write per batch.
struct Output<W: Write> {
    writer: W,
    buf: String,
}

impl<W: Write> Output<W> {
    fn new(writer: W) -> Self {
        Output {
            writer,
            buf: String::with_capacity(1 << 16),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.writer.write_all(self.buf.as_bytes())?;
            self.buf.clear();
        }
        self.writer.flush()
    }
}
