//! Developer tasks: `cargo xtask setup|build|dist|run|test|bench`. Every task first
//! makes sure this machine can build eBPF (see `setup`).
mod apt;
mod bench;
mod dist;
mod fuzz;
mod image;
mod matrix;
mod rootfs;
mod setup;
mod soak;

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "socktrace's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building the kernel programs needs (idempotent).
    Setup {
        /// Also what `test` needs: its Debian packages, and
        /// VictoriaMetrics from trixie in target/ (the OTLP test's receiver).
        #[arg(long)]
        test: bool,
    },
    /// Build socktrace (release).
    Build,
    /// Build socktrace (release) and package it: target/dist/socktrace_VERSION_ARCH.deb
    /// with the binary, man pages, shell completions, the systemd unit and docs.
    Dist,
    /// Build socktrace (release) and its container image, FROM scratch:
    /// target/image/socktrace-VERSION.tar (OCI), as the DaemonSet names it.
    Image,
    /// Build socktrace (release) and run it with ARGS, as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every check: fmt, clippy (user and kernel crates), unit tests, the
    /// integration tests against the running kernel, a Prometheus server
    /// and tmux, the fuzzers, a short soak, then the integration tests
    /// inside each kernel of the matrix (needs root; installs what is
    /// missing).
    Test {
        /// Only the integration tests inside Debian's kernel VERSION (5.10,
        /// 6.1 or 6.12) under qemu, or inside each (`all`).
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// With --kernel: only the tests whose names hold NAME.
        #[arg(long, value_name = "NAME", requires = "kernel")]
        test: Option<String>,
        /// With --kernel: run the tests this many times in each guest (to
        /// find a test that passes by timing luck).
        #[arg(long, value_name = "N", default_value_t = 1, requires = "kernel")]
        times: u32,
    },
    /// What tracing costs under connection churn, vs no tracer (needs root);
    /// writes its sections of bench/RESULTS.md and the README's performance
    /// section.
    Bench {
        /// Instead: what an idle socktrace costs (CPU, memory, start,
        /// sock_diag polls) as the host holds 0 to 500k open TCP sockets
        /// and TIME_WAITs.
        #[arg(long)]
        scale: bool,
    },
    /// Minutes of maximum churn and listener cycling under three socktrace
    /// instances: memory flat, every event delivered or reported lost.
    Soak {
        /// How long the load runs.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Fuzz the ring-record decoder and the JSON line reader (cargo-fuzz,
    /// installed if missing); the corpus grows in fuzz/corpus.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli.task) {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run(task: Task) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    setup::ensure()?;
    match task {
        Task::Setup { test: false } => Ok(()),
        Task::Setup { test: true } => {
            setup::ensure_test_tools()?;
            setup::ensure_otlp_receiver(&root).map(drop)
        }
        Task::Build => build_release(),
        Task::Dist => {
            build_release()?;
            dist::run(&root)
        }
        Task::Image => {
            setup::ensure_image_tools()?;
            build_release()?;
            image::run(&root).map(drop)
        }
        Task::Run { args } => {
            build_release()?;
            let bin = root.join("target/release/socktrace");
            let err = Command::new(&bin).args(&args).exec();
            Err(err).with_context(|| format!("running {}", bin.display()))
        }
        Task::Test { kernel: None, .. } => test(&root),
        Task::Test {
            kernel: Some(kernel),
            test,
            times,
        } => {
            setup::ensure_matrix_tools()?;
            build_release()?;
            let only = (kernel != "all").then_some(kernel.as_str());
            let runs = matrix::Runs { test, times };
            matrix::run(&root, only, &runs, &root.join("target/release/socktrace"))
        }
        Task::Bench { scale } => bench::run(&root, scale),
        Task::Fuzz { seconds } => fuzz::run(&root, seconds, true),
        Task::Soak { seconds } => {
            build_release_all()?;
            soak::run(
                &root.join("target/release"),
                &root.join("target/soak"),
                seconds,
            )
        }
    }
}

/// Builds socktrace (release). Quietly: aya-build relays every line of the
/// kernel crate's build as a warning, and cargo replays them on each build.
fn build_release() -> Result<()> {
    println!("xtask: building socktrace (release)");
    cargo(&["build", "--quiet", "--release", "-p", "tracer-user"])
}

fn test(root: &Path) -> Result<()> {
    setup::ensure_test_tools()?;
    let otlp_receiver = setup::ensure_otlp_receiver(root)?;
    setup::ensure_matrix_tools()?;
    step("formatting", &["fmt", "--all", "--check"])?;
    // The kernel object is not needed to lint the loader: skip building it.
    println!("xtask: lint (userspace)");
    run_cargo(
        &["clippy", "--all-targets", "--", "-D", "warnings"],
        &[("AYA_BUILD_SKIP", "1")],
    )?;
    step(
        "lint (kernel programs)",
        &[
            "+nightly",
            "clippy",
            "-p",
            "tracer-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("build", &["build", "--quiet", "-p", "tracer-user"])?;
    // The image test runs the container image of the release binary.
    setup::ensure_image_tools()?;
    build_release()?;
    let image = image::run(root)?;
    wait_for_time_wait_room();
    let bin = root.join("target/debug/socktrace");
    println!("xtask: tests (unit, then integration against the running kernel)");
    let status = Command::new("cargo")
        .args(["test", "--workspace", "--exclude", "tracer-ebpf"])
        .env("SOCKTRACE_BIN", &bin)
        .env("SOCKTRACE_IMAGE", &image)
        .env(setup::OTLP_RECEIVER_VAR, &otlp_receiver)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    fuzz::run(root, SHORT_FUZZ_S, false)?;
    println!("xtask: a short soak ({SHORT_SOAK_S} s; `cargo xtask soak` runs 10 minutes)");
    build_release_all()?;
    soak::run(
        &root.join("target/release"),
        &root.join("target/soak-short"),
        SHORT_SOAK_S,
    )?;
    println!("xtask: the integration tests on each kernel of the matrix, under qemu");
    matrix::run(
        root,
        None,
        &matrix::Runs::default(),
        &root.join("target/release/socktrace"),
    )
}

/// The short soak in `cargo xtask test`.
const SHORT_SOAK_S: u64 = 20;
/// The short fuzz run of each target in `cargo xtask test`.
const SHORT_FUZZ_S: u64 = 15;

/// socktrace and the load generators, release.
fn build_release_all() -> Result<()> {
    println!("xtask: building socktrace and the load generators (release)");
    cargo(&[
        "build",
        "--quiet",
        "--release",
        "-p",
        "tracer-user",
        "-p",
        "socktrace-tests",
    ])
}

/// The connection tests need room for TIME_WAIT sockets; right after
/// `cargo xtask bench` the kernel's table may be full for up to a minute.
fn wait_for_time_wait_room() {
    let read = || -> Option<(u64, u64)> {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let tw = tracer_common::sockstat_time_waits(&sockstat)?;
        let max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets").ok()?;
        Some((tw, max.trim().parse().ok()?))
    };
    let started = std::time::Instant::now();
    while let Some((tw, max)) = read() {
        if tw + 1000 < max || started.elapsed() > std::time::Duration::from_secs(75) {
            break;
        }
        if started.elapsed().as_secs().is_multiple_of(10) {
            println!("xtask: waiting for TIME_WAIT sockets to expire ({tw} of at most {max})");
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn step(what: &str, args: &[&str]) -> Result<()> {
    println!("xtask: {what}");
    cargo(args)
}

fn cargo(args: &[&str]) -> Result<()> {
    run_cargo(args, &[])
}

fn run_cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let status = Command::new("cargo")
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
