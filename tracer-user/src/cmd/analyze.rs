//! `socktrace analyze FILE --report ...`: the live analyses, run over a
//! recording. Bad lines are reported with their number and skipped; the
//! analysis goes on with the rest. Input without a single record or
//! header (empty, or not socktrace's) is one line and an error.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::Path,
};

use anyhow::Context as _;
use rustc_hash::FxHashMap;

use crate::{
    analysis::{
        lifecycles::Lifecycles,
        listeners::Listeners,
        listeners::What,
        stuck::Stuck,
        timewait::{Dest, Feed, Report as TwReport, Settings, Timewait},
    },
    cli::{AnalyzeArgs, Report},
    clock::{Clock, nanos},
    cmd::record,
    host,
    input::{LineError, Reader},
    output::{ListenersView, Palette, Render, StuckView, TimewaitView, lifecycles, summary_line},
    plot::{self, Bar, Series},
    summary::Summary,
    track::Record,
    writer::write_out,
};

/// Bad lines named one by one; beyond this, only counted.
const SHOWN_ERRORS: u64 = 10;

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let (name, input) = open(&args.file)?;
    let mut reader = Reader::new(input);
    let mut charts = args
        .plot
        .as_ref()
        .map(|_| Charts::new(args.report, args.timewait.short.short));
    let mut analysis = Analysis::new(args);
    let mut out = String::new();
    let mut stdout = io::stdout().lock();
    let mut read = Read::default();
    while let Some(next) = reader.next() {
        if let Some(record) = read.take(next, &name) {
            analysis.observe(&record, &mut out);
            if let Some(charts) = charts.as_mut() {
                charts.observe(&record);
            }
        }
        // What to say about bad lines is held until the input proves to
        // be a recording: of a file that is none, one line says so.
        if read.records > 0 || reader.header().is_some() {
            for said in read.held.drain(..) {
                say!("{said}");
            }
        }
        if out.len() >= 1 << 20 && !write_out(&mut stdout, &mut out)? {
            return Ok(()); // stdout closed (`| head`)
        }
    }
    if let (Some(unread), 0) = (&read.unread, read.records) {
        anyhow::bail!("{unread}");
    }
    if read.records == 0 && reader.header().is_none() {
        let reports = match reader.skipped() {
            0 => String::new(),
            n => format!(
                ", only {n} report line(s) (analyze reads what `record` and `--json` \
                 write)"
            ),
        };
        anyhow::bail!("{name}: no socktrace records{reports}");
    }
    analysis.finish(read.last_ns, &mut out);
    write_out(&mut stdout, &mut out)?;
    if let (Some(charts), Some(path)) = (charts, &args.plot) {
        plot(&charts, &analysis, path)?;
    }
    if read.bad > 0 {
        say!("socktrace: {name}: {} bad lines skipped", read.bad);
    }
    match read.unread {
        Some(unread) => anyhow::bail!("{unread}; the report covers the lines before it"),
        None => Ok(()),
    }
}

/// `file` (`-`: stdin) by its name, buffered.
fn open(file: &Path) -> anyhow::Result<(String, Box<dyn BufRead>)> {
    let name = file.display().to_string();
    let input: Box<dyn BufRead> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(file).with_context(|| format!("cannot open {name}"))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    Ok((name, input))
}

/// What reading the input has found so far.
#[derive(Default)]
struct Read {
    records: u64,
    bad: u64,
    /// The latest record's time.
    last_ns: u64,
    /// Lines about bad lines, not said yet.
    held: Vec<String>,
    /// Why the stream ended early (a read error).
    unread: Option<String>,
}

impl Read {
    /// The record `next` holds, if it holds one; a bad line or the end of
    /// the stream is noted.
    fn take(&mut self, next: Result<Record, (u64, LineError)>, name: &str) -> Option<Record> {
        match next {
            Ok(record) => {
                self.records += 1;
                self.last_ns = record.at().max(self.last_ns);
                return Some(record);
            }
            Err((line, LineError::Io(err))) => {
                // The stream ends here: fails, after the report of what
                // was read.
                self.unread = Some(format!("{name}:{line}: read error: {err}"));
            }
            Err((line, err)) => {
                self.bad += 1;
                if self.bad <= SHOWN_ERRORS {
                    self.held
                        .push(format!("socktrace: {name}:{line}: {err}; skipped"));
                }
            }
        }
        None
    }
}

/// The chart of `charts` (with `timewait`'s reports) as SVG in `path`.
fn plot(charts: &Charts, analysis: &Analysis, path: &Path) -> anyhow::Result<()> {
    let reports = match analysis {
        Analysis::Timewait(run) => run.reports.as_slice(),
        _ => &[],
    };
    let svg = charts
        .render(reports)
        .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
    let mut file =
        record::create(path, true).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// What `--plot` draws, gathered as the records go by.
struct Charts {
    report: Report,
    start_ns: Option<u64>,
    durations: Vec<u64>,
    listeners: Listeners,
    bars: Vec<Bar>,
}

/// The most durations kept for the histogram.
const MAX_DURATIONS: usize = 1 << 22;
/// Destinations drawn besides the total.
const PLOTTED_DESTINATIONS: usize = 5;

impl Charts {
    /// `report` is neither `Summary` nor `Stuck` (the command line checks).
    fn new(report: Report, short: std::time::Duration) -> Charts {
        Charts {
            report,
            start_ns: None,
            durations: Vec::new(),
            listeners: Listeners::new(nanos(short)),
            bars: Vec::new(),
        }
    }

    fn secs(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns.unwrap_or(ns)) as f64 / 1e9
    }

    fn observe(&mut self, record: &Record) {
        self.start_ns.get_or_insert(record.at());
        match self.report {
            Report::Lifecycles => {
                if let Record::Close(c) = record
                    && self.durations.len() < MAX_DURATIONS
                {
                    self.durations.push(c.duration_ns);
                }
            }
            Report::Listeners => {
                let Some(note) = self.listeners.observe(record) else {
                    return;
                };
                if let What::Closed {
                    lifetime_ns: Some(lifetime),
                    short,
                } = note.what
                {
                    self.bars.push(Bar {
                        // A label for people: the name escaped.
                        row: format!("{} {} {}", note.proto, note.addr.port(), note.owner.comm),
                        start_s: self.secs(note.at_ns.saturating_sub(lifetime)),
                        end_s: self.secs(note.at_ns),
                        short,
                    });
                }
            }
            Report::Timewait | Report::Stuck | Report::Summary => {}
        }
    }

    fn render(&self, reports: &[(u64, TwReport)]) -> Result<String, String> {
        match self.report {
            Report::Lifecycles => plot::durations(&self.durations),
            Report::Listeners => plot::listeners(&self.bars),
            _ => {
                // The destinations that held the most at any time.
                let mut peak: FxHashMap<Dest, u64> = FxHashMap::default();
                for (_, r) in reports {
                    for d in &r.by_destination {
                        let p = peak.entry(d.dest).or_default();
                        *p = (*p).max(d.time_wait);
                    }
                }
                let mut top: Vec<(Dest, u64)> = peak.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(PLOTTED_DESTINATIONS);
                let mut lines = vec![Series {
                    name: "all".into(),
                    points: reports
                        .iter()
                        .map(|(t, r)| (self.secs(*t), r.population as f64))
                        .collect(),
                }];
                for (dest, _) in &top {
                    let points = reports
                        .iter()
                        .map(|(t, r)| {
                            let held = r.by_destination.iter().find(|d| d.dest == *dest);
                            (self.secs(*t), held.map_or(0.0, |d| d.time_wait as f64))
                        })
                        .collect();
                    lines.push(Series {
                        name: format!("to {}", dest.remote),
                        points,
                    });
                }
                let rate = Series {
                    name: "entries/s".into(),
                    points: reports
                        .iter()
                        .map(|(t, r)| (self.secs(*t), r.rate()))
                        .collect(),
                };
                plot::timewait(&lines, &rate)
            }
        }
    }
}

/// `--report timewait`: the recording's own clock drives the intervals.
struct TimewaitRun {
    feed: Feed,
    analysis: Option<Timewait>,
    view: TimewaitView,
    interval_ns: u64,
    settings: Settings,
    next_ns: u64,
    /// Every interval's report, kept for `--plot`.
    reports: Vec<(u64, TwReport)>,
    keep: bool,
}

/// The chosen report and its state.
enum Analysis {
    Listeners(ListenersView),
    Stuck(StuckView),
    Timewait(Box<TimewaitRun>),
    Lifecycles(Lifecycles, bool),
    Summary(Box<Summary>, bool),
}

impl Analysis {
    fn new(args: &AnalyzeArgs) -> Analysis {
        // Offline times are already wall-clock: no offset.
        let clock = Clock::with_offset(0);
        let palette = Palette::for_stdout(args.color, args.json);
        let short_ns = nanos(args.timewait.short.short);
        match args.report {
            Report::Listeners => Analysis::Listeners(ListenersView::new(
                clock,
                Listeners::new(short_ns),
                args.json,
                palette,
            )),
            Report::Stuck => Analysis::Stuck(StuckView::new(
                clock,
                Stuck::new(nanos(args.stuck.stuck)),
                args.json,
            )),
            Report::Timewait => Analysis::Timewait(Box::new(TimewaitRun {
                feed: Feed::new(short_ns),
                analysis: None,
                view: TimewaitView::new(clock, args.json, palette),
                interval_ns: nanos(args.timewait.interval),
                settings: Settings {
                    top: args.timewait.top as usize,
                    threshold_pct: args.timewait.threshold,
                    per_request_rate: crate::cmd::timewait::PER_REQUEST_RATE,
                },
                next_ns: 0,
                reports: Vec::new(),
                keep: args.plot.is_some(),
            })),
            Report::Lifecycles => Analysis::Lifecycles(Lifecycles::default(), args.json),
            Report::Summary => Analysis::Summary(Box::default(), args.json),
        }
    }

    fn observe(&mut self, record: &Record, out: &mut String) {
        match self {
            Analysis::Listeners(view) => view.record(record, out),
            Analysis::Stuck(view) => view.record(record, out),
            Analysis::Timewait(run) => {
                let TimewaitRun {
                    feed,
                    analysis,
                    view,
                    interval_ns,
                    settings,
                    next_ns,
                    reports,
                    keep,
                } = &mut **run;
                let now = record.at();
                // The recording's clock drives the intervals.
                let tw = analysis.get_or_insert_with(|| {
                    *next_ns = now + *interval_ns;
                    Timewait::new(*settings, host::settings(), now, Vec::new())
                });
                while now >= *next_ns {
                    let report = tw.tick(*next_ns, &feed.counted(), feed.in_use(), None);
                    if report.entries > 0 || !report.per_request.is_empty() {
                        view.report(&report, out);
                    }
                    if *keep {
                        reports.push((*next_ns, report));
                    }
                    *next_ns += *interval_ns;
                }
                feed.observe(record);
            }
            Analysis::Lifecycles(l, _) => l.observe(record),
            Analysis::Summary(s, _) => s.count(record),
        }
    }

    fn finish(&mut self, last_ns: u64, out: &mut String) {
        // Offline times are already wall-clock.
        let time = || crate::clock::rfc3339(Clock::with_offset(0), last_ns);
        match self {
            Analysis::Listeners(view) => view.finish(last_ns, out),
            Analysis::Stuck(view) => view.finish(last_ns, out),
            Analysis::Timewait(run) => {
                if let Some(tw) = run.analysis.as_mut() {
                    let report = tw.tick(last_ns, &run.feed.counted(), run.feed.in_use(), None);
                    run.view.report(&report, out);
                }
            }
            Analysis::Lifecycles(l, json) => lifecycles(l, *json, &time(), out),
            Analysis::Summary(s, true) => summary_line(s, &time(), out),
            Analysis::Summary(s, false) => {
                out.push_str(&s.to_string());
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    /// The charts of the recording in fixtures/ (see fixtures/README.md).
    fn charts(report: Report) -> Charts {
        let recording = include_str!("../../fixtures/listeners-and-churn.jsonl");
        let mut charts = Charts::new(report, std::time::Duration::from_secs(1));
        for record in Reader::new(BufReader::new(recording.as_bytes())) {
            charts.observe(&record.expect("a valid line"));
        }
        charts
    }

    #[test]
    fn listener_timeline_of_a_recording() {
        let c = charts(Report::Listeners);
        // 5 restarts on 47001, 2 churn servers, the 47004 listener, UDP 47002.
        assert_eq!(c.bars.len(), 9);
        assert!(c.bars.iter().all(|b| b.short && b.end_s > b.start_s));
        let svg = c.render(&[]).unwrap();
        roxmltree::Document::parse(&svg).expect("well-formed SVG");
        for row in ["tcp 47001 sockops", "tcp 47003 churn", "udp 47002 python3"] {
            assert!(svg.contains(row), "{row}");
        }
        assert_eq!(svg.matches("fill=\"#FF0000\"").count(), 9);
    }

    #[test]
    fn duration_histogram_of_a_recording() {
        let c = charts(Report::Lifecycles);
        assert_eq!(c.durations.len(), 32);
        let svg = c.render(&[]).unwrap();
        assert!(svg.contains("Connection durations (32 connections)"));
    }
}
