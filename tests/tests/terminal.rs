//! Manners at the terminal: `socktrace | head` stops at its next line and
//! exits 0 without a word about the closed pipe (also when standard error
//! goes down the same pipe), `--color always` colours what it should, and
//! a process's name never reaches the terminal raw.
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::*;

/// Long enough that stopping before it proves the closed pipe stopped it.
const DURATION: &str = "30";
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Something for a live mode to print: a listener that opens and closes.
fn listen() {
    Op::run(&["listen", "127.0.0.1", "3"]);
}

/// Waits for `child` to exit by itself, at most `EXIT_TIMEOUT`.
fn wait_exit(child: &mut Child, what: &str) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for socktrace") {
            return (status, started.elapsed());
        }
        if started.elapsed() > EXIT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: socktrace still runs {EXIT_TIMEOUT:?} after its output closed");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `socktrace ARGS` with its outputs piped; returns once it is
/// attached, with a thread collecting its stderr.
fn spawn_attached(args: &[&str]) -> (Child, thread::JoinHandle<String>) {
    require_root();
    let mut child = Command::new(socktrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning socktrace");
    let (attached_tx, attached) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("attached in") {
                let _ = attached_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    if attached.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{args:?}: socktrace did not attach; stderr:\n{}",
            stderr_reader.join().unwrap_or_default()
        );
    }
    (child, stderr_reader)
}

/// `socktrace ARGS | head -n 1`, with `event` making a line to print
/// before `head` reads and again after it has gone: exit 0, well before
/// `--duration`, and nothing on stderr but the usual start and summary.
fn stops_quietly_when_stdout_closes(args: &[&str], event: impl Fn()) {
    let mut all = args.to_vec();
    all.extend(["--duration", DURATION]);
    let (mut child, stderr_reader) = spawn_attached(&all);
    event();
    // `head -n 1`: one line, then the pipe's only reader is gone.
    let mut head = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    head.read_line(&mut first).expect("reading the first line");
    assert!(!first.is_empty(), "{args:?}: no first line");
    drop(head);
    event();
    let (status, after) = wait_exit(&mut child, &format!("{args:?}"));
    let stderr = stderr_reader.join().expect("stderr reader");
    assert!(status.success(), "{args:?}: {status}; stderr:\n{stderr}");
    for noise in ["error", "Error", "pipe", "panicked"] {
        assert!(!stderr.contains(noise), "{args:?}: {noise:?} in:\n{stderr}");
    }
    assert!(
        after < Duration::from_secs(10),
        "{args:?}: took {after:?} to notice"
    );
}

#[test]
fn watch_into_a_closed_pipe() {
    stops_quietly_when_stdout_closes(&[], listen);
}

#[test]
fn watch_lifecycle_into_a_closed_pipe() {
    stops_quietly_when_stdout_closes(&["--lifecycle"], || {
        Op::run(&["pair", "127.0.0.1"]);
    });
}

#[test]
fn watch_json_into_a_closed_pipe() {
    stops_quietly_when_stdout_closes(&["--json"], listen);
}

#[test]
fn listeners_into_a_closed_pipe() {
    stops_quietly_when_stdout_closes(&["listeners"], listen);
}

#[test]
fn timewait_into_a_closed_pipe() {
    // A report every interval is the next line.
    stops_quietly_when_stdout_closes(&["timewait", "--interval", "0.2"], || {});
}

#[test]
fn analyze_into_a_closed_pipe() {
    let mut child = Command::new(socktrace_bin())
        .args(["analyze", "-", "--report", "summary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning socktrace analyze");
    drop(child.stdout.take()); // gone before anything is written
    let header = r#"{"type":"header","socktrace":"0.1.0","host":"h","kernel":"k","start":"2026-11-25T15:29:14Z","command":"socktrace","filters":[]}"#;
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{header}").expect("writing the recording");
    drop(stdin);
    let (status, _) = wait_exit(&mut child, "analyze");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn stderr_down_the_same_closed_pipe() {
    // `socktrace 2>&1 | head -n 1`: the summary has nowhere to go either.
    require_root();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut child = Command::new(socktrace_bin())
        .args(["--duration", DURATION])
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("pipe"))
        .stderr(writer)
        .spawn()
        .expect("spawning socktrace");
    let mut head = BufReader::new(reader);
    let mut line = String::new();
    while !line.contains("attached in") {
        line.clear();
        let n = head.read_line(&mut line).expect("reading socktrace");
        assert_ne!(n, 0, "socktrace exited before attaching");
    }
    drop(head);
    listen();
    let (status, _) = wait_exit(&mut child, "2>&1");
    assert!(status.success(), "{status}");
}

#[test]
fn color_always_through_a_pipe() {
    let (child, _) = spawn_attached(&["listeners", "--color", "always", "--duration", "1"]);
    let port = free_port("127.0.0.1").to_string();
    Op::run(&["listen-cycle", "127.0.0.1", &port, "1", "1000"]);
    let out = child.wait_with_output().expect("socktrace");
    assert!(out.status.success(), "{}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&format!(":{port} ")) && l.contains("closed after"))
        .unwrap_or_else(|| panic!("no close of port {port} in:\n{text}"));
    assert!(line.ends_with("  \x1b[1;35mSHORT-LIVED\x1b[0m"), "{line:?}");
}

/// `text` holds no control byte but newlines, and no line a forged name
/// started.
fn assert_escaped(what: &str, text: &str) {
    let raw: Vec<&str> = text
        .lines()
        .filter(|l| l.bytes().any(|b| b.is_ascii_control()))
        .collect();
    assert!(raw.is_empty(), "{what}: raw control bytes in {raw:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("FAKE")),
        "{what}: a forged line:\n{text}"
    );
}

/// The first line of `text` holding all of `words`.
fn line_with<'a>(what: &str, text: &'a str, words: &[&str]) -> &'a str {
    text.lines()
        .find(|l| words.iter().all(|w| l.contains(w)))
        .unwrap_or_else(|| panic!("{what}: no line with {words:?} in:\n{text}"))
}

/// A client under the forged name talks to `port` and closes first; its
/// pid.
fn forged_client(port: u16) -> String {
    let p = port.to_string();
    let client = Op::spawn(forged(&[
        "tcp-client",
        "127.0.0.1",
        &p,
        "10",
        "10",
        "close",
    ]));
    let pid = client.pid().to_string();
    client.wait();
    pid
}

/// A loopback server on a port of its own: each client sends 10 bytes,
/// gets 10 back, and closes first.
fn serve_ten_bytes() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listening");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut req = [0u8; 10];
                if conn.read_exact(&mut req).is_ok() && conn.write_all(&[b'r'; 10]).is_ok() {
                    let _ = conn.read_to_end(&mut Vec::new());
                }
            });
        }
    });
    port
}

#[test]
fn forged_names_are_escaped_in_events_lifecycles_and_the_snapshot() {
    let port = serve_ten_bytes();
    let p = port.to_string();
    // Open before start: the snapshot names its owner from /proc.
    let mut held = Op::spawn(forged(&["hold", "127.0.0.1", &p, "1"]));
    let (events, events_err) = spawn_attached(&["--snapshot", "--port", &p, "--duration", "3"]);
    let (lifecycles, lifecycles_err) =
        spawn_attached(&["--lifecycle", "--port", &p, "--duration", "3"]);
    let pid = forged_client(port);
    held.proceed();
    held.wait();
    for (name, child, stderr) in [
        ("events", events, events_err),
        ("--lifecycle", lifecycles, lifecycles_err),
    ] {
        let out = child.wait_with_output().expect("socktrace");
        let stderr = stderr.join().expect("stderr");
        assert!(out.status.success(), "{name}: {}: {stderr}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_escaped(name, &text);
        assert_escaped(name, &stderr);
        if name == "events" {
            line_with(name, &text, &[FORGED_SHOWN, "exists: ESTABLISHED"]);
            line_with(
                name,
                &text,
                &[&pid, FORGED_SHOWN, "SYN_SENT -> ESTABLISHED"],
            );
        } else {
            line_with(name, &text, &[&pid, FORGED_SHOWN, "active  time-wait"]);
        }
    }
}

#[test]
fn forged_names_are_escaped_by_listeners_and_its_summary() {
    let port = free_port("127.0.0.1").to_string();
    let (child, stderr) = spawn_attached(&["listeners", "--port", &port, "--duration", "2"]);
    let cycles = forged(&["listen-cycle", "127.0.0.1", &port, "2", "1000"])
        .status()
        .expect("sockops");
    assert!(cycles.success());
    let out = child.wait_with_output().expect("socktrace");
    let stderr = stderr.join().expect("stderr");
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("listeners", &text);
    assert_escaped("listeners' stderr", &stderr);
    line_with("listeners", &text, &[FORGED_SHOWN, "open backlog"]);
    line_with(
        "listeners",
        &text,
        &[FORGED_SHOWN, "closed after", "SHORT-LIVED"],
    );
    // The table's row: PROTO PORT KIND COMM PIDS CYCLES SHORT.
    line_with(
        "listeners",
        &text,
        &[
            "tcp",
            &port,
            "listen",
            &format!("{FORGED_SHOWN} 1     2       2"),
        ],
    );
    line_with(
        "the summary",
        &stderr,
        &[&format!(
            "short-lived (< 1 s): tcp {port} {FORGED_SHOWN} (2)"
        )],
    );
}

#[test]
fn forged_names_are_escaped_by_timewait() {
    let port = serve_ten_bytes();
    let p = port.to_string();
    let (child, stderr) = spawn_attached(&[
        "timewait",
        "--port",
        &p,
        "--interval",
        "0.5",
        "--duration",
        "2",
    ]);
    // Closing first, the client ends in TIME_WAIT: a row of its own.
    let pid = forged_client(port);
    let out = child.wait_with_output().expect("socktrace");
    let stderr = stderr.join().expect("stderr");
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("timewait", &text);
    line_with("timewait", &text, &[&format!("  {pid:<7} {FORGED_SHOWN}")]);
}
