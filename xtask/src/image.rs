//! `cargo xtask image`: socktrace's container image, FROM scratch. The
//! release binary and the libraries `ldd` names for it are staged as the
//! image's only layer; podman builds it from contrib/container/Containerfile
//! (no base image is pulled; `--timestamp 0`, so one binary makes one image)
//! and saves it as an OCI archive, `target/image/socktrace-VERSION.tar`,
//! which `podman load` and `docker load` read.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::rootfs::install_binary;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The image's full name: what the DaemonSet's `socktrace:VERSION`
/// (contrib/k8s/socktrace.yaml) means to a container runtime.
fn name() -> String {
    format!("docker.io/library/socktrace:{VERSION}")
}

/// Where the binary is in the image (the Containerfile's entry point).
const BINARY: &str = "/usr/sbin/socktrace";

/// Builds the image from the release binary; returns the archive's path.
pub fn run(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/image");
    let context = dir.join("context");
    if context.exists() {
        fs::remove_dir_all(&context)?;
    }
    let rootfs = context.join("rootfs");
    install_binary(
        &root.join("target/release/socktrace"),
        &rootfs,
        Path::new(BINARY),
    )?;
    let containerfile = root.join("contrib/container/Containerfile");
    let tag = name();
    println!("xtask: image: podman build {tag} (FROM scratch)");
    podman(&[
        "build",
        "--quiet",
        "--timestamp",
        "0",
        "--label",
        &format!("org.opencontainers.image.version={VERSION}"),
        "--label",
        "org.opencontainers.image.title=socktrace",
        "--tag",
        &tag,
        "--file",
        path(&containerfile)?,
        path(&context)?,
    ])?;
    let archive = dir.join(format!("socktrace-{VERSION}.tar"));
    if archive.exists() {
        fs::remove_file(&archive)?;
    }
    podman(&[
        "save",
        "--quiet",
        "--format",
        "oci-archive",
        "--output",
        path(&archive)?,
        &tag,
    ])?;
    let size = fs::metadata(&archive)?.len();
    println!(
        "xtask: image: {} ({:.1} MB; `podman load -i` or `docker load -i` it)",
        archive.display(),
        size as f64 / 1e6
    );
    Ok(archive)
}

fn podman(args: &[&str]) -> Result<()> {
    // Quiet: `podman build --quiet` still prints the image's id.
    let status = Command::new("podman")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("running podman (Debian's podman package)")?;
    if !status.success() {
        bail!("`podman {}` failed", args.join(" "));
    }
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}
