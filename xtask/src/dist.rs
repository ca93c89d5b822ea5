//! `cargo xtask dist`: a Debian package of socktrace. The binary writes
//! its own man pages and shell completions (`socktrace __generate`, from
//! its clap definition); they, the systemd unit and the docs are staged as
//! a package tree and packed with `dpkg-deb` into
//! `target/dist/socktrace_VERSION_ARCH.deb`, whose listing is then checked.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every file the package installs, as `dpkg-deb --contents` lists it.
pub const FILES: [&str; 18] = [
    "./usr/sbin/socktrace",
    "./usr/share/man/man8/socktrace.8.gz",
    "./usr/share/man/man8/socktrace-watch.8.gz",
    "./usr/share/man/man8/socktrace-listeners.8.gz",
    "./usr/share/man/man8/socktrace-stuck.8.gz",
    "./usr/share/man/man8/socktrace-timewait.8.gz",
    "./usr/share/man/man8/socktrace-top.8.gz",
    "./usr/share/man/man8/socktrace-record.8.gz",
    "./usr/share/man/man8/socktrace-analyze.8.gz",
    "./usr/share/bash-completion/completions/socktrace",
    "./usr/share/zsh/vendor-completions/_socktrace",
    "./usr/share/fish/vendor_completions.d/socktrace.fish",
    "./lib/systemd/system/socktrace.service",
    "./usr/share/doc/socktrace/README.md.gz",
    "./usr/share/doc/socktrace/copyright",
    "./usr/share/doc/socktrace/examples/socktrace.service",
    "./usr/share/doc/socktrace/examples/k8s/socktrace.yaml",
    "./usr/share/doc/socktrace/examples/k8s/README.md",
];

/// Completion scripts as `socktrace __generate` names them, and where
/// each shell looks for them.
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "socktrace.bash",
        "usr/share/bash-completion/completions/socktrace",
    ),
    ("_socktrace", "usr/share/zsh/vendor-completions/_socktrace"),
    (
        "socktrace.fish",
        "usr/share/fish/vendor_completions.d/socktrace.fish",
    ),
];

/// Files of the repository installed as they are (`.gz`: compressed).
const FROM_REPOSITORY: [(&str, &str); 6] = [
    (
        "contrib/socktrace.service",
        "lib/systemd/system/socktrace.service",
    ),
    ("README.md", "usr/share/doc/socktrace/README.md.gz"),
    ("contrib/deb/copyright", "usr/share/doc/socktrace/copyright"),
    (
        "contrib/socktrace.service",
        "usr/share/doc/socktrace/examples/socktrace.service",
    ),
    (
        "contrib/k8s/socktrace.yaml",
        "usr/share/doc/socktrace/examples/k8s/socktrace.yaml",
    ),
    (
        "contrib/k8s/README.md",
        "usr/share/doc/socktrace/examples/k8s/README.md",
    ),
];

const DESCRIPTION: &str = "\
Description: real-time socket event tracer on eBPF
 socktrace shows every TCP state transition, bind(2) and listen(2) as it
 happens, stamped with the process that owns the socket, and one record per
 finished connection: how it opened, who closed first, whether it ended in
 TIME_WAIT or by a reset, and why it failed. Its subcommands catch
 short-lived listeners (listeners), explain TIME_WAIT churn and
 ephemeral-port pressure (timewait), serve Prometheus metrics, and record
 event streams to analyze them later.
 .
 It needs Linux 6.3+ with BTF, and root or CAP_BPF and CAP_PERFMON. The
 socktrace service (not enabled) exports TIME_WAIT metrics with only those
 two capabilities.
";

/// `cargo xtask dist`, after the release build.
pub fn run(root: &Path) -> Result<()> {
    let deb = package(
        root,
        &root.join("target/release/socktrace"),
        &root.join("target/dist"),
    )?;
    println!("xtask: dist: {}", deb.display());
    Ok(())
}

/// Packs `bin` with its docs into `out/socktrace_VERSION_ARCH.deb`.
pub fn package(root: &Path, bin: &Path, out: &Path) -> Result<PathBuf> {
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"))?;
    let work = out.join("pkg");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    // dpkg-shlibdeps wants the tree at debian/PACKAGE beside debian/control.
    let tree = work.join("debian/socktrace");
    let generated = work.join("generated");
    generate(bin, &generated)?;
    install_files(root, bin, &tree, &generated)?;
    write_control(&work, &tree, &arch)?;

    let deb = out.join(format!("socktrace_{VERSION}_{arch}.deb"));
    execute(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&tree)
            .arg(&deb)
            .stdout(Stdio::null()),
    )?;
    check(&deb, &arch)?;
    Ok(deb)
}

/// Has the binary write its man pages and completions into `generated`.
fn generate(bin: &Path, generated: &Path) -> Result<()> {
    let status = Command::new(bin)
        .arg("__generate")
        .arg(generated)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("`{} __generate` failed", bin.display());
    }
    Ok(())
}

/// Puts the package's files in `tree`: the stripped binary, the man pages
/// and completions from `generated`, and [`FROM_REPOSITORY`].
fn install_files(root: &Path, bin: &Path, tree: &Path, generated: &Path) -> Result<()> {
    let sbin = tree.join("usr/sbin/socktrace");
    install(bin, &sbin, 0o755)?;
    execute(Command::new("strip").arg("--strip-unneeded").arg(&sbin))?;
    for page in fs::read_dir(generated.join("man8")).context("reading the man pages")? {
        let page = page?.path();
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .context("a man page's name")?;
        gzip(&page, &tree.join(format!("usr/share/man/man8/{name}.gz")))?;
    }
    for (name, to) in COMPLETIONS {
        install(
            &generated.join("completions").join(name),
            &tree.join(to),
            0o644,
        )?;
    }
    for (from, to) in FROM_REPOSITORY {
        let (from, to) = (root.join(from), tree.join(to));
        if to.extension().is_some_and(|e| e == "gz") {
            gzip(&from, &to)?;
        } else {
            install(&from, &to, 0o644)?;
        }
    }
    Ok(())
}

/// Writes DEBIAN/control (dependencies from dpkg-shlibdeps, which needs
/// debian/control in `work`) and opens the tree's directories.
fn write_control(work: &Path, tree: &Path, arch: &str) -> Result<()> {
    let control = tree.join("DEBIAN/control");
    fs::create_dir_all(tree.join("DEBIAN"))?;
    fs::write(
        work.join("debian/control"),
        "Source: socktrace\n\nPackage: socktrace\nArchitecture: any\n",
    )?;
    let depends = shlib_depends(work)?;
    fs::write(
        &control,
        format!(
            "Package: socktrace\nVersion: {VERSION}\nArchitecture: {arch}\n\
             Maintainer: socktrace developers <socktrace@localhost>\n\
             Installed-Size: {}\nDepends: {depends}\nSection: net\nPriority: optional\n\
             {DESCRIPTION}",
            installed_kib(tree)?
        ),
    )?;
    set_mode(&control, 0o644)?;
    open_directories(tree)
}

/// Fails unless the package says what it is and holds every file of
/// [`FILES`], none of them empty, and nothing else.
fn check(deb: &Path, arch: &str) -> Result<()> {
    let fields = stdout_of(Command::new("dpkg-deb").arg("--field").arg(deb).args([
        "Package",
        "Version",
        "Architecture",
    ]))?;
    let expected = format!("Package: socktrace\nVersion: {VERSION}\nArchitecture: {arch}");
    if fields != expected {
        bail!("{}: control fields are {fields:?}", deb.display());
    }
    let listing = stdout_of(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let files = regular_files(&listing);
    for wanted in FILES {
        match files.iter().find(|(path, _)| path == wanted) {
            None => bail!("{}: {wanted} is missing", deb.display()),
            Some((_, 0)) => bail!("{}: {wanted} is empty", deb.display()),
            Some(_) => {}
        }
    }
    if let Some((extra, _)) = files
        .iter()
        .find(|(path, _)| !FILES.contains(&path.as_str()))
    {
        bail!("{}: {extra} is not in xtask's list of files", deb.display());
    }
    Ok(())
}

/// Regular files and their sizes, from `dpkg-deb --contents` (tar's
/// `-rw-r--r-- root/root 1234 2026-11-25 17:54 ./path` lines).
fn regular_files(listing: &str) -> Vec<(String, u64)> {
    listing
        .lines()
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [_, _, size, _, _, path] => Some((path.to_string(), size.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// What the binary links against, as Debian dependencies
/// (`libc6 (>= 2.34), libgcc-s1 (>= 4.2)`).
fn shlib_depends(work: &Path) -> Result<String> {
    let out = stdout_of(
        Command::new("dpkg-shlibdeps")
            .args(["-O", "-e", "debian/socktrace/usr/sbin/socktrace"])
            .current_dir(work)
            .stderr(Stdio::null()),
    )?;
    out.strip_prefix("shlibs:Depends=")
        .map(str::to_string)
        .with_context(|| format!("dpkg-shlibdeps printed {out:?}"))
}

/// Installed-Size: KiB of every file, rounded up, plus one per directory,
/// as dpkg-gencontrol counts.
fn installed_kib(dir: &Path) -> Result<u64> {
    let mut kib = 1;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            if entry.file_name() != "DEBIAN" {
                kib += installed_kib(&entry.path())?;
            }
        } else {
            kib += meta.len().div_ceil(1024);
        }
    }
    Ok(kib)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    create_parent(to)?;
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    set_mode(to, mode)
}

/// `gzip -9n`: no name or time inside, as Debian's tools compress.
fn gzip(from: &Path, to: &Path) -> Result<()> {
    create_parent(to)?;
    let file = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    execute(
        Command::new("gzip")
            .args(["-9n", "--stdout"])
            .arg(from)
            .stdout(file),
    )?;
    set_mode(to, 0o644)
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path.parent().context("a path with a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
}

/// Every directory of the tree 0755, whatever the umask.
fn open_directories(dir: &Path) -> Result<()> {
    set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            open_directories(&entry.path())?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn execute(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn stdout_of(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listing() {
        let listing = "drwxr-xr-x root/root         0 2026-11-25 17:54 ./usr/sbin/\n\
                       -rwxr-xr-x root/root   7641456 2026-11-25 17:54 ./usr/sbin/socktrace\n\
                       -rw-r--r-- root/root      1234 2026-11-25 17:54 ./lib/systemd/system/socktrace.service\n";
        assert_eq!(
            regular_files(listing),
            [
                ("./usr/sbin/socktrace".to_string(), 7641456),
                ("./lib/systemd/system/socktrace.service".to_string(), 1234)
            ]
        );
    }

    /// The package of the binary `cargo xtask test` built: every file in
    /// place, and each works once unpacked.
    #[test]
    fn packages_what_a_user_needs() {
        let root = crate::workspace_root();
        let bin = std::env::var_os("SOCKTRACE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/debug/socktrace"));
        assert!(
            bin.is_file(),
            "no socktrace binary at {}; run the tests with `cargo xtask test`",
            bin.display()
        );
        let out = std::env::temp_dir().join(format!("socktrace-dist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        let deb = package(&root, &bin, &out).unwrap();
        let arch = stdout_of(Command::new("dpkg").arg("--print-architecture")).unwrap();
        assert_eq!(
            deb.file_name().unwrap().to_str(),
            Some(format!("socktrace_{VERSION}_{arch}.deb").as_str())
        );
        let depends = stdout_of(
            Command::new("dpkg-deb")
                .arg("--field")
                .arg(&deb)
                .arg("Depends"),
        )
        .unwrap();
        assert!(depends.starts_with("libc6 (>= "), "{depends}");
        let info = stdout_of(Command::new("dpkg-deb").arg("--info").arg(&deb)).unwrap();
        assert!(info.contains(" Installed-Size: "), "{info}");

        let unpacked = out.join("root");
        execute(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)).unwrap();
        let version =
            stdout_of(Command::new(unpacked.join("usr/sbin/socktrace")).arg("--version")).unwrap();
        assert_eq!(version, format!("socktrace {VERSION}"));
        let page = stdout_of(
            Command::new("gzip")
                .arg("-dc")
                .arg(unpacked.join("usr/share/man/man8/socktrace.8.gz")),
        )
        .unwrap();
        assert!(page.contains(".TH socktrace 8"), "{page}");
        assert!(page.contains("socktrace\\-timewait(8)"), "{page}");
        // bash loads the completion and knows the subcommands.
        let bash = unpacked.join("usr/share/bash-completion/completions/socktrace");
        let registered = stdout_of(Command::new("bash").arg("-c").arg(format!(
            "source {} && complete -p socktrace && COMP_WORDS=(socktrace ti) && COMP_CWORD=1 \
             && _socktrace socktrace ti socktrace && echo \"${{COMPREPLY[@]}}\"",
            bash.display()
        )))
        .unwrap();
        assert!(registered.contains("-F _socktrace"), "{registered}");
        assert!(registered.ends_with("timewait"), "{registered}");
        assert_eq!(
            fs::read(unpacked.join("lib/systemd/system/socktrace.service")).unwrap(),
            fs::read(root.join("contrib/socktrace.service")).unwrap()
        );
        fs::remove_dir_all(&out).unwrap();
    }
}
