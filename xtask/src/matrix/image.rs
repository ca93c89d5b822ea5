//! The guest's initramfs: busybox for a shell, the few tools the tests
//! call with the libraries `ldd` names, the sock_diag and veth modules of
//! the guest's kernel, and the real binaries at their host paths (so the
//! paths compiled into the tests hold), without debug info.
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{Kernel, Runs, fetch::Tree, is_test};
use crate::rootfs::{copy_binary, under};

/// busybox applets the init script and the tests use.
const APPLETS: [&str; 17] = [
    "sed", "mount", "umount", "insmod", "poweroff", "mkdir", "cat", "sleep", "echo", "kill",
    "grep", "ls", "rm", "env", "true", "false", "timeout",
];

/// Host tools the tests run (they need more than busybox's versions).
/// dash is the shell: busybox's runs its own applets before PATH, so a
/// test's `sh -c 'unshare --cgroup ...'` would get busybox's unshare.
const TOOLS: [&str; 6] = ["ip", "ss", "unshare", "nsenter", "setpriv", "dash"];

/// How many times a host's patience the tests give a guest (qemu's TCG:
/// socktrace attaches in 3-9 s there, 0.2 s on the host).
const GUEST_SLOWDOWN: u32 = 6;

/// Kernel modules, in load order.
const MODULES: [&str; 4] = ["inet_diag", "tcp_diag", "udp_diag", "veth"];

/// Builds `dir/initramfs.cpio` for `kernel` (unpacked in `tree`);
/// `workspace`: the source tree the tests were built from; `bins`: the
/// test and helper binaries by name (see `super::test_binaries`); `runs`:
/// which tests the guest runs, how many times.
pub fn build(
    kernel: &Kernel,
    tree: &Tree,
    dir: &Path,
    workspace: &Path,
    socktrace: &Path,
    bins: &BTreeMap<String, PathBuf>,
    runs: &Runs,
) -> Result<PathBuf> {
    let root = dir.join("root");
    skeleton(&root)?;
    copy_binary(socktrace, &root)?;
    let tests = copy_tests(&root, workspace, bins)?;
    write_tests_env(&root, tests, kernel, socktrace, bins, runs)?;
    copy_modules(&root, tree)?;
    write_etc_and_init(&root)?;
    pack(&root, &dir.join("initramfs.cpio"))
}

/// A fresh `root` with its directories, busybox and its applets, and the
/// tools the guest runs.
fn skeleton(root: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(root);
    for sub in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "modules", "var",
    ] {
        fs::create_dir_all(root.join(sub))?;
    }
    symlink("/run", root.join("var/run"))?;
    copy_binary(Path::new("/bin/busybox"), root)?;
    for applet in APPLETS {
        symlink("busybox", root.join("bin").join(applet))?;
    }
    for tool in TOOLS {
        copy_binary(&which(tool)?, root)?;
    }
    symlink(which("dash")?, root.join("bin/sh"))?;
    Ok(())
}

/// Copies the binaries and the tests' data into `root`; returns the
/// tests.list lines (one `NAME PATH` per test binary).
fn copy_tests(root: &Path, workspace: &Path, bins: &BTreeMap<String, PathBuf>) -> Result<String> {
    let mut tests = String::new();
    for (name, path) in bins {
        copy_binary(path, root)?;
        if is_test(name) {
            tests.push_str(&format!("{name} {}\n", path.display()));
        }
    }
    for data in super::TEST_DATA {
        let from = workspace.join(data);
        copy_tree(&from, &under(root, &from))?;
    }
    Ok(tests)
}

/// Writes tests.list and tests.env: what init.sh runs, and how.
fn write_tests_env(
    root: &Path,
    tests: String,
    kernel: &Kernel,
    socktrace: &Path,
    bins: &BTreeMap<String, PathBuf>,
    runs: &Runs,
) -> Result<()> {
    let mut skips = String::new();
    for test in super::HOST_ONLY {
        skips.push_str(&format!(" --skip {test}"));
    }
    fs::write(root.join("tests.list"), tests)?;
    fs::write(
        root.join("tests.env"),
        format!(
            "export SOCKTRACE_BIN={} SOCKOPS_BIN={} SOCKTRACE_TEST_SLOWDOWN={GUEST_SLOWDOWN} \
             SOCKTRACE_TEST_KERNEL_LACKS={}\nSKIP='{}'\nFILTER='{}'\nTIMES={}\n",
            socktrace.display(),
            bins.get("sockops")
                .context("cargo built no sockops helper")?
                .display(),
            kernel.lacks.join(","),
            skips.trim(),
            runs.test.as_deref().unwrap_or_default(),
            runs.times
        ),
    )?;
    Ok(())
}

/// Copies (uncompressed) the kernel modules the tests load, and lists them
/// in modules.list.
fn copy_modules(root: &Path, tree: &Tree) -> Result<()> {
    for module in MODULES {
        let found = find_module(&tree.modules, module)
            .with_context(|| format!("kernel {} has no module {module}", tree.version))?;
        let out = root.join("modules").join(format!("{module}.ko"));
        if found.extension().is_some_and(|x| x == "xz") {
            let plain = Command::new("xz").arg("-dc").arg(&found).output()?;
            if !plain.status.success() {
                bail!("xz -d {}", found.display());
            }
            fs::write(&out, plain.stdout)?;
        } else {
            fs::copy(&found, &out)?;
        }
    }
    fs::write(root.join("modules.list"), MODULES.join("\n") + "\n")?;
    Ok(())
}

/// The users and groups the tests switch to, and init.sh as /init.
fn write_etc_and_init(root: &Path) -> Result<()> {
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let init = root.join("init");
    fs::write(&init, include_str!("init.sh"))?;
    set_mode(&init, 0o755)
}

/// Copies the files of directory `from` (and its subdirectories) to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let dest = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn which(tool: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("{tool} is not installed on this host"))
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path, name) {
                return Some(found);
            }
        } else if let Some(file) = path.file_name().and_then(|f| f.to_str())
            && (file == format!("{name}.ko") || file == format!("{name}.ko.xz"))
        {
            return Some(path);
        }
    }
    None
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `root` as an uncompressed newc cpio archive (the kernel unpacks it
/// without a decompressor, which under TCG saves seconds).
fn pack(root: &Path, out: &Path) -> Result<PathBuf> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc --quiet > '{}'",
            out.display()
        ))
        .current_dir(root)
        .status()
        .context("running cpio")?;
    if !status.success() {
        bail!("cpio failed");
    }
    Ok(out.to_path_buf())
}
