//! The scale bench's results: a row per point and mode, and the memory per
//! followed socket derived from them, in the scale sections of
//! bench/RESULTS.md and the README.
use std::{fmt::Write as _, path::Path};

use anyhow::Result;

use super::{
    EMPTY, LARGEST, Point, TW_ONLY,
    measure::{IDLE, Idle},
};
use crate::bench::{
    hold::Kind,
    sections::{self, Section, machine},
};

/// One run: a mode at a point.
pub(super) struct Sample {
    pub point: Point,
    /// "socktrace --json", ...
    pub mode: String,
    pub idle: Idle,
}

/// Writes the table and the derived figures into the scale sections.
pub(super) fn publish(root: &Path, samples: &[Sample]) -> Result<()> {
    let results_of = format!("{}\n{}", table(samples), derived(samples));
    println!("{results_of}");
    let machine = machine();
    let results = format!(
        "## Idle cost as the host's socket count grows\n\n\
         Written by `cargo xtask bench --scale`. {machine}.\n\n{}\n\n{results_of}",
        method()
    );
    let readme = format!("From `cargo xtask bench --scale` on {machine}:\n\n{results_of}");
    sections::publish(
        root,
        &Section {
            name: "bench-scale",
            results: &results,
            readme: &readme,
        },
    )
}

/// How the numbers were made, and what they should be.
fn method() -> String {
    format!(
        "Load: `hold` processes (tests/src/bin/hold.rs) keep N TCP sockets open and idle on \
         loopback (N/2 established pairs, at most {} pairs a process, to 16 addresses of \
         127.0.0.0/8), plus N/5 connections closed client first that sit in TIME_WAIT, made \
         right before each tracer run once the previous run's have expired \
         (net.ipv4.tcp_max_tw_buckets is raised for the bench). The last row holds \
         TIME_WAITs only. Each run starts socktrace with its output to a file; once it says \
         it is attached and then that it learnt the sockets that predate it (\"snapshot \
         in\", from spawn), it sits idle for {} s. Idle CPU: its utime + stime \
         (/proc/PID/stat) over that time, in % of one core. Peak RSS: wait4(2). Poll time \
         and period: from its exit line \"sock_diag polled N times, X ms each on average, \
         every P s\" (n/a: this build does not print one). Targets: at {} sockets, idle CPU \
         ≤ 1 % of one core and launch to attached ≤ 0.2 s; ≤ 64 bytes per followed \
         TIME_WAIT.",
        Kind::Pairs.per_holder(),
        IDLE.as_secs(),
        LARGEST.open,
    )
}

/// The results as a Markdown table, in the order they ran.
fn table(samples: &[Sample]) -> String {
    let mut t = String::from(
        "| sockets (open + TIME_WAIT) | mode | idle CPU (% of a core) | poll time | \
         poll period | peak RSS | launch to attached | snapshot in |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in samples {
        let idle = &s.idle;
        let (each, every) = match &idle.poll {
            Some(p) => (
                format!("{:.2} ms", p.each_ms),
                format!("{:.2} s", p.every_s),
            ),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.2} % | {each} | {every} | {:.1} MB | {:.3} s | {:.3} s |",
            s.point,
            s.mode,
            idle.cpu_pct,
            idle.peak_rss_kb as f64 / 1024.0,
            idle.attach_s,
            idle.learnt_s
        );
    }
    t
}

/// Each mode's bytes per followed socket, and how they were derived.
fn derived(samples: &[Sample]) -> String {
    let mut text = format!(
        "Derived from peak RSS, per mode: bytes per followed TIME_WAIT = (RSS at {TW_ONLY} \
         − RSS at {EMPTY}) / {}; bytes per followed open socket = (RSS at {LARGEST} − RSS at \
         {EMPTY} − {} × bytes per TIME_WAIT) / the open sockets followed ({}, less those the \
         tracer's summary says it dropped from tracking: `--track-limit`). Peak RSS holds \
         the start's own peak, so growth that stays under it does not show (a figure near 0 \
         or below).\n\n",
        TW_ONLY.time_wait, LARGEST.time_wait, LARGEST.open
    );
    for empty in samples.iter().filter(|s| s.point == EMPTY) {
        let at = |point: Point| {
            samples
                .iter()
                .find(|s| s.mode == empty.mode && s.point == point)
        };
        let (Some(tw_only), Some(largest)) = (at(TW_ONLY), at(LARGEST)) else {
            continue;
        };
        let followed = LARGEST.open.saturating_sub(largest.idle.untracked);
        let bytes = per_socket(
            empty.idle.peak_rss_kb,
            tw_only.idle.peak_rss_kb,
            (largest.idle.peak_rss_kb, followed),
        );
        let _ = writeln!(
            text,
            "- {}: {:.0} bytes per followed TIME_WAIT, {:.0} bytes per followed open socket \
             ({followed} followed)",
            empty.mode, bytes.time_wait, bytes.open
        );
    }
    text
}

/// Tracer memory per followed socket, in bytes.
#[derive(Debug, PartialEq)]
struct PerSocket {
    time_wait: f64,
    open: f64,
}

/// From peak RSS (KiB) at [`EMPTY`], [`TW_ONLY`] and [`LARGEST`] (with
/// how many of its open sockets were followed): a TIME_WAIT's share is the
/// TIME_WAIT-only point's growth over its count; an open socket's, the
/// largest point's growth less its TIME_WAITs' share, over those followed.
fn per_socket(empty_kb: u64, tw_only_kb: u64, (largest_kb, followed): (u64, u64)) -> PerSocket {
    let growth = |kb: u64| (kb as f64 - empty_kb as f64) * 1024.0;
    let time_wait = growth(tw_only_kb) / TW_ONLY.time_wait as f64;
    let open = (growth(largest_kb) - time_wait * LARGEST.time_wait as f64) / followed.max(1) as f64;
    PerSocket { time_wait, open }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_socket() {
        // 100k TIME_WAITs add 6400 KiB: 65.536 bytes each; the largest
        // point adds those plus 500k open sockets at 100 bytes each.
        let empty = 30_000;
        let tw_only = empty + 6_400;
        let largest = empty + 6_400 + 500_000 * 100 / 1024;
        let bytes = per_socket(empty, tw_only, (largest, LARGEST.open));
        assert!((bytes.time_wait - 65.536).abs() < 1e-9);
        assert!((bytes.open - 100.0).abs() < 0.01, "{}", bytes.open);
        // Half of them followed: each cost twice as much.
        let bytes = per_socket(empty, tw_only, (largest, LARGEST.open / 2));
        assert!((bytes.open - 200.0).abs() < 0.01, "{}", bytes.open);
    }

    fn sample(point: Point, mode: &str, peak_rss_kb: u64, untracked: u64) -> Sample {
        Sample {
            point,
            mode: mode.to_string(),
            idle: Idle {
                cpu_pct: 0.5,
                peak_rss_kb,
                attach_s: 0.1,
                learnt_s: 0.2,
                poll: None,
                untracked,
            },
        }
    }

    #[test]
    fn derives_each_mode_once_from_its_own_runs() {
        // In the order the bench runs them: modes alternate at each point.
        let samples = [
            sample(EMPTY, "watch", 30_000, 0),
            sample(EMPTY, "timewait", 20_000, 0),
            sample(LARGEST, "watch", 30_000 + 6_400 + 25_600, 250_000),
            sample(LARGEST, "timewait", 20_000, 0),
            sample(TW_ONLY, "watch", 30_000 + 6_400, 0),
            sample(TW_ONLY, "timewait", 20_000, 0),
        ];
        let text = derived(&samples);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
        assert_eq!(
            lines,
            [
                "- watch: 66 bytes per followed TIME_WAIT, 105 bytes per followed open socket \
                 (250000 followed)",
                "- timewait: 0 bytes per followed TIME_WAIT, 0 bytes per followed open socket \
                 (500000 followed)",
            ]
        );
    }

    #[test]
    fn shrinking_memory_is_negative_not_wrapped() {
        let bytes = per_socket(30_000, 29_000, (29_000, LARGEST.open));
        assert!((bytes.time_wait + 10.24).abs() < 1e-9);
        assert!(bytes.open.abs() < 1e-9);
    }
}
