//! `cargo xtask bench --scale`: what an idle socktrace costs as the host's
//! socket count grows. At each point `hold` processes (bench/hold.rs) keep
//! that many loopback TCP sockets open, plus a fifth as many in TIME_WAIT
//! made right before each tracer run; each mode then starts, sits idle and
//! stops (scale/measure.rs). The table goes to the scale sections of
//! bench/RESULTS.md and the README (scale/table.rs).
use std::{
    fmt, fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::hold::{Holders, Kind};

mod measure;
mod table;

/// The host's idle sockets at one point: what the holders add to it.
#[derive(Clone, Copy, PartialEq)]
struct Point {
    /// Sockets of established connections (two per connection).
    open: u64,
    /// Connections in TIME_WAIT (one socket each).
    time_wait: u64,
}

/// `open` sockets, and a fifth as many TIME_WAITs.
const fn grown(open: u64) -> Point {
    Point {
        open,
        time_wait: open / 5,
    }
}

/// Nothing held: what the others are measured against.
const EMPTY: Point = grown(0);
/// The largest point, where the targets apply.
const LARGEST: Point = grown(500_000);
/// TIME_WAITs alone: what each one costs the tracer.
const TW_ONLY: Point = Point {
    open: 0,
    time_wait: 100_000,
};
const POINTS: [Point; 5] = [EMPTY, grown(50_000), grown(200_000), LARGEST, TW_ONLY];

/// The tracer modes measured: the stream, and the TIME_WAIT analysis.
const MODES: [&[&str]; 2] = [&["--json"], &["timewait", "--json"]];

/// The kernel's cap on TIME_WAIT sockets, raised for the run.
const TW_BUCKETS_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_max_tw_buckets";
/// Room for the largest batch of TIME_WAITs twice over, so whatever the
/// rest of the host closes meanwhile does not cut ours short.
const TW_BUCKETS: u64 = 400_000;
const _: () = assert!(TW_BUCKETS >= 2 * TW_ONLY.time_wait && TW_BUCKETS >= 2 * LARGEST.time_wait);
/// How long after a batch is made its TIME_WAITs are surely gone: 60 s
/// (TCP_TIMEWAIT_LEN) plus the timer wheel's slack at that range (4 s).
const TW_GONE_AFTER: Duration = Duration::from_secs(65);

/// "500k + 100k": open sockets + TIME_WAITs.
impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let count = |n: u64| match n {
            0 => "0".to_string(),
            n if n.is_multiple_of(1000) => format!("{}k", n / 1000),
            n => n.to_string(),
        };
        f.pad(&format!("{} + {}", count(self.open), count(self.time_wait)))
    }
}

/// Every point, each mode at each; then the results.
pub(super) fn run(root: &Path) -> Result<()> {
    let bin = root.join("target/release");
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir)?;
    let buckets = Raised::at_least(TW_BUCKETS_SYSCTL, TW_BUCKETS)?;
    let mut samples = Vec::new();
    // When the TIME_WAITs made last are gone: a run must not count them.
    let mut tw_gone = Instant::now();
    for point in POINTS {
        println!("xtask: bench: {point}: opening {} sockets", point.open);
        let _open = Holders::spawn(&bin, Kind::Pairs, point.open / 2)?;
        for args in MODES {
            let mode = format!("socktrace {}", args.join(" "));
            let wait = tw_gone.checked_duration_since(Instant::now());
            if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                println!(
                    "xtask: bench: waiting {:.0} s for the last TIME_WAITs to expire",
                    wait.as_secs_f64()
                );
                thread::sleep(wait);
            }
            let _time_waits = Holders::spawn(&bin, Kind::TimeWait, point.time_wait)?;
            if point.time_wait > 0 {
                tw_gone = Instant::now() + TW_GONE_AFTER;
            }
            let tcp = check_held(point)?;
            let name = args[0].trim_start_matches('-');
            let out = dir.join(format!(
                "scale-{}-{}-{name}.out",
                point.open, point.time_wait
            ));
            let idle =
                measure::idle(&bin, &out, args).with_context(|| format!("{point}, {mode}"))?;
            println!("xtask: bench: {point:<12} {mode:<26} {idle} (sockstat {tcp})");
            samples.push(table::Sample { point, mode, idle });
        }
    }
    drop(buckets);
    table::publish(root, &samples)
}

/// Checks that the kernel kept the TIME_WAITs made for `point` (a holder
/// cannot tell: past net.ipv4.tcp_max_tw_buckets a closed socket skips
/// TIME_WAIT); returns sockstat's TCP line. A few may be gone already:
/// on loopback connect() reuses a TIME_WAIT of the same ports
/// (net.ipv4.tcp_tw_reuse = 2), and the holders' ports come round again.
fn check_held(point: Point) -> Result<String> {
    let sockstat = fs::read_to_string("/proc/net/sockstat")?;
    let tw = tracer_common::sockstat_time_waits(&sockstat).context("sockstat's tw")?;
    if tw < point.time_wait - point.time_wait / 20 {
        bail!(
            "sockstat counts {tw} TIME_WAITs, fewer than the {} made (net.ipv4.tcp_max_tw_buckets?)",
            point.time_wait
        );
    }
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"));
    Ok(tcp.unwrap_or_default().to_string())
}

/// A sysctl raised for the run: the old value goes back when this drops,
/// also on error.
struct Raised {
    path: &'static str,
    old: String,
}

impl Raised {
    /// Raises the sysctl at `path` to `value` unless it is already as high.
    fn at_least(path: &'static str, value: u64) -> Result<Raised> {
        let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let old = old.trim().to_string();
        let current: u64 = old.parse().with_context(|| format!("{path}: {old}"))?;
        if current < value {
            fs::write(path, value.to_string())
                .with_context(|| format!("raising {path} (needs root)"))?;
            println!("xtask: bench: {path}: {old} -> {value} for the run");
        }
        Ok(Raised { path, old })
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if let Err(e) = fs::write(self.path, &self.old) {
            eprintln!("xtask: bench: restoring {} to {}: {e}", self.path, self.old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_points_in_thousands() {
        assert_eq!(LARGEST.to_string(), "500k + 100k");
        assert_eq!(EMPTY.to_string(), "0 + 0");
        assert_eq!(grown(1_500).to_string(), "1500 + 300");
        assert_eq!(format!("{TW_ONLY:<9}|"), "0 + 100k |");
    }
}
