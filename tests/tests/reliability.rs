//! Faults and least privilege, on the real kernel: capabilities given up
//! once attached, nothing left attached after SIGKILL, two instances side
//! by side, and missing kernel features met with one line (or a degraded
//! run saying what is off).
mod common;

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
};

use common::*;
use serde_json::Value;

/// `Name:\tvalue` from /proc/PID/status.
fn status(pid: u32, name: &str) -> String {
    status_field(
        &std::path::PathBuf::from(format!("/proc/{pid}/status")),
        name,
    )
}

/// One loopback connection to a listener of this process on `port`.
fn connect_once(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listening");
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    drop((client, server));
}

/// Waits until `tracer` shows the client's SYN_SENT -> ESTABLISHED on `port`.
fn sees_connection(tracer: &mut Tracer, port: u16) {
    tracer.wait_for("the connection", |ev| {
        of_type(ev, "state").any(|e| e["dport"] == port && e["new_state"] == "ESTABLISHED")
    });
}

#[test]
fn every_capability_is_given_up_once_attached() {
    for user in [None, Some("nobody")] {
        let port = free_port("127.0.0.1");
        let p = port.to_string();
        let mut args = vec!["--port", p.as_str()];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        let mut tracer = Tracer::start(&args);
        let pid = tracer.pid();
        assert_unprivileged(pid, &format!("watch as {user:?}"));
        if user.is_some() {
            assert!(
                status(pid, "Uid").starts_with("65534"),
                "{}",
                status(pid, "Uid")
            );
        }
        // It still works: events arrive, and the summary at the end.
        connect_once(port);
        sees_connection(&mut tracer, port);
        let done = tracer.stop();
        assert!(done.status.success(), "{}", done.stderr);
        assert_eq!(of_type(&done.events, "summary").count(), 1);
    }
    let out = Command::new(socktrace_bin())
        .args(["--user", "no-such-user-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "socktrace: --user: no user named no-such-user-here\n"
    );
}

/// Every live mode, each thread of it (`top`'s, under tmux, is in
/// top.rs), with the metrics server running and metrics pushed (to a
/// name, so the HTTP client's resolver thread starts; nothing listens):
/// the threads checked once attached and again after a second of work,
/// when every thread the mode starts has started.
#[test]
fn every_mode_gives_up_every_capability_on_every_thread() {
    let recording = std::env::temp_dir().join(unique_name("caps-record"));
    let recording_arg = recording.display().to_string();
    let modes: [&[&str]; 4] = [
        &["watch", "--json"],
        &["listeners", "--json", "--interval", "0.2"],
        &["timewait", "--json", "--interval", "0.2"],
        &["record", &recording_arg],
    ];
    for mode in modes {
        let port = free_port("127.0.0.1").to_string();
        let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let otlp = format!("http://localhost:{}/v1/metrics", free_port("127.0.0.1"));
        let mut args = mode.to_vec();
        args.extend(["--port", &port, "--metrics", &metrics]);
        args.extend(["--otlp-metrics", &otlp, "--otlp-interval", "0.2"]);
        let tracer = Tracer::command(&args);
        let what = format!("{mode:?}");
        assert_unprivileged(tracer.pid(), &what);
        connect_once(port.parse().unwrap());
        let _ = std::net::TcpStream::connect(&metrics);
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert_unprivileged(tracer.pid(), &what);
        let done = tracer.stop();
        assert!(done.status.success(), "{what}: {}", done.stderr);
    }
    std::fs::remove_file(&recording).expect("the recording");
}

/// BPF program ids the process holds open (from /proc/PID/fdinfo).
fn prog_ids(pid: u32) -> Vec<u32> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo");
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// Whether the kernel still has a BPF program with this id.
fn prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // union bpf_attr for BPF_PROG_GET_FD_BY_ID: { prog_id, next_id, open_flags }.
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: bpf(2) reads `attr` (zero-padded) and returns an fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: closing the fd we were just given.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

#[test]
fn sigkill_leaves_nothing_attached_and_a_new_instance_starts_at_once() {
    let tracer = Tracer::start(&[]);
    let ids = prog_ids(tracer.pid());
    assert!(ids.len() >= 10, "expected our programs' fds, got {ids:?}");
    assert!(ids.iter().all(|&id| prog_exists(id)));
    let done = tracer.signal(libc::SIGKILL);
    assert_eq!(done.status.code(), None, "killed by a signal");
    // The programs went with the last fd: nothing pinned, nothing left.
    for id in &ids {
        let deadline = std::time::Instant::now() + patience();
        while prog_exists(*id) {
            assert!(
                std::time::Instant::now() < deadline,
                "program {id} is still loaded"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let port = free_port("127.0.0.1");
    let mut again = Tracer::start(&["--port", &port.to_string()]);
    connect_once(port);
    sees_connection(&mut again, port);
}

#[test]
fn two_instances_at_once_both_see_everything() {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut first = Tracer::start(&["--port", &p]);
    let mut second = Tracer::start(&["--port", &p]);
    connect_once(port);
    sees_connection(&mut first, port);
    sees_connection(&mut second, port);
    let transitions = |events: &[Value]| -> Vec<String> {
        of_type(events, "state")
            .map(|e| format!("{}:{}>{}", e["sport"], e["old_state"], e["new_state"]))
            .collect()
    };
    let (a, b) = (first.stop(), second.stop());
    assert!(a.status.success() && b.status.success());
    assert_eq!(transitions(&a.events), transitions(&b.events));
    assert!(
        transitions(&a.events).len() >= 10,
        "{:?}",
        transitions(&a.events)
    );
}

#[test]
fn a_full_bound_socket_table_is_counted() {
    use std::{
        io::{BufRead, BufReader},
        process::Stdio,
    };
    require_root();
    // The kernel's table of bound sockets it follows to their release
    // (`BOUND`), and how many binds go beyond it.
    const TABLE: usize = 65536;
    const BEYOND: usize = 100;
    // Four processes (one may not hold that many descriptors), each on
    // its own addresses, holding their sockets at once.
    const PROCESSES: usize = 4;
    let each = (TABLE + BEYOND) / PROCESSES;
    assert_eq!(each * PROCESSES, TABLE + BEYOND);
    let mut ops: Vec<Op> = (0..PROCESSES)
        .map(|k| Op::start(&["bind-many", &each.to_string(), &(1 + 2 * k).to_string()]))
        .collect();
    for op in &ops {
        let files = op.report["files"].as_u64().unwrap() as usize;
        assert!(files > each + 16, "a process may open only {files} files");
    }
    // Events to a file: 131k lines, none dropped by a slow pipe reader.
    let events = std::env::temp_dir().join(unique_name("bound"));
    let mut command = Command::new(socktrace_bin());
    command.args(["--json", "--udp"]);
    for op in &ops {
        command.args(["--pid", &op.pid().to_string()]);
    }
    let mut tracer = command
        .stdout(std::fs::File::create(&events).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(tracer.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("attached in") {
        assert_ne!(stderr.read_line(&mut said).unwrap(), 0, "{said}");
    }
    for op in &mut ops {
        op.proceed();
        assert_eq!(op.next_report()["bound"], each);
    }
    for mut op in ops {
        op.proceed();
        op.wait();
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    assert!(tracer.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    said.push_str(&rest);
    let lines = std::fs::read_to_string(&events).unwrap();
    std::fs::remove_file(&events).unwrap();
    let events = records(&lines);
    let binds = of_type(&events, "bind").filter(|e| e["errno"] == 0);
    assert_eq!(binds.count(), TABLE + BEYOND, "{said}");
    assert_eq!(of_type(&events, "release").count(), TABLE, "{said}");
    let summary = of_type(&events, "summary").next().expect("summary");
    assert_eq!(summary["lost"]["bound_full"], BEYOND, "{summary}");
    assert!(
        said.contains(&format!("{BEYOND} bound sockets whose end is not followed")),
        "{said}"
    );
}

/// `socktrace ARGS` in a private mount namespace after `setup` (shell
/// commands), so the host's mounts stay as they are.
fn mount_namespace_command(setup: &str, args: &str) -> Command {
    let bin = socktrace_bin();
    let script = format!("{setup} && exec {} {args}", bin.display());
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    command
}

fn in_mount_namespace(setup: &str, args: &str) -> std::process::Output {
    mount_namespace_command(setup, args)
        .output()
        .expect("running unshare (util-linux)")
}

/// A copy of the kernel's BTF in which each of `names` is renamed (its
/// last letter changed), as a kernel without that type or field looks.
fn kernel_btf_without(names: &[&str]) -> std::path::PathBuf {
    let renamed: Vec<(&str, String)> = names
        .iter()
        .map(|name| (*name, format!("{}X", &name[..name.len() - 1])))
        .collect();
    kernel_btf_renamed(&renamed)
}

/// A copy of the kernel's BTF in which each name `from` (there once) reads
/// `to` (no longer), in order.
fn kernel_btf_renamed(renames: &[(&str, impl AsRef<str>)]) -> std::path::PathBuf {
    let mut btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("reading the kernel's BTF");
    for (from, to) in renames {
        let to = to.as_ref();
        assert!(to.len() <= from.len(), "{to} is longer than {from}");
        let needle = [b"\0", from.as_bytes(), b"\0"].concat();
        let found: Vec<usize> = btf
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle.as_slice())
            .map(|(at, _)| at)
            .collect();
        assert_eq!(found.len(), 1, "{from} is not once in the kernel's strings");
        let at = found[0] + 1;
        btf[at..at + from.len()].fill(0);
        btf[at..at + to.len()].copy_from_slice(to.as_bytes());
    }
    let path = std::env::temp_dir().join(unique_name("btf"));
    std::fs::write(&path, btf).expect("writing the BTF copy");
    path
}

#[test]
fn a_program_the_kernel_refuses_is_one_line_naming_its_log() {
    use std::os::unix::fs::PermissionsExt as _;
    require_root();
    // socktrace finds its state program's tracepoint where the kernel has
    // tcp_retransmit_synack's, of two arguments, not three: the verifier
    // refuses the program (it reads the third), as an older kernel refuses
    // a helper.
    let btf = kernel_btf_renamed(&[
        (
            "btf_trace_inet_sock_set_state",
            "btf_trace_inet_sock_set_statX",
        ),
        (
            "btf_trace_tcp_retransmit_synack",
            "btf_trace_inet_sock_set_state",
        ),
    ]);
    let bind = format!("mount --bind {} /sys/kernel/btf/vmlinux", btf.display());
    let out = in_mount_namespace(&bind, "--duration 1");
    let verbose = in_mount_namespace(&bind, "--duration 1 --verbose");
    std::fs::remove_file(&btf).expect("removing the BTF copy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The one line (degraded lines are said once attached: none here).
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("socktrace: degraded: "))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    let line = ours[0];
    assert!(
        line.starts_with("socktrace: program inet_sock_set_state: refused by the kernel ("),
        "{line}"
    );
    let (_, log) = line
        .rsplit_once("; its log is in ")
        .expect("the log's path");
    let meta = std::fs::metadata(log).expect("the log file");
    let text = std::fs::read_to_string(log).expect("the log");
    std::fs::remove_file(log).expect("removing the log");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The verifier's reason, in that line and in the log.
    let reason = line
        .split_once("): ")
        .and_then(|(_, rest)| rest.split_once("; its log"))
        .map(|(reason, _)| reason)
        .expect("the verifier's reason");
    assert!(text.contains(reason), "{reason:?} not in {text}");
    // The whole log: the instructions and the statistics after the reason.
    assert!(text.contains("processed "), "{text}");
    // --verbose: the log on stderr instead, and no file.
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert_eq!(verbose.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    assert!(stderr.lines().count() > text.lines().count(), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .ends_with("; printed above"),
        "{stderr}"
    );
}

#[test]
fn missing_optional_kernel_features_run_degraded_and_say_which() {
    require_root();
    // A kernel without the tcp_send_reset tracepoint and without
    // tcp_sock::bytes_acked, as socktrace sees it.
    let btf = kernel_btf_without(&["btf_trace_tcp_send_reset", "bytes_acked"]);
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::spawn(mount_namespace_command(
        &format!("mount --bind {} /sys/kernel/btf/vmlinux", btf.display()),
        &format!("--json --port {port}"),
    ));
    connect_once(port);
    sees_connection(&mut tracer, port);
    let done = tracer.stop();
    std::fs::remove_file(&btf).expect("removing the BTF copy");
    assert!(done.status.success(), "{}", done.stderr);
    // Without the tracepoint, the reason its resets lack is not said.
    let degraded = degraded_beyond_the_kernel_without(&done.stderr, &["reset_reason"]);
    assert_eq!(degraded.len(), 2, "{}", done.stderr);
    assert!(degraded.iter().any(|l| l.starts_with("no byte counts: ")));
    assert!(
        degraded
            .iter()
            .any(|l| l.starts_with("resets sent are not reported: "))
    );
}

#[test]
fn missing_kernel_btf_is_one_line() {
    require_root();
    let out = in_mount_namespace(
        "mount --bind /dev/null /sys/kernel/btf/vmlinux",
        "--duration 1",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("socktrace: ") && stderr.contains("BTF"),
        "{stderr}"
    );
}

#[test]
fn without_cgroup_v2_it_runs_degraded_and_says_so() {
    require_root();
    let unmount = format!("umount -l {}", cgroup_v2_root().display());
    let out = in_mount_namespace(&unmount, "--duration 0.5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The two cgroup hooks say they are off, and why; and the third where
    // the kernel has them give accepted connections their socket ids.
    let degraded = degraded_beyond_the_kernel(&stderr);
    assert!(
        degraded
            .iter()
            .all(|l| l.ends_with(": cgroup v2 is not mounted")),
        "{stderr}"
    );
    assert_eq!(
        degraded.len(),
        2 + usize::from(kernel_lacks("cookie")),
        "{stderr}"
    );
}

#[test]
fn unmounted_tracefs_is_mounted_and_said() {
    require_root();
    let out = in_mount_namespace("umount -l /sys/kernel/tracing", "--duration 0.5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("socktrace: mounted tracefs at /sys/kernel/tracing"),
        "{stderr}"
    );
}

/// A child killed when dropped (a failed assertion leaves nothing running).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loopback churn on `port` that nobody reads the events of: 10000
/// connections, ~100k events, tens of MB of JSON lines.
fn churn_unread(port: u16) {
    let churn = Command::new(env!("CARGO_BIN_EXE_churn"))
        .args([
            "--threads",
            "2",
            "--addrs",
            "8",
            "--port",
            &port.to_string(),
        ])
        .args(["--connections", "10000"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(churn.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
}

/// The number before `suffix` in `line`, if `suffix` is there.
fn number_before(line: &str, suffix: &str) -> Option<u64> {
    let (before, _) = line.split_once(suffix)?;
    before.rsplit([' ', '(']).next()?.parse().ok()
}

/// Checks, from a `--json` run's summary (its line on stderr), that the
/// lines produced (every event, close and loss record, and the `summary`
/// line) are the `received` ones and those it reported dropped (some).
fn assert_every_line_accounted_for(received: u64, summary: &str) {
    let events = number_before(summary, " events (state ").expect("events");
    let closes = number_before(summary, " connections closed").expect("closes");
    let losses = number_before(summary, " loss records").unwrap_or(0);
    let dropped = number_before(summary, " output lines dropped").unwrap_or(0);
    assert!(dropped > 0, "{summary}");
    assert_eq!(
        received + dropped,
        events + closes + losses + 1,
        "received {received}; {summary}"
    );
}

/// The JSON lines in `stream`, each whole and valid; `other(line)` is
/// called with every line that is not one (and must accept it).
fn json_lines(stream: &[u8], mut other: impl FnMut(&str)) -> u64 {
    let text = std::str::from_utf8(stream).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the stream ends in a cut line"
    );
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('{') {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("a cut or glued line ({e}): {line}"));
            n += 1;
        } else {
            other(line);
        }
    }
    n
}

#[test]
fn a_reader_that_stops_reading_costs_lines_not_events() {
    use std::{
        io::{BufRead, BufReader, Read},
        process::Stdio,
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };
    require_root();
    let port = free_port("0.0.0.0");
    let mut running = Running(
        Command::new(socktrace_bin())
            .args(["--json", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut running.0;
    let stderr = Arc::new(Mutex::new(String::new()));
    let log = Arc::clone(&stderr);
    let pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let wait_for = |what: &str, needle: &str| {
        let deadline = Instant::now() + 2 * patience();
        while !stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {what}: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("attach", "attached in");
    churn_unread(port);
    // Now read: socktrace says what it dropped.
    let mut out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
        sink
    });
    wait_for("report of dropped lines", "the output reader fell behind:");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + patience();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "socktrace did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let got = drain.join().unwrap();
    assert!(got.len() > 1 << 20);
    reader.join().unwrap();
    let log = stderr.lock().unwrap().clone();
    let summary = log.lines().last().unwrap();
    // The kernel's ring was drained all along: nothing lost there.
    assert!(summary.contains("lost 0 (ring buffer full)"), "{log}");
    // Every line is received whole, or counted dropped.
    let received = json_lines(&got, |line| panic!("not a JSON line: {line}"));
    assert_every_line_accounted_for(received, summary);
}

#[test]
fn stderr_down_a_slow_shared_pipe_loses_no_line() {
    use std::{
        io::{BufRead, BufReader, Read},
        process::Stdio,
        time::{Duration, Instant},
    };
    require_root();
    // `socktrace --json 2>&1 | slow`, as under systemd: one pipe.
    let port = free_port("0.0.0.0");
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The write end's open file description, as socktrace's stdout and
    // stderr share it.
    let description = writer.try_clone().expect("pipe");
    let mut running = Running(
        Command::new(socktrace_bin())
            .args(["--json", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("pipe"))
            .stderr(writer)
            .spawn()
            .unwrap(),
    );
    let child = &mut running.0;
    let mut stream = BufReader::new(reader);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("attached in") {
        let n = stream.read_until(b'\n', &mut got).unwrap();
        assert_ne!(n, 0, "socktrace exited before attaching");
    }
    // Its stdout does not block, yet stderr must: the shared flags stay.
    // SAFETY: F_GETFL on a descriptor we own.
    let flags =
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&description), libc::F_GETFL) };
    assert_eq!(
        flags & libc::O_NONBLOCK,
        0,
        "O_NONBLOCK set on the shared stream"
    );
    drop(description); // or the stream never ends
    churn_unread(port);
    // A slow reader (64 KiB, the pipe's size, a millisecond at a time):
    // the pipe stays nearly full while the backlog drains, when socktrace
    // says it dropped lines.
    let mut read_slowly = |until: &dyn Fn(&[u8]) -> bool| {
        let mut chunk = vec![0; 64 << 10];
        let deadline = Instant::now() + Duration::from_secs(120);
        while !until(&got) {
            assert!(Instant::now() < deadline, "timed out reading slowly");
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&chunk[..n]);
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let said =
        |needle: &'static str| move |got: &[u8]| String::from_utf8_lossy(got).contains(needle);
    read_slowly(&said("the output reader fell behind:"));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    read_slowly(&|_| false); // to the end
    assert!(child.wait().unwrap().success());
    // Every line whole: JSON lines, and socktrace's own between them.
    let mut ours = Vec::new();
    let received = json_lines(&got, |line| {
        assert!(
            line.starts_with("socktrace: "),
            "a cut or glued line: {line}"
        );
        ours.push(line.to_string());
    });
    let summary = ours
        .iter()
        .find(|l| l.contains(" events (state "))
        .unwrap_or_else(|| panic!("no summary among {ours:?}"));
    assert_every_line_accounted_for(received, summary);
    // Losses said while the pipe was full are there too: a line or two
    // for each loss record.
    let said = ours
        .iter()
        .filter(|l| l.starts_with("socktrace: lost "))
        .count() as u64;
    let losses = number_before(summary, " loss records").unwrap_or(0);
    assert!(
        said >= losses,
        "{said} loss lines for {losses} loss records: {ours:?}"
    );
}

#[test]
fn output_that_cannot_be_written_fails_in_one_line() {
    require_root();
    // A full disk: every write fails with ENOSPC. Before, socktrace took
    // it for a reader gone away and stopped at once, exit 0, silent.
    let fails = |args: &[&str], into_full_disk: bool| -> String {
        let mut command = Command::new(socktrace_bin());
        command.args(args);
        if into_full_disk {
            let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
            command.stdout(full.expect("/dev/full"));
        }
        let out = command.output().expect("running socktrace");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some("socktrace: writing the output: No space left on device (os error 28)"),
            "{args:?}: {stderr}"
        );
        stderr
    };
    let stderr = fails(
        &["record", "/dev/full", "--force", "--duration", "20"],
        false,
    );
    // What it saw is said first, with what it could not write counted.
    let summary = stderr
        .lines()
        .find(|l| l.contains(" events (state "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(
        number_before(summary, " output lines dropped").is_some_and(|n| n > 0),
        "{summary}"
    );
    // timewait's reports and analyze's likewise.
    fails(&["timewait", "--interval", "0.2", "--duration", "20"], true);
    // A path without `..`: the guests of the kernel matrix hold the
    // fixtures, not this crate's directory.
    let recording = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("tracer-user/fixtures/listeners-and-churn.jsonl");
    let recording = recording.to_str().expect("a UTF-8 path");
    fails(&["analyze", recording, "--report", "summary"], true);
}
