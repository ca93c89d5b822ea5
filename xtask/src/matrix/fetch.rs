//! Debian's cloud kernel of a suite, with apt alone: a private sources
//! list, package lists and cache per suite (the host's apt state is not
//! touched), `apt-get download`, `dpkg-deb -x`. Cached: a suite already
//! unpacked costs no download.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::Kernel;

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
    let sources = sources(kernel, dir)?;
    let package = kernel_package(kernel, dir, &sources)?;
    download(dir, &sources, &package, &unpacked)?;
    find(&unpacked)
}

/// apt's directories under `dir`, and a sources.list naming only the
/// kernel's suite; returns its path.
fn sources(kernel: &Kernel, dir: &Path) -> Result<PathBuf> {
    for sub in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let sources = dir.join("sources.list");
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    fs::write(
        &sources,
        format!(
            "deb [signed-by={keyring}] http://deb.debian.org/debian {s} main\n\
             deb [signed-by={keyring}] http://deb.debian.org/debian-security {s}-security main\n",
            s = kernel.suite
        ),
    )?;
    Ok(sources)
}

/// `tool` (apt-get, apt-cache) working in `dir` with `sources` alone,
/// leaving the host's apt state alone.
fn apt(tool: &str, dir: &Path, sources: &Path) -> Command {
    let mut command = Command::new(tool);
    command.current_dir(dir).args([
        "-o".to_string(),
        format!("Dir::Etc::SourceList={}", sources.display()),
        "-o".to_string(),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        "-o".to_string(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        "-o".to_string(),
        format!("Dir::Cache={}", dir.join("cache").display()),
        "-o".to_string(),
        "Dir::State::status=/dev/null".to_string(),
        "-o".to_string(),
        "APT::Sandbox::User=root".to_string(),
    ]);
    command
}

/// Updates the lists and names the suite's current kernel package.
fn kernel_package(kernel: &Kernel, dir: &Path, sources: &Path) -> Result<String> {
    run(
        apt("apt-get", dir, sources).args(["-q", "update"]),
        "apt-get update",
    )?;
    // The metapackage names the suite's current kernel package.
    let depends = apt("apt-cache", dir, sources)
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

/// Downloads `package` and unpacks it into `unpacked` (the .deb is not
/// kept).
fn download(dir: &Path, sources: &Path, package: &str, unpacked: &Path) -> Result<()> {
    run(
        apt("apt-get", dir, sources).args(["-q", "download", package]),
        "apt-get download",
    )?;
    let deb = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let _ = fs::remove_dir_all(unpacked);
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(unpacked),
        "dpkg-deb -x",
    )?;
    fs::remove_file(&deb)?;
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
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
