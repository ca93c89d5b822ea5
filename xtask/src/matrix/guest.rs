//! One guest: qemu under TCG (KVM hangs on these VMs) with the kernel and
//! initramfs, its serial console on our stdout, each line shown with the
//! kernel's name and read for the init script's `socktrace-guest:` lines
//! and the test harness's `test result:` lines.
use std::{
    fmt,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Kernel, fetch::Tree};

/// A guest that has not powered off by then has hung.
const GUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What one guest reported.
#[derive(Default)]
pub struct Outcome {
    /// The init script reached its end.
    finished: bool,
    failed_binaries: Vec<String>,
    passed: u64,
    failed: u64,
    timed_out: bool,
    /// From qemu's start to its end.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.finished && self.failed_binaries.is_empty() && self.failed == 0 && self.passed > 0
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tests passed, {} failed", self.passed, self.failed)?;
        if !self.failed_binaries.is_empty() {
            write!(f, " in {}", self.failed_binaries.join(", "))?;
        }
        if self.timed_out {
            write!(f, "; timed out after {} s", GUEST_TIMEOUT.as_secs())?;
        } else if !self.finished {
            write!(f, "; the guest stopped before its tests ended")?;
        }
        Ok(())
    }
}

pub fn boot(kernel: &Kernel, tree: &Tree, initramfs: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let mut child = qemu(tree, initramfs)?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = watchdog(pid, done.clone(), timed_out.clone());
    let mut outcome = Outcome::default();
    let console = child.stdout.take().context("qemu's console")?;
    for line in BufReader::new(console).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).trim_end().to_string();
        println!("[{}] {line}", kernel.name);
        outcome.read(&line);
    }
    child.wait()?;
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    outcome.timed_out = timed_out.load(Ordering::Relaxed);
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Starts qemu on the guest's kernel and initramfs, its console piped.
fn qemu(tree: &Tree, initramfs: &Path) -> Result<Child> {
    Command::new("qemu-system-x86_64")
        // One emulation thread for both CPUs: with a thread each, the
        // kernel's live code patching (attaching tracepoints) oopsed on
        // int3 under 6.12.
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "4096",
        ])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&tree.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1 rdinit=/init"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")
}

/// Kills qemu (`pid`) once it has run [`GUEST_TIMEOUT`] without `done`,
/// saying so in `timed_out`.
fn watchdog(pid: u32, done: Arc<AtomicBool>, timed_out: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let step = Duration::from_secs(1);
        let mut waited = Duration::ZERO;
        while !done.load(Ordering::Relaxed) {
            if waited >= GUEST_TIMEOUT {
                timed_out.store(true, Ordering::Relaxed);
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(step);
            waited += step;
        }
    })
}

impl Outcome {
    fn read(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("socktrace-guest: FAILED ") {
            self.failed_binaries.push(name.to_string());
        } else if line.starts_with("socktrace-guest: done") {
            self.finished = true;
        } else if let Some(result) = line.strip_prefix("test result: ") {
            // "ok. 11 passed; 0 failed; 0 ignored; ..."
            let count = |what: &str| {
                result
                    .split([';', '.'])
                    .find_map(|part| part.trim().strip_suffix(what)?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            self.passed += count(" passed");
            self.failed += count(" failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_harness_and_init_lines() {
        let mut o = Outcome::default();
        for line in [
            "test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 7.05s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "socktrace-guest: FAILED lifecycle",
            "socktrace-guest: done, 1 test binaries failed",
        ] {
            o.read(line);
        }
        assert_eq!((o.passed, o.failed, o.finished), (14, 2, true));
        assert_eq!(o.failed_binaries, ["lifecycle"]);
        assert!(!o.passed());
    }
}
