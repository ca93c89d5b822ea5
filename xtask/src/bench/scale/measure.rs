//! One idle tracer run of the scale bench: socktrace starts (output to a
//! file), its CPU time is read once it is attached and again after
//! [`IDLE`], then it stops; its peak RSS, and its sock_diag poll line.
use std::{
    fmt, fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::bench::{Tracer, start_tracer, stop_tracer};

/// How long the tracer sits idle between the two CPU readings: past the
/// longest period of its TIME_WAIT polls (60 s), so each run holds one at
/// least (the first comes a period after the start-up snapshot). Runs wait
/// this long anyway for the last run's TIME_WAITs to expire.
pub(super) const IDLE: Duration = Duration::from_secs(65);
/// What socktrace says once the sockets that predate it are learnt.
const LEARNT: &str = "open before start, learnt in";
/// How long the tracer's stderr may take to reach its file after it exits.
const STDERR_WAIT: Duration = Duration::from_secs(2);

/// What one idle run measured.
pub(super) struct Idle {
    /// CPU time over wall time while idle, in % of one core.
    pub cpu_pct: f64,
    /// From wait4(2), in KiB.
    pub peak_rss_kb: u64,
    /// From spawn to the "attached in" line.
    pub attach_s: f64,
    /// From spawn to the line saying the sockets that predate it are
    /// learnt (after "attached").
    pub learnt_s: f64,
    /// None if the tracer printed no poll line.
    pub poll: Option<Poll>,
    /// Connections its summary says it dropped from tracking (table full).
    pub untracked: u64,
}

/// socktrace's sock_diag polls, from its exit line.
#[derive(Debug, PartialEq)]
pub(super) struct Poll {
    pub count: u64,
    /// One poll's time, on average.
    pub each_ms: f64,
    /// How often it polled.
    pub every_s: f64,
}

impl fmt::Display for Idle {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "idle CPU {:.2} %, peak RSS {:.1} MB, attached in {:.3} s, ",
            self.cpu_pct,
            self.peak_rss_kb as f64 / 1024.0,
            self.attach_s
        )?;
        write!(f, "snapshot in at {:.3} s, ", self.learnt_s)?;
        match &self.poll {
            Some(p) => write!(
                f,
                "{} polls of {:.2} ms every {:.2} s",
                p.count, p.each_ms, p.every_s
            ),
            None => f.write_str("no poll line"),
        }?;
        if self.untracked > 0 {
            write!(f, ", {} dropped from tracking", self.untracked)?;
        }
        Ok(())
    }
}

/// Runs socktrace with `args`, output to `out`, idle.
pub(super) fn idle(bin: &Path, out: &Path, args: &'static [&'static str]) -> Result<Idle> {
    let err = out.with_extension("err");
    let _ = fs::remove_file(&err);
    // Idle is once what exists is learnt, which comes after attaching.
    let spawned = Instant::now();
    let (tracer, attach_s) = start_tracer(bin, Tracer::Socktrace(args), out, Some(LEARNT))?;
    let learnt_s = spawned.elapsed().as_secs_f64();
    // Stopped whether or not the reading worked.
    let cpu_pct = idle_cpu(tracer.id());
    let (_, peak_rss_kb) = stop_tracer(tracer)?;
    let stderr = stderr(&err);
    Ok(Idle {
        cpu_pct: cpu_pct?,
        peak_rss_kb,
        attach_s,
        learnt_s,
        poll: poll_line(&stderr),
        untracked: untracked(&stderr),
    })
}

/// The CPU process `pid` uses over [`IDLE`], in % of one core.
fn idle_cpu(pid: u32) -> Result<f64> {
    let (before, started) = (cpu_ticks(pid)?, Instant::now());
    thread::sleep(IDLE);
    let (after, elapsed) = (cpu_ticks(pid)?, started.elapsed());
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(100.0 * after.saturating_sub(before) as f64 / ticks_per_s / elapsed.as_secs_f64())
}

/// User + system CPU time of process `pid` (every thread), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| path.clone())?;
    stat_ticks(&stat).with_context(|| format!("{path}: {stat}"))
}

/// utime + stime from a /proc/PID/stat line (proc(5) fields 14 and 15).
/// The name in parentheses may hold spaces and parentheses: fields are
/// counted after its last `)`, from field 3 on.
fn stat_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// The tracer's stderr, once `wait_attached`'s copier wrote it to `path`
/// (when the tracer exited); empty if it does not come.
fn stderr(path: &Path) -> String {
    let started = Instant::now();
    loop {
        match fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => return text,
            _ if started.elapsed() > STDERR_WAIT => return String::new(),
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The last "socktrace: sock_diag polled N times, X ms each on average,
/// every P s" line of `stderr`.
fn poll_line(stderr: &str) -> Option<Poll> {
    stderr.lines().rev().find_map(|line| {
        let rest = line.strip_prefix("socktrace: sock_diag polled ")?;
        let (count, rest) = rest.split_once(' ')?;
        let rest = rest
            .strip_prefix("times, ")
            .or_else(|| rest.strip_prefix("time, "))?;
        let (each, rest) = rest.split_once(" ms each on average, every ")?;
        Some(Poll {
            count: count.parse().ok()?,
            each_ms: each.parse().ok()?,
            every_s: rest.strip_suffix(" s")?.parse().ok()?,
        })
    })
}

/// "N connections dropped from tracking (table full)" from the summary
/// line of `stderr`; 0 if it says none (or the mode tracks none).
fn untracked(stderr: &str) -> u64 {
    stderr
        .lines()
        .rev()
        .find_map(|line| {
            let at = line.find(" connections dropped from tracking")?;
            line[..at].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_poll_line() {
        let stderr = "socktrace: attached in 120 ms; Ctrl-C to stop\n\
                      socktrace: sock_diag polled 12 times, 3.41 ms each on average, every 1.00 s\n\
                      socktrace: 0 events\n";
        assert_eq!(
            poll_line(stderr),
            Some(Poll {
                count: 12,
                each_ms: 3.41,
                every_s: 1.0
            })
        );
        let once = "socktrace: sock_diag polled 1 time, 250.5 ms each on average, every 8.00 s";
        assert_eq!(
            poll_line(once).map(|p| (p.count, p.every_s)),
            Some((1, 8.0))
        );
    }

    #[test]
    fn no_poll_line_is_none() {
        assert_eq!(poll_line("socktrace: attached in 120 ms\n"), None);
        assert_eq!(poll_line(""), None);
        assert_eq!(
            poll_line("socktrace: sock_diag polled many times, 3 ms each on average, every 1 s"),
            None
        );
    }

    #[test]
    fn reads_the_untracked_count() {
        let stderr = "socktrace: 0 events (state 0, bind 0, listen 0, release 0), 0 connections \
                      closed; lost 0 (ring buffer full) + 0 (another BPF program was running); \
                      237856 connections dropped from tracking (table full)\n";
        assert_eq!(untracked(stderr), 237856);
        assert_eq!(
            untracked("socktrace: 0 events (state 0), 0 connections closed\n"),
            0
        );
    }

    #[test]
    fn reads_cpu_ticks_after_the_name() {
        let stat = "4242 (sock) trace) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    137 42 0 0 30 10 3 0 123456 700000000 7000 18446744073709551615";
        assert_eq!(stat_ticks(stat), Some(179));
        assert_eq!(stat_ticks("4242 (socktrace) S 1"), None);
    }
}
