//! `cargo xtask soak`: maximum connection churn and a listener restarting
//! in a loop, for minutes, under three socktrace instances at once (the
//! full `--json` stream to a file, `timewait --json`, `listeners --json`).
//! It fails unless every instance's memory stays flat after the warm-up,
//! every transition of the load was delivered or reported lost, and every
//! listener cycle was caught. `cargo xtask test` runs a short one.
use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::bench::{self, Tracer};

/// Memory may grow this much after the warm-up (allocator slack).
const RSS_SLACK: f64 = 1.10;
const RSS_SLACK_KB: u64 = 8 << 10;
/// The warm-up: a TIME_WAIT lives 60 s, so the TIME_WAIT population (and
/// what watch mode keeps per TIME_WAIT socket) grows for a minute.
const WARMUP: Duration = Duration::from_secs(60);
/// Runs too short to see a warm-up end are held to a ceiling instead.
const RSS_CEILING_KB: u64 = 200 << 10;
/// Delivered + reported lost may fall short of what happened by at most
/// this share (nothing goes missing unreported) ...
const ACCOUNTING: f64 = 0.005;
/// ... and exceed it by at most this one: the whole host is traced, and
/// under this load some connects fail and retry (more transitions than
/// the calibrated run's).
const EXTRA: f64 = 0.02;

/// The instances under test: (name, arguments, output file name; the
/// first one's output is counted, not kept).
const INSTANCES: [(&str, &[&str], &str); 3] = [
    ("watch --json", &["--json"], "watch.json"),
    ("timewait --json", &["timewait", "--json"], "timewait.json"),
    (
        "listeners --json",
        &["listeners", "--json"],
        "listeners.json",
    ),
];

pub fn run(bin: &Path, dir: &Path, seconds: u64) -> Result<()> {
    fs::create_dir_all(dir)?;
    println!("xtask: soak: calibrating transitions per connection");
    let per_conn = bench::calibrate(bin, dir)?;
    let flat = seconds >= WARMUP.as_secs() + 30;
    println!(
        "xtask: soak: {seconds} s of churn and listener cycling under {} instances; {}",
        INSTANCES.len(),
        if flat {
            format!("memory must stay flat after {} s", WARMUP.as_secs())
        } else {
            format!("memory must stay under {} MB", RSS_CEILING_KB >> 10)
        }
    );
    let soaked = soak(bin, dir, seconds)?;
    let mut failures = memory(&soaked.rss, flat, dir);
    let lost = transitions(&soaked, per_conn, dir, &mut failures)?;
    listener_closes(&soaked, lost, dir, &mut failures)?;
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    println!("xtask: soak: passed");
    Ok(())
}

/// What a soak run did.
struct Soaked {
    connections: u64,
    /// The listener cycler's port, and how many cycles it made.
    cycle_port: u16,
    cycles: u64,
    /// Per instance (as `INSTANCES`), (seconds in, RSS in KiB) each second.
    rss: Vec<Vec<(f64, u64)>>,
}

/// `seconds` of churn and listener cycling under every instance, their
/// RSS sampled each second (series in `dir/rss.tsv`); the tracers stopped.
fn soak(bin: &Path, dir: &Path, seconds: u64) -> Result<Soaked> {
    // The listener's port, chosen before the tracers start (choosing it
    // opens and closes a listener).
    let cycle_port = free_port()?;
    let mut tracers = vec![stream_to_null(bin, dir)?];
    for (_, args, file) in &INSTANCES[1..] {
        let (child, _) = bench::start_tracer(bin, Tracer::Socktrace(args), &dir.join(file), None)?;
        tracers.push(child);
    }
    let pids: Vec<u32> = tracers.iter().map(Child::id).collect();
    let started = Instant::now();
    let mut load = bench::churn(bin, &["--threads", "4", "--seconds", &seconds.to_string()])
        .spawn()
        .context("starting churn")?;
    let (cycling, cycles) = cycle_listener(bin, cycle_port, seconds);
    let mut rss: Vec<Vec<(f64, u64)>> = vec![Vec::new(); pids.len()];
    while load.try_wait()?.is_none() {
        let at = started.elapsed().as_secs_f64();
        for (i, pid) in pids.iter().enumerate() {
            rss[i].push((at, rss_kb(*pid)?));
        }
        thread::sleep(Duration::from_secs(1));
    }
    write_series(&dir.join("rss.tsv"), &rss)?;
    let out = load.wait_with_output()?;
    let (connections, secs, _) = bench::run_churn_output(&out)?;
    let cycled = cycling
        .join()
        .map_err(|_| anyhow::anyhow!("the listener cycler panicked"))?;
    cycled?;
    let cycles = cycles.load(Ordering::Relaxed);
    thread::sleep(Duration::from_secs(2)); // last transitions, delayed ACKs
    for child in tracers {
        bench::stop_tracer(child)?;
    }
    thread::sleep(Duration::from_millis(200)); // the stderr copiers
    println!(
        "xtask: soak: {connections} connections ({:.0}/s), {cycles} listener cycles",
        connections as f64 / secs
    );
    Ok(Soaked {
        connections,
        cycle_port,
        cycles,
        rss,
    })
}

/// Memory: flat after the warm-up (`flat`), or under the ceiling. Returns
/// the failures.
fn memory(rss: &[Vec<(f64, u64)>], flat: bool, dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let warmup = WARMUP.as_secs_f64();
    for (i, (name, ..)) in INSTANCES.iter().enumerate() {
        let at_warmup = rss[i].iter().find(|(t, _)| *t >= warmup).map_or(0, |s| s.1);
        let peak = rss[i].iter().map(|s| s.1).max().unwrap_or(0);
        let later_peak = rss[i]
            .iter()
            .filter(|(t, _)| *t >= warmup)
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        let mb = |kb: u64| kb as f64 / 1024.0;
        if flat {
            println!(
                "xtask: soak: {name:<17} RSS {:.1} MB at {} s, {:.1} MB at most after",
                mb(at_warmup),
                WARMUP.as_secs(),
                mb(later_peak)
            );
        } else {
            println!("xtask: soak: {name:<17} RSS at most {:.1} MB", mb(peak));
        }
        if flat && later_peak as f64 > at_warmup as f64 * RSS_SLACK + RSS_SLACK_KB as f64 {
            failures.push(format!(
                "{name}: memory grew after the warm-up (series in {})",
                dir.join("rss.tsv").display()
            ));
        }
        if !flat && peak > RSS_CEILING_KB {
            failures.push(format!("{name}: memory above the ceiling"));
        }
    }
    failures
}

/// Every transition delivered or reported lost, by `watch --json`'s
/// summary; `per_conn`: transitions per connection. Returns what it
/// reported lost.
fn transitions(
    soaked: &Soaked,
    per_conn: f64,
    dir: &Path,
    failures: &mut Vec<String>,
) -> Result<u64> {
    let summary =
        fs::read_to_string(dir.join(INSTANCES[0].2).with_extension("err")).unwrap_or_default();
    let delivered = state_events(&summary).context("no summary from watch --json")?;
    let (ring, recursion) = bench::lost(&summary);
    // The load's transitions, and each listener cycle's two.
    let expected = soaked.connections as f64 * per_conn + 2.0 * soaked.cycles as f64;
    let accounted = (delivered + ring + recursion) as f64;
    println!(
        "xtask: soak: transitions: {delivered} delivered + {ring} ring drops + {recursion} \
         recursion misses reported = {:.2} % of {expected:.0} expected",
        100.0 * accounted / expected
    );
    // Everything on the host is traced: a little traffic besides the load
    // is within the tolerance.
    if delivered as f64 > expected * (1.0 + EXTRA) || accounted < expected * (1.0 - ACCOUNTING) {
        failures.push(format!(
            "transitions: {accounted} accounted for, {expected:.0} expected"
        ));
    }
    Ok(ring + recursion)
}

/// Every listener cycle caught by `listeners --json`, bar what was `lost`.
fn listener_closes(
    soaked: &Soaked,
    lost: u64,
    dir: &Path,
    failures: &mut Vec<String>,
) -> Result<()> {
    let listeners = fs::read_to_string(dir.join(INSTANCES[2].2))?;
    let port = format!("\"port\":{},", soaked.cycle_port);
    let closes = listeners
        .lines()
        .filter(|l| {
            l.starts_with("{\"type\":\"listener\"")
                && l.contains("\"event\":\"close\"")
                && l.contains(&port)
        })
        .count() as u64;
    let cycles = soaked.cycles;
    println!("xtask: soak: listener closes caught: {closes} of {cycles}");
    if closes > cycles || closes + lost < cycles {
        failures.push(format!("listeners: {closes} closes caught of {cycles}"));
    }
    Ok(())
}

/// A loopback port free now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `socktrace --json` writing to /dev/null: minutes of the full stream
/// would be tens of gigabytes. What it delivered is in its summary.
fn stream_to_null(bin: &Path, dir: &Path) -> Result<Child> {
    let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut child = Command::new(bin.join("socktrace"))
        .args(INSTANCES[0].1)
        .stdout(null)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting socktrace")?;
    bench::wait_attached(
        &mut child,
        dir.join(INSTANCES[0].2).with_extension("err"),
        None,
    )?;
    Ok(child)
}

/// The kernel's state events a summary says were written: "... events
/// (state N, ...", less the "; M of the state events are TIME_WAIT ends
/// found by polling" that userspace adds.
fn state_events(summary: &str) -> Option<u64> {
    let line = summary
        .lines()
        .rev()
        .find(|l| l.contains(" events (state "))?;
    let at = line.find("(state ")? + "(state ".len();
    let state: u64 = line[at..].split([',', ')']).next()?.parse().ok()?;
    let polled = line
        .find(" of the state events are TIME_WAIT ends")
        .and_then(|end| line[..end].rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Some(state - polled)
}

/// A server restarting every ~millisecond on `port` until `seconds` are
/// over: the thread, and the cycles done.
fn cycle_listener(
    bin: &Path,
    port: u16,
    seconds: u64,
) -> (thread::JoinHandle<Result<()>>, Arc<AtomicU64>) {
    let cycles = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&cycles);
    let sockops = bin.join("sockops");
    let until = Instant::now() + Duration::from_secs(seconds);
    let handle = thread::spawn(move || -> Result<()> {
        const BATCH: u64 = 200;
        while Instant::now() < until {
            let status = Command::new(&sockops)
                .args(["listen-cycle", "127.0.0.1", &port.to_string()])
                .args([&BATCH.to_string(), "1000"])
                .stdout(Stdio::null())
                .status()
                .context("running sockops")?;
            if !status.success() {
                bail!("sockops listen-cycle failed");
            }
            count.fetch_add(BATCH, Ordering::Relaxed);
        }
        Ok(())
    });
    (handle, cycles)
}

/// The memory series, one row per second and a column per instance (kB),
/// kept in the soak's directory to see when memory grew.
fn write_series(path: &Path, rss: &[Vec<(f64, u64)>]) -> Result<()> {
    let mut text = String::from("seconds");
    for (name, ..) in INSTANCES {
        text.push('\t');
        text.push_str(name);
    }
    text.push('\n');
    for (row, (at, _)) in rss[0].iter().enumerate() {
        text.push_str(&format!("{at:.0}"));
        for series in rss {
            text.push_str(&format!("\t{}", series.get(row).map_or(0, |s| s.1)));
        }
        text.push('\n');
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("socktrace {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}
