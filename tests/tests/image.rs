//! socktrace's container image (`cargo xtask image`) as the DaemonSet runs
//! it: podman loads the archive and runs it with the DaemonSet's
//! capabilities (and NET_ADMIN, which `watch` needs besides), the host's PID
//! and network namespaces, a read-only root and the host's BTF, tracefs and
//! cgroup tree mounted read-only. A connection made on the host appears with
//! its pid; a process in another container appears with that container's
//! cgroup and id.
mod common;

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use serde_json::Value;

/// The archive `cargo xtask image` writes; `cargo xtask test` builds it
/// before the tests and says where in `SOCKTRACE_IMAGE`.
fn archive() -> PathBuf {
    let path = std::env::var_os("SOCKTRACE_IMAGE").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../target/image/socktrace-{}.tar",
                env!("CARGO_PKG_VERSION")
            ))
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} not found: `cargo xtask image` builds it (`cargo xtask test` does, first)",
        path.display()
    );
    path
}

fn podman(args: &[&str]) -> Output {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("podman (Debian's podman package; `cargo xtask test` installs it)");
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Loads the archive; returns the image's name.
fn load() -> String {
    let out = podman(&[
        "load",
        "--quiet",
        "--input",
        archive().to_str().expect("UTF-8"),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    said.lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .or_else(|| {
            said.lines()
                .find_map(|l| l.strip_prefix("Loaded image(s): "))
        })
        .unwrap_or_else(|| panic!("no image named in {said:?}"))
        .trim()
        .to_string()
}

/// `podman run` as the DaemonSet runs socktrace (contrib/k8s/socktrace.yaml),
/// named `name`, with podman's `flags` and seccomp `profile`.
fn daemonset_run(name: &str, flags: &[&str], profile: &Path, image: &str) -> Command {
    let mut command = Command::new("podman");
    command.args(["run", "--rm", "--name", name]);
    command
        .args(flags)
        .args(DAEMONSET)
        .arg(format!("--security-opt=seccomp={}", profile.display()))
        .arg(image)
        .args(["--nice", "0"]);
    command
}

/// The seccomp profile of the DaemonSet's `RuntimeDefault`, written in
/// `dir`: podman's default, which lets bpf(2) and perf_event_open(2) to
/// CAP_SYS_ADMIN only (Debian 12's), with containerd's and CRI-O's rule
/// besides: bpf(2) to CAP_BPF, perf_event_open(2) to CAP_PERFMON.
fn runtime_default(dir: &Path) -> PathBuf {
    const PODMAN: &str = "/usr/share/containers/seccomp.json";
    let text = std::fs::read_to_string(PODMAN).unwrap_or_else(|e| panic!("{PODMAN}: {e}"));
    let mut profile: Value = serde_json::from_str(&text).expect("podman's profile");
    let rules = profile["syscalls"].as_array_mut().expect("syscalls");
    let by_cap = [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")];
    // The rule refusing them to the rest goes: the default action does.
    for rule in rules.iter_mut().filter(|r| r["action"] == "SCMP_ACT_ERRNO") {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| !by_cap.iter().any(|(call, _)| n == call));
        }
    }
    for (call, cap) in by_cap {
        rules.push(serde_json::json!({
            "names": [call],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "includes": {"caps": [cap]},
            "excludes": {},
        }));
    }
    let path = dir.join("seccomp.json");
    std::fs::write(&path, profile.to_string()).expect("writing the profile");
    path
}

/// The DaemonSet's container, in podman's words.
const DAEMONSET: [&str; 16] = [
    "--pid=host",
    "--network=host",
    "--user=0",
    "--read-only",
    "--security-opt=no-new-privileges",
    "--cap-drop=ALL",
    "--cap-add=BPF",
    "--cap-add=PERFMON",
    // `watch` asks sock_diag about the sockets and attaches cgroup hooks.
    "--cap-add=NET_ADMIN",
    "--volume=/sys/kernel/btf:/sys/kernel/btf:ro",
    "--volume=/sys/kernel/tracing:/sys/kernel/tracing:ro",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--pull=never",
    // crun refuses a host whose cgroups are v1 with v2 beside (this one).
    "--runtime=runc",
    // The runtime sets the limits after dropping every capability, and
    // podman's defaults for root (a million files) are beyond what may be
    // set then: a DaemonSet's runtime sets none.
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
];

/// A container removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.0])
            .output();
    }
}

/// The host's tracefs, which the DaemonSet mounts from the node (where
/// systemd mounts it at boot).
fn mount_tracefs() {
    if std::path::Path::new("/sys/kernel/tracing/events").is_dir() {
        return;
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()
        .expect("mount");
    assert!(status.success(), "mounting tracefs");
}

#[test]
fn the_image_runs_as_the_daemonset_and_sees_the_host_and_other_containers() {
    require_root();
    mount_tracefs();
    let image = load();
    let dir = scratch_dir("image");
    let profile = runtime_default(&dir);
    let name = unique_name("image");
    let _cleanup = Container(name.clone());
    let mut command = daemonset_run(&name, &[], &profile, &image);
    command.arg("--json");
    let mut tracer = Tracer::spawn(command);

    // A connection on the host, by this test.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = u64::from(listener.local_addr().expect("addr").port());
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let sport = u64::from(client.local_addr().expect("addr").port());
    let pid = u64::from(std::process::id());
    let events = tracer.wait_for("the host's connection", |ev| {
        of_type(ev, "state").any(|e| e["sport"] == sport && e["dport"] == port)
    });
    let connected = of_type(events, "state")
        .find(|e| e["sport"] == sport && e["dport"] == port)
        .expect("found above");
    assert_eq!(connected["pid"], pid, "{connected}");
    drop(client);

    // Another container: socktrace again, whose metrics listener is a bind
    // and a listen of a process in that container.
    let other = unique_name("image-other");
    let _other_cleanup = Container(other.clone());
    let metrics_port = free_port("127.0.0.1");
    let started = daemonset_run(&other, &["--detach"], &profile, &image)
        .args([
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
            "--duration",
            "60",
        ])
        .output()
        .expect("podman");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let id = String::from_utf8_lossy(&started.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "a container id: {id:?}");
    let inspect = podman(&["inspect", "--format", "{{.State.Pid}}", &id]);
    let other_pid: u64 = String::from_utf8_lossy(&inspect.stdout)
        .trim()
        .parse()
        .expect("a pid");
    // (free_port listened on it too, briefly: that one is ours.)
    let theirs = |e: &&Value| e["port"] == metrics_port && e["pid"] == other_pid;
    let events = tracer.wait_for("the other container's listen", |ev| {
        of_type(ev, "listen").any(|e| theirs(&e))
    });
    let listen: &Value = of_type(events, "listen").find(theirs).expect("found above");
    assert_eq!(listen["container"], id.as_str(), "{listen}");
    let cgroup = listen["cgroup"].as_str().unwrap_or_default();
    assert!(cgroup.contains(&format!("libpod-{id}")), "{listen}");
    let done = tracer.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(done.status.success(), "{}", done.stderr);
}
