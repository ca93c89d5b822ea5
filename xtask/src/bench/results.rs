//! The churn bench's results: the Markdown table of medians, in its
//! section of bench/RESULTS.md and of the README's performance section.
use std::{fmt::Write as _, path::Path};

use anyhow::Result;

use super::{
    Mode, ROUNDS, Run, SECONDS, Stream, THREADS, Tracer,
    sections::{self, Section, machine},
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The results as a Markdown table: medians over the rounds; each ratio is
/// against the no-tracer run of the same round.
pub(super) fn table(modes: &[Mode], runs: &[Vec<Run>], per_conn: f64) -> String {
    let mut t = String::from(
        "| mode | conn/s | vs no tracer | delivered / happened | lost, reported (recursion) | \
         tracer CPU | CPU per event | peak RSS | launch to attached |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let baseline = &runs[0];
    for (mode, runs) in modes.iter().zip(runs) {
        let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let rate = m(&|r| r.rate);
        let ratio = median(
            runs.iter()
                .zip(baseline)
                .map(|(r, b)| r.rate / b.rate)
                .collect(),
        );
        let _ = write!(t, "| {} | {rate:.0} | {ratio:.2} |", mode.name);
        if matches!(mode.tracer, Tracer::None) {
            t.push_str(" | | | | | |\n");
            continue;
        }
        let happened = |r: &Run| r.connections as f64 * per_conn;
        let delivered = match mode.streams {
            Stream::None => "(filtered out)".to_string(),
            Stream::Aggregate => "(aggregates)".to_string(),
            Stream::Discarded => "(discarded)".to_string(),
            _ => format!("{:.2} %", m(&|r| 100.0 * r.delivered as f64 / happened(r))),
        };
        let events = |r: &Run| {
            if mode.streams.lists_transitions() {
                r.delivered as f64
            } else {
                happened(r)
            }
        };
        let _ = writeln!(
            t,
            " {delivered} | {:.0} ({:.0}) | {:.2} s | {:.2} µs | {:.1} MB | {:.3} s |",
            m(&|r| r.reported_lost as f64),
            m(&|r| r.recursion_misses as f64),
            m(&|r| r.cpu_s),
            m(&|r| 1e6 * r.cpu_s / events(r).max(1.0)),
            m(&|r| r.peak_rss_kb as f64 / 1024.0),
            m(&|r| r.attach_s),
        );
    }
    t
}

/// Writes the table into the churn section of bench/RESULTS.md and the
/// README.
pub(super) fn publish(root: &Path, table: &str) -> Result<()> {
    let machine = machine();
    let results = format!(
        "## Connection churn\n\n\
         Written by `cargo xtask bench`. {machine}.\n\n\
         Load: `churn` (tests/src/bin/churn.rs), {THREADS} client threads and {THREADS} server \
         threads on loopback, clients close first, destinations spread over 64 addresses of \
         127.0.0.0/8, {SECONDS} s a run. Modes interleaved, {ROUNDS} rounds, medians; ratios \
         against the no-tracer run of the same round. \"happened\" is connections x \
         transitions per connection, calibrated on a slow traced run. Tracer output goes to a \
         file (the /dev/null row excepted); CPU and peak RSS of the tracer come from \
         wait4(2).\n\n{table}"
    );
    let readme = format!("From `cargo xtask bench` on {machine}:\n\n{table}");
    sections::publish(
        root,
        &Section {
            name: "bench",
            results: &results,
            readme: &readme,
        },
    )
}
