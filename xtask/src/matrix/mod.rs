//! The kernel matrix: the integration tests, run inside Debian's own cloud
//! kernels of the releases our users run, booted under qemu. Kernels come
//! from Debian's archive with apt (a private sources list per suite) and
//! are cached under `target/kernels/`, so a second run downloads nothing.
//! Each guest boots an initramfs holding busybox, the tools the tests call
//! and the real `socktrace` and test binaries at their host paths; its
//! serial console brings the results out.
mod fetch;
mod guest;
mod image;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// A kernel of the matrix: what `--kernel` names it, and where Debian
/// ships it.
pub struct Kernel {
    pub name: &'static str,
    pub suite: &'static str,
    pub release: &'static str,
}

pub const KERNELS: [Kernel; 3] = [
    Kernel {
        name: "5.10",
        suite: "bullseye",
        release: "Debian 11",
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        release: "Debian 12",
    },
    Kernel {
        name: "6.12",
        suite: "trixie",
        release: "Debian 13",
    },
];

/// The integration test binaries the guests run. The others run on the
/// host only: `metrics` needs a Prometheus server, `logsinks` journald
/// and rsyslog, `top` tmux and a terminal, `contrib` (the packaged unit
/// and manifests) loads no kernel program at all, and `terminal` times how
/// fast a closed pipe stops a run (under 10 s of a 30 s one), which says
/// nothing where the guest is thirty times slower; it loads what `events`
/// loads.
const GUEST_TESTS: [&str; 5] = ["events", "lifecycle", "filters", "analyses", "reliability"];

/// Tests of those that run on the host only, and why: each pushes a load
/// through (65,636 bound sockets; 128k events to a reader that stops) that
/// takes the host seconds and the emulated guest most of an hour, and what
/// it checks (a full kernel table is counted; userspace's output
/// accounting) works the same on every kernel.
const HOST_ONLY: [&str; 2] = [
    "a_full_bound_socket_table_is_counted",
    "a_reader_that_stops_reading_costs_lines_not_events",
];

/// Runs the guest tests on `only` (a `Kernel::name`) or on every kernel.
/// `socktrace`: the binary the tests run in the guests.
pub fn run(root: &Path, only: Option<&str>, socktrace: &Path) -> Result<()> {
    let kernels: Vec<&Kernel> = KERNELS
        .iter()
        .filter(|k| only.is_none_or(|name| k.name == name))
        .collect();
    if kernels.is_empty() {
        let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
        bail!(
            "no kernel {:?} in the matrix (it has {})",
            only.unwrap_or_default(),
            names.join(", ")
        );
    }
    let tests = test_binaries(root)?;
    let mut failed = Vec::new();
    for kernel in kernels {
        let started = Instant::now();
        let dir = root.join("target/kernels").join(kernel.suite);
        let tree = fetch::kernel(kernel, &dir)?;
        let initramfs = image::build(&tree, &dir, socktrace, &tests)?;
        println!(
            "xtask: kernel {} ({}): booting under qemu",
            kernel.name, kernel.release
        );
        let outcome = guest::boot(kernel, &tree, &initramfs)?;
        println!(
            "xtask: kernel {} ({}): {} in {:.0} s",
            kernel.name,
            tree.version,
            if outcome.passed() { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !outcome.passed() {
            failed.push(format!("{} ({})", kernel.name, outcome));
        }
    }
    if !failed.is_empty() {
        bail!("the kernel matrix failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Builds the integration tests and returns each guest test's executable
/// by name, plus the helper binaries they run (at their host paths).
fn test_binaries(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let out = Command::new("cargo")
        .args([
            "test",
            "--no-run",
            "-p",
            "socktrace-tests",
            "--message-format=json",
        ])
        .current_dir(root)
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the integration tests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut found = BTreeMap::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        let kind = &msg["target"]["kind"][0];
        // A bin comes twice: itself, and its own unit tests (a test profile).
        let helper = kind == "bin" && msg["profile"]["test"] == false;
        let wanted = (kind == "test" && GUEST_TESTS.contains(&name)) || helper;
        if wanted {
            found.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for name in GUEST_TESTS {
        if !found.contains_key(name) {
            bail!("cargo built no test binary `{name}`");
        }
    }
    Ok(found)
}

/// Whether `name` is one of `GUEST_TESTS` (the rest of `test_binaries`
/// are helpers the tests run).
fn is_test(name: &str) -> bool {
    GUEST_TESTS.contains(&name)
}
