//! Debian's cloud kernel of a suite, with apt alone (see [`crate::apt`]).
//! Cached: a suite already unpacked costs no download.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::Kernel;
use crate::apt::Suite;

/// An unpacked kernel package.
pub struct Tree {
    pub vmlinuz: PathBuf,
    /// `lib/modules/VERSION` (or `usr/lib/modules/VERSION` from trixie on).
    pub modules: PathBuf,
    pub version: String,
}

/// The kernel of `kernel.suite`, fetched into `dir` unless it is there.
pub fn kernel(kernel: &Kernel, dir: &Path) -> Result<Tree> {
    let unpacked = dir.join("unpacked");
    if let Ok(tree) = find(&unpacked) {
        return Ok(tree);
    }
    println!(
        "xtask: kernel {} ({}): fetching Debian {}'s cloud kernel with apt (once; cached in {})",
        kernel.name,
        kernel.release,
        kernel.suite,
        dir.display()
    );
    let suite = Suite::new(kernel.suite, dir)?;
    let package = kernel_package(kernel, &suite)?;
    suite.unpack(&package, &unpacked)?;
    find(&unpacked)
}

/// Updates the lists and names the suite's current kernel package.
fn kernel_package(kernel: &Kernel, suite: &Suite) -> Result<String> {
    suite.update()?;
    // The metapackage names the suite's current kernel package.
    let depends = suite
        .command("apt-cache")
        .args(["depends", "linux-image-cloud-amd64"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&depends.stdout);
    let Some(package) = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.as_bytes()[12].is_ascii_digit())
    else {
        bail!(
            "apt-cache found no kernel package behind linux-image-cloud-amd64 in {}",
            kernel.suite
        );
    };
    Ok(package.to_string())
}

/// The kernel image and modules of an unpacked package.
fn find(unpacked: &Path) -> Result<Tree> {
    let vmlinuz = fs::read_dir(unpacked.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz")?;
    let version =
        vmlinuz.file_name().unwrap_or_default().to_string_lossy()["vmlinuz-".len()..].to_string();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| unpacked.join(d).join(&version))
        .find(|d| d.is_dir())
        .context("no modules directory")?;
    Ok(Tree {
        vmlinuz,
        modules,
        version,
    })
}
