//! Harness: the real socktrace binary, real sockets in child processes.
#![allow(dead_code)] // each test file uses its own share of the helpers

use std::{
    io::{BufRead, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod query;

/// A name no other test, in this process or another, is using now:
/// `socktrace-KIND-PID-N`, N counting this process's calls. Every test
/// resource (namespace, directory, file, cgroup, tmux socket) is named by
/// it, so tests running in parallel never share one.
pub fn unique_name(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("socktrace-{kind}-{}-{n}", std::process::id())
}

/// A fresh, empty directory of the caller's own under the system's
/// temporary directory.
pub fn scratch_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(kind));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// How long to wait for what should come at once on a host; only a
/// failing test waits this long. Times `SOCKTRACE_TEST_SLOWDOWN`, which the
/// kernel matrix's guests set (qemu without KVM runs the kernel's verifier
/// tens of times slower).
pub fn patience() -> Duration {
    let slowdown = std::env::var("SOCKTRACE_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    Duration::from_secs(30) * slowdown
}

/// What socktrace says it loses on each kernel feature it may lack, by the
/// names the kernel matrix gives them: the start of its `degraded:` line.
const KERNEL_DEGRADED: [(&str, &str); 6] = [
    (
        "cookie",
        "socket ids are read from the socket, not assigned",
    ),
    ("sk_storage", "owners are kept in a table of sockets"),
    ("send", "owners are not learnt from send()"),
    ("recv", "owners are not learnt from recv()"),
    (
        "recursion_misses",
        "runs of our programs the kernel skipped",
    ),
    ("reset_reason", "resets sent carry no reason"),
];

/// What the kernel under test lacks: `SOCKTRACE_TEST_KERNEL_LACKS`, names
/// of `KERNEL_DEGRADED` separated by commas, which the kernel matrix sets
/// for each of its kernels; unset, the kernel lacks none of them.
pub fn kernel_lacks(feature: &str) -> bool {
    let lacks = std::env::var("SOCKTRACE_TEST_KERNEL_LACKS").unwrap_or_default();
    let names: Vec<&str> = lacks.split(',').filter(|n| !n.is_empty()).collect();
    for name in &names {
        assert!(
            KERNEL_DEGRADED.iter().any(|(known, _)| known == name),
            "SOCKTRACE_TEST_KERNEL_LACKS names {name:?}, not a feature of {KERNEL_DEGRADED:?}"
        );
    }
    names.contains(&feature)
}

/// socktrace's `degraded:` lines in `stderr` (of `watch`), less those the
/// kernel causes, each of which must be there once (the kernel's lines are
/// an expectation too), and less the one about /proc, said where some
/// process's descriptors are not ours to read: what the test's own setup
/// took away.
pub fn degraded_beyond_the_kernel(stderr: &str) -> Vec<&str> {
    degraded_beyond_the_kernel_without(stderr, &[])
}

/// [`degraded_beyond_the_kernel`] where the test took away the hooks of the
/// kernel features `gone` (`KERNEL_DEGRADED` names) altogether: their
/// failure to attach is said instead, as a line beyond the kernel's.
pub fn degraded_beyond_the_kernel_without<'a>(stderr: &'a str, gone: &[&str]) -> Vec<&'a str> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("socktrace: degraded: "))
        .filter(|l| !l.starts_with("owners of sockets open before start"))
        .collect();
    for (feature, says) in KERNEL_DEGRADED {
        let said = lines.iter().filter(|l| l.starts_with(says)).count();
        let lacks = kernel_lacks(feature) && !gone.contains(&feature);
        assert_eq!(
            said,
            usize::from(lacks),
            "lines saying \"{says}\" where the kernel lacks {feature}: {lacks}: {stderr}"
        );
    }
    lines
        .into_iter()
        .filter(|l| !KERNEL_DEGRADED.iter().any(|(_, says)| l.starts_with(says)))
        .collect()
}

/// Whether `e` is a `loss` record of program runs the kernel skipped and
/// nothing else (recursion misses: a transition in a softirq while one of
/// our programs ran on that CPU; emulated guests see some): it says
/// nothing of the traffic a test made, nor of a filter.
pub fn only_skipped_runs(e: &Value) -> bool {
    e["type"] == "loss"
        && e["ring_drops"] == 0
        && e["recursion_misses"].as_u64().is_some_and(|n| n > 0)
}

/// The socktrace binary `cargo xtask test` built.
pub fn socktrace_bin() -> PathBuf {
    let path = std::env::var_os("SOCKTRACE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/socktrace")
        });
    assert!(
        path.is_file(),
        "socktrace binary not found at {}; run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs into the kernel and must run as root (`cargo xtask test` as root)"
    );
}

/// A running `socktrace --json`.
pub struct Tracer {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    /// Every event read so far, in order.
    pub events: Vec<Value>,
}

pub struct Finished {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Tracer {
    /// Starts `socktrace --json EXTRA` and returns once it is attached.
    pub fn start(extra: &[&str]) -> Tracer {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        Tracer::command(&args)
    }

    /// Starts `socktrace ARGS` (which must make it print JSON lines) and
    /// returns once it says it is attached.
    pub fn command(args: &[&str]) -> Tracer {
        let mut command = Command::new(socktrace_bin());
        command.args(args);
        Tracer::spawn(command)
    }

    /// Runs `command` (socktrace, or a wrapper that execs it) like
    /// [`Tracer::command`].
    pub fn spawn(mut command: Command) -> Tracer {
        require_root();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning socktrace");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (attached_tx, attached_rx) = mpsc::channel();
        let err_pipe = child.stderr.take().expect("stderr");
        let err_log = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                if line.contains("attached in") {
                    let _ = attached_tx.send(());
                }
                let mut log = err_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let lines = spawn_line_reader(child.stdout.take().expect("stdout"));
        let attach_timeout = patience();
        if attached_rx.recv_timeout(attach_timeout).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "socktrace did not attach within {attach_timeout:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
        Tracer {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            events: Vec::new(),
        }
    }

    /// Reads events until `done(all events so far)` holds; panics after a
    /// timeout, naming `what` it waited for.
    pub fn wait_for(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> &[Value] {
        let deadline = Instant::now() + patience();
        while !done(&self.events) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.events.push(record(&line));
                    // Take whatever else is waiting before checking again:
                    // the check looks at every event so far.
                    while let Ok(line) = self.lines.try_recv() {
                        self.events.push(record(&line));
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for {what}; {} events seen, the last ones:\n{}\nstderr:\n{}",
                    self.events.len(),
                    self.events[self.events.len().saturating_sub(40)..]
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr.lock().unwrap()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "socktrace exited while waiting for {what}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
        &self.events
    }

    /// The socktrace process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT, then everything it printed until it exited.
    pub fn stop(self) -> Finished {
        self.signal(libc::SIGINT)
    }

    /// Sends `signal`, then everything it printed until it exited.
    pub fn signal(self, signal: i32) -> Finished {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.finish()
    }

    /// Waits for socktrace to exit by itself (e.g. `--duration`).
    pub fn finish(mut self) -> Finished {
        let status = self.child.wait().expect("waiting for socktrace");
        let rest: Vec<Value> = self.lines.iter().map(|l| record(&l)).collect();
        self.events.extend(rest);
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join(); // ends with the pipe
        }
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            status,
            events: std::mem::take(&mut self.events),
            stderr,
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_line_reader(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The contract of socktrace's JSON lines, compiled once per test binary.
fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../../docs/socktrace.schema.json");
        let schema: Value = serde_json::from_str(text).expect("docs/socktrace.schema.json is JSON");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("docs/socktrace.schema.json is a draft 2020-12 schema")
    })
}

/// One line socktrace printed: JSON, and valid against
/// docs/socktrace.schema.json (else the test fails, naming what is wrong).
pub fn record(line: &str) -> Value {
    let value = parse(line);
    let errors: Vec<String> = schema()
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "socktrace printed a line its schema refuses: {line}\n{}",
        errors.join("\n")
    );
    value
}

/// Every line of `text` (socktrace's output) as [`record`]s.
pub fn records(text: &str) -> Vec<Value> {
    text.lines().map(record).collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON ({e}): {line}"))
}

/// `Name:\tvalue` from a /proc status file.
pub fn status_field(status: &std::path::Path, name: &str) -> String {
    let text = std::fs::read_to_string(status)
        .unwrap_or_else(|e| panic!("reading {}: {e}", status.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {}", status.display()))
        .trim()
        .to_string()
}

/// Checks that every thread of process `pid` holds no capability in any
/// set and has no_new_privs (capabilities are per thread: one started
/// before they were dropped keeps them); returns how many threads it read.
pub fn assert_unprivileged(pid: u32, what: &str) -> usize {
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("reading the tasks")
        .map(|t| t.expect("a task").path())
        .collect();
    for task in &tasks {
        let status = task.join("status");
        for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
            assert_eq!(
                status_field(&status, set),
                "0000000000000000",
                "{what}: {set} of {}",
                task.display()
            );
        }
        assert_eq!(
            status_field(&status, "NoNewPrivs"),
            "1",
            "{what}: NoNewPrivs of {}",
            task.display()
        );
    }
    tasks.len()
}

/// A name any process may take (prctl PR_SET_NAME, 15 bytes): it clears
/// the screen, turns red and starts a forged line.
pub const FORGED: &str = "\x1b[2J\x1b[31mX\nFAKE";
/// How socktrace shows it to people.
pub const FORGED_SHOWN: &str = "\\x1b[2J\\x1b[31mX\\x0aFAKE";

/// A `sockops` scenario under the forged name.
pub fn forged(args: &[&str]) -> Command {
    let mut cmd = Command::new(sockops_bin());
    cmd.args(args).env("SOCKOPS_NAME", FORGED);
    cmd
}

/// A `sockops` scenario in its own process, and the JSON line it printed.
pub struct Op {
    pub child: Child,
    pub report: Value,
    stdout: BufReader<ChildStdout>,
}

/// The `sockops` helper binary.
pub fn sockops_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockops")
}

impl Op {
    pub fn start(args: &[&str]) -> Op {
        let mut cmd = Command::new(sockops_bin());
        cmd.args(args);
        Op::spawn(cmd)
    }

    /// Runs `cmd` (which runs sockops, perhaps through a wrapper).
    pub fn spawn(mut cmd: Command) -> Op {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning sockops");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading sockops");
        assert!(!line.is_empty(), "sockops printed nothing");
        Op {
            child,
            report: parse(&line),
            stdout,
        }
    }

    /// Runs a scenario to the end; returns its report.
    pub fn run(args: &[&str]) -> Value {
        let op = Op::start(args);
        let report = op.report.clone();
        op.wait();
        report
    }

    pub fn pid(&self) -> u64 {
        self.report["pid"].as_u64().expect("pid")
    }

    pub fn port(&self) -> u64 {
        self.report["port"].as_u64().expect("port")
    }

    /// The scenario's next JSON line.
    pub fn next_report(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading sockops");
        assert!(!line.is_empty(), "sockops ended without a report");
        parse(&line)
    }

    /// Lets a scenario that waits on stdin go on.
    pub fn proceed(&mut self) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("writing to sockops");
    }

    pub fn wait(mut self) {
        let status = self.child.wait().expect("waiting for sockops");
        assert!(status.success(), "sockops failed: {status}");
    }
}

/// Events of one type.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    events.iter().filter(move |e| e["type"] == kind)
}

/// Events of socket `sock` of one type.
pub fn of_sock<'a>(events: &'a [Value], kind: &'a str, sock: &'a str) -> Vec<&'a Value> {
    of_type(events, kind)
        .filter(|e| e["sock"] == sock)
        .collect()
}

/// The one close record of socket `sock`.
pub fn close_of<'a>(events: &'a [Value], sock: &'a str) -> &'a Value {
    let closes = of_sock(events, "close", sock);
    assert_eq!(closes.len(), 1, "close records of {sock}: {closes:?}");
    closes[0]
}

/// The socket id of the first state event matching local and remote ports.
pub fn sock_by_ports(events: &[Value], sport: u64, dport: u64) -> Option<String> {
    of_type(events, "state")
        .find(|e| e["sport"] == sport && e["dport"] == dport)
        .map(|e| e["sock"].as_str().expect("sock").to_string())
}

/// The state events of socket `sock`, in order.
pub fn states_of<'a>(events: &'a [Value], sock: &str) -> Vec<&'a Value> {
    of_type(events, "state")
        .filter(|e| e["sock"] == sock)
        .collect()
}

/// `["CLOSE -> SYN_SENT", ...]` for socket `sock`.
pub fn transitions(events: &[Value], sock: &str) -> Vec<String> {
    states_of(events, sock)
        .iter()
        .map(|e| format!("{} -> {}", str_of(&e["old_state"]), str_of(&e["new_state"])))
        .collect()
}

pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Whether socket `sock` has ended (CLOSE, or TIME_WAIT for a connection).
pub fn closed(events: &[Value], sock: Option<&String>) -> bool {
    sock.is_some_and(|s| {
        states_of(events, s)
            .iter()
            .any(|e| e["new_state"] == "CLOSE" || e["new_state"] == "TIME_WAIT")
    })
}

/// Whether connection `sock` has its close record.
pub fn has_close(events: &[Value], sock: Option<&String>) -> bool {
    sock.is_some_and(|s| of_type(events, "close").any(|e| e["sock"] == s.as_str()))
}

/// The socket id of the connection from `sport` to `dport`, found by a
/// transition after its ports were set.
pub fn conn(events: &[Value], sport: u64, dport: u64) -> Option<String> {
    of_type(events, "state")
        .find(|e| e["sport"] == sport && e["dport"] == dport && e["old_state"] != "CLOSE")
        .map(|e| e["sock"].as_str().expect("sock").to_string())
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// Fails, with how to install it, when `path` (of Debian's `package`) is
/// missing.
pub fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: install Debian's {package} package \
         (`apt-get install -y --no-install-recommends {package}`; `cargo xtask test` does)"
    );
}

/// The body of a 200 answer to `GET path` on 127.0.0.1:`port` (HTTP/1.0:
/// the server closes after it, without chunking).
pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .map_err(|e| format!("request: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("response: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {response:?}"))?;
    match head.split(' ').nth(1) {
        Some("200") => Ok(body.to_string()),
        _ => Err(response),
    }
}

/// The scrape once it holds line `line`.
pub fn wait_for_series(scrape: &dyn Fn() -> String, line: &str) -> String {
    let deadline = Instant::now() + patience();
    loop {
        let text = scrape();
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {line} in {text}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `n` loopback connections to a listener on a free port, each closed by
/// the client first: it ends in TIME_WAIT (its socket kept open until the
/// server's FIN, or the kernel skips to a timewait socket in FIN_WAIT2, see
/// the README's limits). Returns the listener, still open.
pub fn time_wait_connections(n: u64) -> std::net::TcpListener {
    time_wait_connections_on(0, n)
}

/// [`time_wait_connections`] to a listener on 127.0.0.1:`port`.
pub fn time_wait_connections_on(port: u16, n: u64) -> std::net::TcpListener {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    for _ in 0..n {
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("client FIN");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).expect("the client's FIN");
        drop(server);
        client.read_to_end(&mut rest).expect("the server's FIN");
    }
    listener
}

/// Fails clearly when this network namespace cannot take another TIME_WAIT
/// socket (its bucket table is full, e.g. right after a benchmark): the
/// kernel then closes sockets without TIME_WAIT, and socktrace says so.
pub fn require_time_wait_room() {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").expect("sockstat");
    let tw =
        tracer_common::sockstat_time_waits(&sockstat).expect("TCP tw count in /proc/net/sockstat");
    let max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets")
        .expect("tcp_max_tw_buckets")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        tw + 100 < max,
        "this host holds {tw} TIME_WAIT sockets of at most {max}: the kernel creates no more, \
         so this test cannot see one; run it again once they expire (60 s)"
    );
}

/// Where cgroup v2 is mounted (its root), on the host or in a guest.
pub fn cgroup_v2_root() -> std::path::PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut f = left.split_whitespace();
            (right.starts_with("cgroup2 ") && f.nth(3)? == "/").then(|| f.next().unwrap().into())
        })
        .expect("cgroup v2 is mounted")
}

fn churn_bin() -> &'static str {
    env!("CARGO_BIN_EXE_churn")
}

/// Runs the churn load: about `n` connections to a server on `port`,
/// `close` (client|server) closing first. Returns its pid and how many
/// connections it completed (a thread may finish one past `n`).
pub fn churn(port: u16, n: u64, close: &str) -> (u32, u64) {
    let port = port.to_string();
    let child = Command::new(churn_bin())
        .args(["--threads", "2", "--addrs", "4", "--port", &port])
        .args(["--connections", &n.to_string(), "--close", close])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning churn");
    let pid = child.id();
    let out = child.wait_with_output().expect("churn");
    assert!(out.status.success(), "churn failed: {:?}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("churn's report");
    assert_eq!(report["failed"], 0, "{report}");
    (pid, report["connections"].as_u64().unwrap())
}

/// A network namespace of the test's own, deleted when dropped.
pub struct Netns(String);

impl Netns {
    pub fn new() -> Netns {
        let name = unique_name("netns");
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// Links this namespace to `peer` by a veth pair, `veth0` here with
    /// address `here`, `veth1` there with `there` (CIDR notation).
    pub fn link(&self, peer: &Netns, here: &str, there: &str) {
        ip(&[
            "link", "add", "veth0", "netns", &self.0, "type", "veth", "peer", "name", "veth1",
            "netns", &peer.0,
        ]);
        for (ns, dev, addr) in [(self, "veth0", here), (peer, "veth1", there)] {
            ip(&["-n", &ns.0, "addr", "add", addr, "dev", dev]);
            ip(&["-n", &ns.0, "link", "set", dev, "up"]);
        }
    }

    /// Drops (`true`) or lets through again what this namespace sends to
    /// `addr`, by a blackhole route: its peer's packets still arrive, and
    /// the peer's own sends succeed (a link taken down would fail them
    /// locally, which TCP does not count as retransmits).
    pub fn blackhole(&self, addr: &str, on: bool) {
        let verb = if on { "add" } else { "del" };
        ip(&["-n", &self.0, "route", verb, "blackhole", addr]);
    }

    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/run/netns/{}", self.0))
            .expect("netns file")
            .ino()
    }

    /// `args` run in this namespace's network, nothing else changed
    /// (`ip netns exec` mounts a sysfs of its own, hiding the cgroup
    /// tree socktrace needs).
    pub fn enter(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.0)).args(args);
        cmd
    }

    /// Connects in this namespace send their SYN once more only, then
    /// fail (ETIMEDOUT after about 3 s instead of 2 minutes). Written to
    /// /proc/sys, which shows the writer's namespace: no sysctl(8) needed
    /// (busybox's, in the kernel matrix's guests, differs).
    pub fn one_syn_retry(&self) {
        let status = self
            .exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_syn_retries"])
            .status()
            .expect("sh runs");
        assert!(
            status.success(),
            "setting tcp_syn_retries in the test namespace"
        );
    }

    /// The kernel's counter `name` of this namespace, from `file`'s lines
    /// starting `prefix` (`/proc/net/snmp`'s `Tcp:`, `/proc/net/netstat`'s
    /// `TcpExt:`; /proc/net shows the reader's namespace).
    pub fn counter(&self, file: &str, prefix: &str, name: &str) -> u64 {
        let out = self.exec(&["cat", file]).output().expect("cat");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().filter(|l| l.starts_with(prefix));
        let (names, values) = (
            lines.next().expect("the names"),
            lines.next().expect("the values"),
        );
        let at = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} in {file}"));
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    }

    /// Runs `f` on a thread of this process that joined this namespace's
    /// network (network namespaces are per thread; the others stay).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("netns file");
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a descriptor we hold, for this thread.
                    let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("the thread in the namespace")
        })
    }

    pub fn exec(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).args(args);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2) runs");
    assert!(status.success(), "ip {args:?}");
}

/// A connection to `listener`: (client, server).
pub fn connect(listener: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream) {
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// A connection to `listener` whose server closes with the client's bytes
/// unread (a RST, `tcp_abort_on_close`); returns the client's port.
pub fn close_unread(listener: &std::net::TcpListener) -> u64 {
    use std::io::{Read as _, Write as _};
    let (mut client, server) = connect(listener);
    client.write_all(b"never read").unwrap();
    let mut peek = [0u8; 10];
    assert_eq!(server.peek(&mut peek).unwrap(), 10, "arrived");
    drop(server);
    assert!(client.read(&mut peek).is_err(), "reset");
    u64::from(client.local_addr().unwrap().port())
}

/// A server (sockops) that holds the connections its clients close: each
/// stays in CLOSE_WAIT until it proceeds ([`close_its_client`]).
pub fn holding_server() -> Op {
    Op::start(&["tcp-server", "127.0.0.1", "10", "0", "hold"])
}

/// A client of `server` that connects and closes: the server's end is in
/// CLOSE_WAIT, and says its peer closed.
pub fn close_its_client(server: &mut Op) {
    Op::run(&[
        "tcp-client",
        "127.0.0.1",
        &server.port().to_string(),
        "10",
        "0",
        "close",
    ]);
    assert_eq!(server.next_report()["peer_closed"], true);
}
