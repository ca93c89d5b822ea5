//! `cargo xtask bench`: what tracing costs a busy host. A connection-churn
//! load (tests/src/bin/churn.rs) runs alone, then under socktrace in each
//! mode, interleaved (A B A B ...) for several rounds; medians are reported
//! in bench/RESULTS.md and the README's performance section. `--scale`
//! measures an idle tracer on a host holding many sockets instead
//! (bench/scale.rs).
use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

mod hold;
mod results;
mod scale;
mod sections;

use results::{publish, table};

const ROUNDS: usize = 3;
const SECONDS: f64 = 5.0;
const THREADS: usize = 4;

/// A way to run a tracer (or none) during the load.
struct Mode {
    name: &'static str,
    tracer: Tracer,
    /// What its output lists, to count deliveries.
    streams: Stream,
}

#[derive(Clone, Copy)]
pub(crate) enum Tracer {
    None,
    Socktrace(&'static [&'static str]),
    /// The peer: a bpftrace one-liner printing every transition.
    Bpftrace,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Stream {
    None,
    /// Aggregates only: nothing is streamed per transition.
    Aggregate,
    Text,
    Json,
    /// `--json` written to /dev/null: every transition streamed, no
    /// page cache to fill (what the output file costs the kernel).
    Discarded,
    Bpftrace,
}

impl Stream {
    /// Whether the tracer's output lists each transition, to be counted.
    pub(crate) fn lists_transitions(self) -> bool {
        !matches!(self, Stream::None | Stream::Aggregate | Stream::Discarded)
    }
}

/// bpftrace's equivalent of `socktrace` streaming every transition.
const BPFTRACE_PROGRAM: &str = "tracepoint:sock:inet_sock_set_state { \
    printf(\"%d %s %d %d %d %d\\n\", pid, comm, args->sport, args->dport, \
    args->oldstate, args->newstate); }";

fn modes() -> Vec<Mode> {
    let mut modes = vec![
        Mode {
            name: "no tracer",
            tracer: Tracer::None,
            streams: Stream::None,
        },
        Mode {
            name: "socktrace (text)",
            tracer: Tracer::Socktrace(&[]),
            streams: Stream::Text,
        },
        Mode {
            name: "socktrace --json",
            tracer: Tracer::Socktrace(&["--json"]),
            streams: Stream::Json,
        },
        Mode {
            name: "socktrace --json > /dev/null",
            tracer: Tracer::Socktrace(&["--json"]),
            streams: Stream::Discarded,
        },
        Mode {
            name: "socktrace --json --port 1 (matches nothing)",
            tracer: Tracer::Socktrace(&["--json", "--port", "1"]),
            streams: Stream::None,
        },
        // The aggregate-only analyses: nothing streamed per connection.
        Mode {
            name: "socktrace timewait --json (kernel tallies)",
            tracer: Tracer::Socktrace(&["timewait", "--json"]),
            streams: Stream::Aggregate,
        },
        Mode {
            name: "socktrace listeners --json",
            tracer: Tracer::Socktrace(&["listeners", "--json"]),
            streams: Stream::Aggregate,
        },
    ];
    if Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        modes.push(Mode {
            name: "peer: bpftrace one-liner",
            tracer: Tracer::Bpftrace,
            streams: Stream::Bpftrace,
        });
    } else {
        println!("xtask: bench: bpftrace is not installed: no peer row");
    }
    modes
}

/// One run of the load, with or without the tracer.
#[derive(Default, Clone)]
struct Run {
    rate: f64,
    connections: u64,
    /// Transitions of the load's connections that the tracer wrote.
    delivered: u64,
    /// What the tracer said it lost (ring or perf buffer full + recursion
    /// misses).
    reported_lost: u64,
    recursion_misses: u64,
    cpu_s: f64,
    peak_rss_kb: u64,
    attach_s: f64,
}

/// The churn bench, or with `scale` the idle-cost one (bench/scale.rs).
pub fn run(root: &Path, scale: bool) -> Result<()> {
    super::build_release_all()?;
    if scale {
        return scale::run(root);
    }
    let bin = root.join("target/release");
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;

    println!("xtask: bench: calibrating transitions per connection (slow run, 2000 connections)");
    let per_conn = calibrate(&bin, &out_dir)?;
    println!("xtask: bench: {per_conn:.2} transitions per connection");

    let modes = modes();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
    for round in 1..=ROUNDS {
        for (i, mode) in modes.iter().enumerate() {
            let run = measure(&bin, &out_dir, mode)
                .with_context(|| format!("round {round}, {}", mode.name))?;
            println!(
                "xtask: bench: round {round}/{ROUNDS} {:<45} {:>8.0} conn/s",
                mode.name, run.rate
            );
            runs[i].push(run);
        }
    }
    let table = table(&modes, &runs, per_conn);
    publish(root, &table)?;
    println!("{table}");
    println!("xtask: bench: wrote its sections of bench/RESULTS.md and the README");
    Ok(())
}

pub(crate) fn churn(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin.join("churn"));
    cmd.args(args).stdout(Stdio::piped());
    cmd
}

/// Starts the tracer, output to `out`; returns once it is attached (and,
/// given `then`, once socktrace said a line holding that too), and how
/// long attaching took.
pub(crate) fn start_tracer(
    bin: &Path,
    tracer: Tracer,
    out: &Path,
    then: Option<&str>,
) -> Result<(Child, f64)> {
    let started = Instant::now();
    let err_path = out.with_extension("err");
    if let Tracer::Bpftrace = tracer {
        let child = Command::new("bpftrace")
            .args(["-o", &out.to_string_lossy(), "-e", BPFTRACE_PROGRAM])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_path)?)
            .spawn()
            .context("starting bpftrace")?;
        // It writes "Attaching 1 probe..." to its output, then attaches.
        while !fs::read_to_string(out)
            .unwrap_or_default()
            .contains("Attaching")
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("bpftrace did not attach within a minute");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        return Ok((child, started.elapsed().as_secs_f64()));
    }
    start_socktrace(bin, tracer, fs::File::create(out)?.into(), err_path, then)
}

/// Starts socktrace (`tracer`), its output to `stdout` and its standard
/// error, once it said it is attached (and `then`), to `err_path`; returns
/// how long attaching took.
fn start_socktrace(
    bin: &Path,
    tracer: Tracer,
    stdout: Stdio,
    err_path: PathBuf,
    then: Option<&str>,
) -> Result<(Child, f64)> {
    let started = Instant::now();
    let Tracer::Socktrace(args) = tracer else {
        bail!("no tracer to start");
    };
    let mut child = Command::new(bin.join("socktrace"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting socktrace")?;
    let attached = wait_attached(&mut child, err_path, then)?;
    Ok((child, attached.duration_since(started).as_secs_f64()))
}

/// Waits for socktrace's "attached" line and, given `then`, a line holding
/// that (said before or after it), then keeps copying its stderr to `err_path` so it never
/// blocks on it. Returns when it said it was attached.
pub(crate) fn wait_attached(
    child: &mut Child,
    err_path: PathBuf,
    then: Option<&str>,
) -> Result<Instant> {
    let stderr = child.stderr.take().context("socktrace's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut said = String::new();
    let (mut attached, mut heard) = (None, then.is_none());
    for line in lines.by_ref() {
        let line = line?;
        heard |= then.is_some_and(|then| line.contains(then));
        if attached.is_none() && line.contains("attached in") {
            attached = Some(Instant::now());
        }
        said.push_str(&line);
        said.push('\n');
        if attached.is_some() && heard {
            break;
        }
    }
    let Some(attached) = attached.filter(|_| heard) else {
        bail!("socktrace exited before saying it was attached (and {then:?})");
    };
    // Keep draining stderr into a file so the tracer never blocks on it.
    std::thread::spawn(move || {
        let mut text = said;
        for line in lines.map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        let _ = fs::write(err_path, text);
    });
    Ok(attached)
}

/// SIGINT, then the tracer's CPU time and peak RSS from wait4(2).
pub(crate) fn stop_tracer(child: Child) -> Result<(f64, u64)> {
    let pid = child.id() as i32;
    // SAFETY: signalling and reaping our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child; the pointers are valid for the call.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 on socktrace failed");
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        bail!("socktrace exited with {status}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss as u64,
    ))
}

pub(crate) fn run_churn(cmd: &mut Command) -> Result<(u64, f64, u16)> {
    run_churn_output(&cmd.output().context("running churn")?)
}

/// Connections, seconds and port from churn's report.
pub(crate) fn run_churn_output(out: &std::process::Output) -> Result<(u64, f64, u16)> {
    if !out.status.success() {
        bail!("churn failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Result<f64> {
        let at = text.find(&format!("\"{name}\":")).context("churn output")? + name.len() + 3;
        let end = text[at..].find([',', '}']).context("churn output")? + at;
        Ok(text[at..end].parse()?)
    };
    Ok((
        field("connections")? as u64,
        field("seconds")?,
        field("port")? as u16,
    ))
}

/// Transitions per connection, counted on a slow run traced as JSON.
pub(crate) fn calibrate(bin: &Path, dir: &Path) -> Result<f64> {
    let out = dir.join("calibrate.json");
    let (tracer, _) = start_tracer(bin, Tracer::Socktrace(&["--json"]), &out, None)?;
    let (conns, _, port) = run_churn(&mut churn(
        bin,
        &["--threads", "1", "--connections", "2000"],
    ))?;
    // Let every connection finish its last transitions (delayed ACKs).
    std::thread::sleep(Duration::from_secs(2));
    stop_tracer(tracer)?;
    let transitions = count(&out, port, Stream::Json)?;
    Ok(transitions as f64 / conns as f64)
}

fn measure(bin: &Path, dir: &Path, mode: &Mode) -> Result<Run> {
    let secs = SECONDS.to_string();
    let threads = THREADS.to_string();
    let mut load = churn(bin, &["--threads", &threads, "--seconds", &secs]);
    if let Tracer::None = mode.tracer {
        let (connections, seconds, _) = run_churn(&mut load)?;
        return Ok(Run {
            rate: connections as f64 / seconds,
            connections,
            ..Run::default()
        });
    };
    let out = dir.join("run.out");
    let (tracer, attach_s) = if mode.streams == Stream::Discarded {
        let err = out.with_extension("err");
        start_socktrace(bin, mode.tracer, Stdio::null(), err, None)?
    } else {
        start_tracer(bin, mode.tracer, &out, None)?
    };
    let (connections, seconds, port) = run_churn(&mut load)?;
    let (cpu_s, peak_rss_kb) = stop_tracer(tracer)?;
    std::thread::sleep(Duration::from_millis(100)); // the stderr copier
    let (ring, recursion) = match mode.tracer {
        Tracer::Bpftrace => (bpftrace_lost(&out)?, 0),
        _ => lost(&fs::read_to_string(out.with_extension("err")).unwrap_or_default()),
    };
    let delivered = count(&out, port, mode.streams)?;
    Ok(Run {
        rate: connections as f64 / seconds,
        connections,
        delivered,
        reported_lost: ring + recursion,
        recursion_misses: recursion,
        cpu_s,
        peak_rss_kb,
        attach_s,
    })
}

/// "lost N (ring buffer full) + M (another BPF program was running)"
pub(crate) fn lost(summary: &str) -> (u64, u64) {
    let line = summary
        .lines()
        .rev()
        .find(|l| l.contains(" events (state "))
        .unwrap_or("");
    let number_before = |marker: &str| -> u64 {
        line.find(marker)
            .and_then(|at| line[..at].trim_end().rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    (
        number_before("(ring buffer full)"),
        number_before("(another BPF program"),
    )
}

/// Events bpftrace said it lost ("Lost N events" in its output).
fn bpftrace_lost(out: &Path) -> Result<u64> {
    let file = fs::File::open(out)?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            l.strip_prefix("Lost ")?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// Transitions of connections to or from `port` in a tracer's output.
/// Streamed: the bench's own memory must stay small, since a child's peak
/// RSS (from wait4) starts from its parent's at fork.
pub(crate) fn count(path: &Path, port: u16, stream: Stream) -> Result<u64> {
    if !stream.lists_transitions() {
        return Ok(0);
    }
    let file = fs::File::open(path).with_context(|| path.display().to_string())?;
    Ok(count_lines(
        BufReader::new(file).lines().map_while(Result::ok),
        port,
        stream,
    ))
}

/// Transitions of connections to or from `port` among `lines`.
fn count_lines(lines: impl Iterator<Item = String>, port: u16, stream: Stream) -> u64 {
    let n = match stream {
        Stream::None | Stream::Aggregate | Stream::Discarded => 0, // see `count`
        Stream::Json => {
            let (s, d) = (format!("\"sport\":{port},"), format!("\"dport\":{port},"));
            lines
                .filter(|l| {
                    l.starts_with("{\"type\":\"state\"") && (l.contains(&s) || l.contains(&d))
                })
                .filter(|l| !l.contains("\"old_state\":\"TIME_WAIT\""))
                .count()
        }
        Stream::Text => {
            let p = format!(":{port} ");
            lines
                .filter(|l| l.contains(" -> ") && l.contains(&p) && !l.contains("TIME_WAIT -> "))
                .count()
        }
        // "pid comm sport dport old new"
        Stream::Bpftrace => {
            let p = port.to_string();
            lines
                .filter(|l| {
                    let f: Vec<&str> = l.rsplitn(5, ' ').collect();
                    f.len() == 5 && (f[3] == p || f[2] == p)
                })
                .count()
        }
    };
    n as u64
}
