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

/// A kernel of the matrix: what `--kernel` names it, where Debian ships
/// it, and what socktrace is to find missing there (the tests'
/// `SOCKTRACE_TEST_KERNEL_LACKS`: each is a `degraded:` line they expect).
pub struct Kernel {
    pub name: &'static str,
    pub suite: &'static str,
    pub release: &'static str,
    pub lacks: &'static [&'static str],
}

pub const KERNELS: [Kernel; 3] = [
    Kernel {
        name: "5.10",
        suite: "bullseye",
        release: "Debian 11",
        // bpf_get_socket_cookie (5.12) and bpf_sk_storage_get (5.11) from
        // BTF tracepoints, the send/recv tracepoints (6.3), recursion
        // miss counts (5.12), tcp_send_reset's reason (6.10).
        lacks: &[
            "cookie",
            "sk_storage",
            "send",
            "recv",
            "recursion_misses",
            "reset_reason",
        ],
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        release: "Debian 12",
        // The send/recv tracepoints (6.3), tcp_send_reset's reason (6.10).
        lacks: &["send", "recv", "reset_reason"],
    },
    Kernel {
        name: "6.12",
        suite: "trixie",
        release: "Debian 13",
        lacks: &[],
    },
];

/// The integration test binaries the guests run. The others run on the
/// host only: `metrics` needs a Prometheus server, `alerts` promtool,
/// `logsinks` journald, journal-remote and rsyslog, `top` tmux and a
/// terminal, `image` podman and the host's container image, `contrib` (the
/// packaged unit and manifests) loads no kernel program at all, and
/// `terminal` times how
/// fast a closed pipe stops a run (under 10 s of a 30 s one), which says
/// nothing where the guest is thirty times slower; it loads what `events`
/// loads.
const GUEST_TESTS: [&str; 6] = [
    "events",
    "lifecycle",
    "connections",
    "filters",
    "analyses",
    "reliability",
];

/// Tests of those that run on the host only, and why: each pushes a load
/// through (65,636 bound sockets; 128k events to a reader that stops;
/// 10,000 connections' lines to a slow reader of a pipe shared with
/// stderr) that takes the host seconds and the emulated guest most of an
/// hour, and what it checks (a full kernel table is counted; userspace's
/// output accounting) works the same on every kernel.
const HOST_ONLY: [&str; 3] = [
    "a_full_bound_socket_table_is_counted",
    "a_reader_that_stops_reading_costs_lines_not_events",
    "stderr_down_a_slow_shared_pipe_loses_no_line",
];

/// What the tests read at run time from the source tree, copied into the
/// guests at the same paths (relative to the workspace).
const TEST_DATA: [&str; 1] = ["tracer-user/fixtures"];

/// Which of the guest tests run, and how many times over.
pub struct Runs {
    /// Only the tests whose names hold this (the harness's filter).
    pub test: Option<String>,
    pub times: u32,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            test: None,
            times: 1,
        }
    }
}

/// Runs the guest tests (`runs` of them) on `only` (a `Kernel::name`) or
/// on every kernel, the guests side by side (each is one emulation
/// thread). `socktrace`: the binary the tests run in the guests.
pub fn run(root: &Path, only: Option<&str>, runs: &Runs, socktrace: &Path) -> Result<()> {
    let kernels = select(only)?;
    let started = Instant::now();
    let tests = test_binaries(root)?;
    let mut guests = Vec::new();
    for kernel in kernels {
        let dir = root.join("target/kernels").join(kernel.suite);
        let tree = fetch::kernel(kernel, &dir)?;
        let initramfs = image::build(kernel, &tree, &dir, root, socktrace, &tests, runs)?;
        guests.push((kernel, tree, initramfs));
    }
    let outcomes = boot_all(&guests);
    let mut failed = Vec::new();
    for ((kernel, tree, _), outcome) in guests.iter().zip(outcomes) {
        let outcome = outcome?;
        println!(
            "xtask: kernel {} ({}): {}, {outcome} in {:.0} s",
            kernel.name,
            tree.version,
            if outcome.passed() { "passed" } else { "FAILED" },
            outcome.elapsed.as_secs_f64()
        );
        if !outcome.passed() {
            failed.push(format!("{} ({outcome})", kernel.name));
        }
    }
    println!(
        "xtask: the kernel matrix took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("the kernel matrix failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The kernels of the matrix `only` names (all without it).
fn select(only: Option<&str>) -> Result<Vec<&'static Kernel>> {
    let kernels: Vec<&'static Kernel> = KERNELS
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
    Ok(kernels)
}

/// Boots every guest at once, each on its own thread; their outcomes in
/// the same order.
fn boot_all(guests: &[(&Kernel, fetch::Tree, PathBuf)]) -> Vec<Result<guest::Outcome>> {
    std::thread::scope(|scope| {
        let booted: Vec<_> = guests
            .iter()
            .map(|(kernel, tree, initramfs)| {
                println!(
                    "xtask: kernel {} ({}): booting under qemu",
                    kernel.name, kernel.release
                );
                scope.spawn(move || guest::boot(kernel, tree, initramfs))
            })
            .collect();
        booted
            .into_iter()
            .map(|guest| guest.join().expect("a guest's thread panicked"))
            .collect()
    })
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
