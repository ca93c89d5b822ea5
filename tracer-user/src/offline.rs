//! `socktrace analyze FILE --report ...`: the live analyses, run over a
//! recording. Bad lines are reported with their number and skipped; the
//! analysis goes on with the rest.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
};

use anyhow::Context as _;

use crate::{
    analysis::{
        lifecycles::Lifecycles,
        listeners::Listeners,
        timewait::{Feed, Settings, Timewait},
    },
    cli::{AnalyzeArgs, Report},
    clock::Clock,
    host,
    input::Reader,
    output::{ListenersView, Palette, Render, TimewaitView, lifecycles, summary_line},
    summary::Summary,
    track::Record,
};

/// Bad lines named one by one; beyond this, only counted.
const SHOWN_ERRORS: u64 = 10;

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let input: Box<dyn BufRead> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.file).with_context(|| format!("cannot open {name}"))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let reader = Reader::new(input);
    let mut analysis = Analysis::new(args);
    let mut out = String::new();
    let mut stdout = io::stdout().lock();
    let mut bad = 0u64;
    let mut last_ns = 0;
    for next in reader {
        match next {
            Ok(record) => {
                last_ns = at(&record).max(last_ns);
                analysis.observe(&record, &mut out);
            }
            Err((line, err)) => {
                bad += 1;
                if bad <= SHOWN_ERRORS {
                    say!("socktrace: {name}:{line}: {err}; skipped");
                }
            }
        }
        if out.len() >= 1 << 20 && write(&mut stdout, &mut out).is_err() {
            return Ok(()); // stdout closed (`| head`)
        }
    }
    analysis.finish(last_ns, &mut out);
    let _ = write(&mut stdout, &mut out);
    if bad > 0 {
        say!("socktrace: {name}: {bad} bad lines skipped");
    }
    Ok(())
}

fn write(stdout: &mut impl Write, out: &mut String) -> io::Result<()> {
    let result = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    out.clear();
    result
}

/// When a record happened (wall-clock ns offline).
fn at(record: &Record) -> u64 {
    match record {
        Record::Existing(_, at) | Record::Loss(_, at) => *at,
        Record::Event(e) => e.mono_ns,
        Record::Close(c) => c.mono_ns,
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
}

/// The chosen report and its state.
enum Analysis {
    Listeners(ListenersView),
    Timewait(Box<TimewaitRun>),
    Lifecycles(Lifecycles, bool),
    Summary(Box<Summary>, bool),
}

impl Analysis {
    fn new(args: &AnalyzeArgs) -> Analysis {
        // Offline times are already wall-clock: no offset.
        let clock = Clock::with_offset(0);
        let palette = Palette::for_stdout(args.color, args.json);
        let short_ns = args.timewait.short.short.as_nanos() as u64;
        match args.report {
            Report::Listeners => Analysis::Listeners(ListenersView::new(
                clock,
                Listeners::new(short_ns),
                args.json,
                palette,
            )),
            Report::Timewait => Analysis::Timewait(Box::new(TimewaitRun {
                feed: Feed::new(short_ns),
                analysis: None,
                view: TimewaitView::new(clock, args.json, palette),
                interval_ns: args.timewait.interval.as_nanos() as u64,
                settings: Settings {
                    top: args.timewait.top as usize,
                    threshold_pct: args.timewait.threshold,
                    per_request_rate: crate::tallies::PER_REQUEST_RATE,
                },
                next_ns: 0,
            })),
            Report::Lifecycles => Analysis::Lifecycles(Lifecycles::default(), args.json),
            Report::Summary => Analysis::Summary(Box::default(), args.json),
        }
    }

    fn observe(&mut self, record: &Record, out: &mut String) {
        match self {
            Analysis::Listeners(view) => view.record(record, out),
            Analysis::Timewait(run) => {
                let TimewaitRun {
                    feed,
                    analysis,
                    view,
                    interval_ns,
                    settings,
                    next_ns,
                } = &mut **run;
                let now = at(record);
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
                    *next_ns += *interval_ns;
                }
                feed.observe(record);
            }
            Analysis::Lifecycles(l, _) => l.observe(record),
            Analysis::Summary(s, _) => s.count(record),
        }
    }

    fn finish(&mut self, last_ns: u64, out: &mut String) {
        match self {
            Analysis::Listeners(view) => view.finish(last_ns, out),
            Analysis::Timewait(run) => {
                if let Some(tw) = run.analysis.as_mut() {
                    let report = tw.tick(last_ns, &run.feed.counted(), run.feed.in_use(), None);
                    run.view.report(&report, out);
                }
            }
            Analysis::Lifecycles(l, json) => lifecycles(l, *json, out),
            Analysis::Summary(s, true) => summary_line(s, out),
            Analysis::Summary(s, false) => {
                out.push_str(&s.to_string());
                out.push('\n');
            }
        }
    }
}
