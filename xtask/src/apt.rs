//! Debian packages of any suite, with apt alone: a private sources list,
//! package lists and cache in a directory of ours (the host's apt state is
//! not touched), `apt-get download`, `dpkg-deb -x`. The kernel matrix
//! fetches its kernels this way, `test` a newer Prometheus.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// apt working in `dir` with a sources list naming one suite.
pub struct Suite {
    dir: PathBuf,
    sources: PathBuf,
}

impl Suite {
    /// apt's directories under `dir`, and a sources.list naming only
    /// `suite` (and its security updates).
    pub fn new(suite: &str, dir: &Path) -> Result<Suite> {
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let sources = dir.join("sources.list");
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        fs::write(
            &sources,
            format!(
                "deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n\
                 deb [signed-by={keyring}] http://deb.debian.org/debian-security {suite}-security main\n"
            ),
        )?;
        Ok(Suite {
            dir: dir.to_path_buf(),
            sources,
        })
    }

    /// `tool` (apt-get, apt-cache) with this suite alone.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command.current_dir(&self.dir).args([
            "-o".to_string(),
            format!("Dir::Etc::SourceList={}", self.sources.display()),
            "-o".to_string(),
            "Dir::Etc::SourceParts=/dev/null".to_string(),
            "-o".to_string(),
            format!("Dir::State::Lists={}", self.dir.join("lists").display()),
            "-o".to_string(),
            format!("Dir::Cache={}", self.dir.join("cache").display()),
            "-o".to_string(),
            "Dir::State::status=/dev/null".to_string(),
            "-o".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ]);
        command
    }

    /// Updates the suite's package lists.
    pub fn update(&self) -> Result<()> {
        run(
            self.command("apt-get").args(["-q", "update"]),
            "apt-get update",
        )
    }

    /// Downloads `package` and unpacks it into `unpacked` (the .deb is not
    /// kept).
    pub fn unpack(&self, package: &str, unpacked: &Path) -> Result<()> {
        run(
            self.command("apt-get").args(["-q", "download", package]),
            "apt-get download",
        )?;
        let deb = fs::read_dir(&self.dir)?
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
