//! Filesystem trees made of host binaries: the kernel matrix's guest
//! initramfs and the container image each carry binaries with the shared
//! libraries they need, at the paths the loader looks for them.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Copies `path` to the same path under `root` without debug info, with
/// every library `ldd` names for it.
pub fn copy_binary(path: &Path, root: &Path) -> Result<()> {
    install_binary(path, root, path)
}

/// Copies `path` to `at` under `root` without debug info, with every
/// library `ldd` names for it at its own path (the loader's search path
/// and the binary's interpreter are the host's).
pub fn install_binary(path: &Path, root: &Path, at: &Path) -> Result<()> {
    let dest = under(root, at);
    if dest.exists() {
        return Ok(());
    }
    fs::create_dir_all(dest.parent().unwrap_or(root))?;
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(path)
        .arg(&dest)
        .status()
        .context("running objcopy (binutils)")?;
    if !stripped.success() {
        bail!("objcopy --strip-debug {}", path.display());
    }
    for lib in libraries(path)? {
        let dest = under(root, &lib);
        if !dest.exists() {
            fs::create_dir_all(dest.parent().unwrap_or(root))?;
            fs::copy(&lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
        }
    }
    Ok(())
}

/// The shared libraries `ldd` names for `path`, the loader included.
fn libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let ldd = Command::new("ldd")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .context("running ldd")?;
    Ok(String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// `path` (absolute) under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}
