//! The scale bench's idle sockets: `hold` processes (tests/src/bin/hold.rs),
//! as many as the count needs, killed and reaped when the guard drops
//! (after each point, and on any error).
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// What the holders leave on the host.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// Established pairs on loopback: two open sockets each.
    Pairs,
    /// Connections closed client first: one TIME_WAIT each.
    TimeWait,
}

impl Kind {
    /// hold's flag.
    fn flag(self) -> &'static str {
        match self {
            Kind::Pairs => "--pairs",
            Kind::TimeWait => "--time-wait",
        }
    }

    /// The most one holder makes: 8000 pairs are 16000 descriptors, under
    /// the 20000 a process may open here; the TIME_WAITs of one holder
    /// stay well within its 16 destinations' ephemeral ports.
    pub(super) fn per_holder(self) -> u64 {
        match self {
            Kind::Pairs => 8_000,
            Kind::TimeWait => 25_000,
        }
    }
}

/// Running holders; dropping them closes their stdin, kills and reaps them.
pub(super) struct Holders(Vec<Child>);

impl Holders {
    /// `count` of `kind` (pairs, or TIME_WAITs), spread over holders started
    /// at once; returns when every one has said `ready`.
    pub(super) fn spawn(bin: &Path, kind: Kind, count: u64) -> Result<Holders> {
        let mut holders = Holders(Vec::new());
        let mut left = count;
        while left > 0 {
            let n = left.min(kind.per_holder());
            left -= n;
            let child = Command::new(bin.join("hold"))
                .args([kind.flag(), &n.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting hold")?;
            holders.0.push(child);
        }
        for child in &mut holders.0 {
            let stdout = child.stdout.take().context("hold's stdout")?;
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line)?;
            if line.trim_end() != "ready" {
                bail!(
                    "a holder (of {} {count} in all) exited before it was ready",
                    kind.flag()
                );
            }
        }
        Ok(holders)
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.stdin.take());
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}
