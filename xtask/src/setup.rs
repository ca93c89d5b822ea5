//! Makes a fresh Debian machine able to build the kernel programs, and
//! costs only a few file checks when it already can:
//!
//! 1. the `nightly` toolchain (it builds the eBPF crate with `-Z build-std`)
//!    and its `rust-src` component;
//! 2. Debian's LLVM development package of the same major version as
//!    nightly's LLVM;
//! 3. bpf-linker built against that LLVM;
//!
//! and, for `test` only, the daemons and tools the integration tests
//! use: Prometheus, rsyslog, systemd-journald, systemd-journal-remote (and
//! -upload), tmux, and qemu, busybox and cpio for the kernel matrix
//! (Debian packages).
//!
//! Each install step says what it does. When one cannot run (not root, no
//! network) it stops with the command to run by hand.
use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// bpf-linker release known to build with the machine's stable Rust.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    let llvm = nightly_llvm_major()?;
    ensure_rust_src()?;
    ensure_llvm_dev(llvm)?;
    ensure_bpf_linker(llvm)
}

/// What `cargo xtask test` needs beyond building: (a file the package
/// installs, the Debian package, what for).
const TEST_TOOLS: [(&str, &str, &str); 5] = [
    (
        "/usr/bin/prometheus",
        "prometheus",
        "the metrics test scrapes socktrace with it",
    ),
    (
        "/usr/sbin/rsyslogd",
        "rsyslog",
        "the syslog test reads socktrace's messages back through it",
    ),
    (
        "/lib/systemd/systemd-journald",
        "systemd",
        "the journal test reads socktrace's entries back through it",
    ),
    (
        "/lib/systemd/systemd-journal-remote",
        "systemd-journal-remote",
        "the fleet journal test ships socktrace's entries to a central host with it",
    ),
    (
        "/usr/bin/tmux",
        "tmux",
        "the top test drives socktrace's terminal view in it",
    ),
];

/// What `cargo xtask test --kernel` needs besides.
const MATRIX_TOOLS: [(&str, &str, &str); 3] = [
    (
        "/usr/bin/qemu-system-x86_64",
        "qemu-system-x86",
        "the kernel matrix boots Debian's kernels in it",
    ),
    (
        "/bin/busybox",
        "busybox-static",
        "the shell and tools of the kernel matrix's guests",
    ),
    (
        "/usr/bin/cpio",
        "cpio",
        "packs the kernel matrix's initramfs",
    ),
];

/// What `cargo xtask image` needs (and the image test, run by `cargo xtask
/// test`).
const IMAGE_TOOLS: [(&str, &str, &str); 2] = [
    (
        "/usr/bin/podman",
        "podman",
        "builds socktrace's container image (FROM scratch), and the image test runs it",
    ),
    (
        "/usr/sbin/runc",
        "runc",
        "the image test's container runtime (crun refuses hybrid cgroup hosts)",
    ),
];

/// Where the OTLP test's receiver is fetched (under the workspace root),
/// and the variable `test` names its binary in.
pub const OTLP_RECEIVER_DIR: &str = "target/victoria-metrics-trixie";
pub const OTLP_RECEIVER_VAR: &str = "SOCKTRACE_OTLP_RECEIVER";
/// The binary in that directory, once unpacked.
const OTLP_RECEIVER_BIN: &str = "unpacked/usr/bin/victoria-metrics";

/// The OTLP test's receiver: VictoriaMetrics from Debian trixie (1.112),
/// which takes OTLP/HTTP pushes, names them as Prometheus does and answers
/// PromQL. Debian's Prometheus cannot: its packages (trixie's 2.53,
/// forky's 3.5) are built with the OTLP endpoint disabled (Debian
/// #1080354). Unpacked under the workspace's target/ with apt's private
/// state (the host's packages are not touched); cached. Returns the
/// binary's path.
pub fn ensure_otlp_receiver(root: &Path) -> Result<PathBuf> {
    let dir = root.join(OTLP_RECEIVER_DIR);
    let bin = dir.join(OTLP_RECEIVER_BIN);
    if bin.is_file() {
        return Ok(bin);
    }
    println!(
        "xtask: setup: fetching VictoriaMetrics from Debian trixie (the OTLP test's receiver; \
         once, cached in {}): apt-get download victoria-metrics, dpkg-deb -x",
        dir.display()
    );
    let suite = crate::apt::Suite::new("trixie", &dir)?;
    suite.update()?;
    suite.unpack("victoria-metrics", &dir.join("unpacked"))?;
    if !bin.is_file() {
        bail!("trixie's victoria-metrics package holds no {OTLP_RECEIVER_BIN}");
    }
    Ok(bin)
}

/// Installs what building the container image needs that is missing.
pub fn ensure_image_tools() -> Result<()> {
    ensure_packages(&IMAGE_TOOLS)
}

/// Installs the test tools that are missing.
pub fn ensure_test_tools() -> Result<()> {
    ensure_packages(&TEST_TOOLS)
}

/// Installs what the kernel matrix needs that is missing.
pub fn ensure_matrix_tools() -> Result<()> {
    ensure_packages(&MATRIX_TOOLS)
}

/// Installs the packages of `tools` whose file is missing.
fn ensure_packages(tools: &[(&str, &str, &str)]) -> Result<()> {
    let missing: Vec<_> = tools
        .iter()
        .filter(|(path, ..)| !Path::new(path).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, package, _)| *package).collect();
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&packages);
    require_root(&format!("apt-get {}", args.join(" ")))?;
    install("Debian's package lists", "apt-get", &["update"], &[])?;
    let why: Vec<String> = missing
        .iter()
        .map(|(_, package, why)| format!("{package} ({why})"))
        .collect();
    install(
        &why.join(", "),
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )?;
    // Where systemd runs, the package starts a server on :9090 at every
    // boot; the test runs its own.
    if packages.contains(&"prometheus") && Path::new("/run/systemd/system").is_dir() {
        println!(
            "xtask: setup: stopping Debian's prometheus service: systemctl disable --now prometheus"
        );
        let stopped = Command::new("systemctl")
            .args(["disable", "--now", "prometheus"])
            .stdin(Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            println!("xtask: setup: could not stop it; it may hold port 9090");
        }
    }
    Ok(())
}

/// cargo-fuzz, for `cargo xtask fuzz` (and the short run in `test`).
pub fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    install(
        "cargo-fuzz (libFuzzer driver for the fuzz targets; about a minute)",
        "cargo",
        &["install", "cargo-fuzz", "--locked"],
        &[],
    )
}

/// The LLVM major version of `rustc +nightly`.
fn nightly_llvm_major() -> Result<u32> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("running `rustc +nightly -vV` (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "no nightly Rust toolchain; install a dated nightly whose LLVM major Debian ships \
             (`apt-cache search llvm-.*-dev`), e.g. \
             `rustup toolchain install nightly-2026-05-19 --component rust-src`, \
             and link it as `nightly` (`rustup toolchain link nightly ...`)"
        );
    }
    parse_llvm_major(&String::from_utf8_lossy(&out.stdout))
        .context("`rustc +nightly -vV` printed no LLVM version")
}

fn parse_llvm_major(version_info: &str) -> Option<u32> {
    let version = version_info
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.trim().parse().ok()
}

fn ensure_rust_src() -> Result<()> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running `rustc +nightly --print sysroot`")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
    {
        return Ok(());
    }
    install(
        "the nightly toolchain's rust-src component",
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
        &[],
    )
}

fn ensure_llvm_dev(llvm: u32) -> Result<()> {
    let prefix = llvm_prefix(llvm);
    if prefix.join("bin/llvm-config").is_file() && has_llvm_dev(&prefix) {
        return Ok(());
    }
    require_root(&format!(
        "apt-get install -y llvm-{llvm}-dev libpolly-{llvm}-dev zlib1g-dev libzstd-dev"
    ))?;
    install("Debian's package lists", "apt-get", &["update"], &[])?;
    let packages = [
        format!("llvm-{llvm}-dev"),
        format!("libpolly-{llvm}-dev"),
        "zlib1g-dev".into(),
        "libzstd-dev".into(),
    ];
    let mut args = vec!["install", "-y"];
    args.extend(packages.iter().map(String::as_str));
    install(
        &format!("LLVM {llvm} development files (matches nightly's LLVM)"),
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
}

fn ensure_bpf_linker(llvm: u32) -> Result<()> {
    if let Some(linker) = find_in_path("bpf-linker")
        && links_llvm(&linker, llvm)
    {
        return Ok(());
    }
    let feature = format!("llvm-{llvm}");
    let prefix = llvm_prefix(llvm);
    install(
        &format!("bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)"),
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ],
        &[("LLVM_PREFIX", prefix.to_str().unwrap_or_default())],
    )?;
    if find_in_path("bpf-linker").is_none() {
        bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn llvm_prefix(llvm: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{llvm}"))
}

/// Files that only the `-dev` packages ship: the unversioned libLLVM
/// symlink and headers (llvm-N-dev), Polly's static library (libpolly-N-dev).
fn has_llvm_dev(prefix: &Path) -> bool {
    [
        "lib/libLLVM.so",
        "include/llvm/Config/llvm-config.h",
        "lib/libPolly.a",
    ]
    .iter()
    .all(|f| prefix.join(f).exists())
}

/// Whether `linker` is dynamically linked to LLVM `llvm` (bpf-linker built
/// for another LLVM cannot read nightly's bitcode).
fn links_llvm(linker: &Path, llvm: u32) -> bool {
    let Ok(out) = Command::new("ldd").arg(linker).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = format!("/usr/lib/llvm-{llvm}/lib/libLLVM");
    text.contains(&wanted) && !text.contains("not found")
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME")
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()))
    {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn require_root(by_hand: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("installing system packages needs root; as root run: {by_hand}");
    }
    Ok(())
}

fn install(what: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    println!(
        "xtask: setup: installing {what}: {program} {}",
        args.join(" ")
    );
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!(
            "installing {what} failed; run by hand: {}{program} {}",
            envs.iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            args.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let info = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                    host: x86_64-unknown-linux-gnu\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(info), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }
}
