//! `--journal` and `--syslog` against the real daemons: systemd-journald
//! (started here when none runs) and rsyslogd (started here with its own
//! socket and configuration). Entries are read back through the daemons'
//! own tools and parsers.
mod common;

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// A daemon this test started; stopped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One loopback connection from this process to a listener of this
/// process on `port`, the client closing first.
fn connect_once(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listening");
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    drop(client);
    drop(server);
}

/// Whether a journald answers on its socket (a dead one leaves it behind).
fn journald_answers() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(b"", JOURNAL_SOCKET))
        .is_ok()
}

/// journald, if one runs already; else one started here.
fn journald() -> Option<Daemon> {
    if journald_answers() {
        return None;
    }
    let _ = std::fs::remove_file(JOURNAL_SOCKET);
    assert!(
        Path::new(JOURNALD).is_file(),
        "{JOURNALD} is missing: install Debian's systemd package (`cargo xtask test` does)"
    );
    std::fs::create_dir_all("/run/systemd/journal").expect("creating /run/systemd/journal");
    let child = Command::new(JOURNALD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting systemd-journald");
    wait_until("journald's socket", journald_answers);
    Some(Daemon(child))
}

#[test]
fn journal_entries_carry_the_transition_fields() {
    let _journald = journald();
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let tracer = Tracer::start(&["--journal", "--port", &p]);
    connect_once(port);
    let entries = || -> Vec<Value> {
        let out = Command::new("journalctl")
            .args([
                "--no-pager",
                "-o",
                "json",
                &format!("SOCKTRACE_DPORT={port}"),
            ])
            .output()
            .expect("running journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let client_states = |entries: &[Value]| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["SOCKTRACE_TYPE"] == "state" && e["SOCKTRACE_SPORT"] != p.as_str())
            .map(|e| format!("{}>{}", e["SOCKTRACE_OLD_STATE"], e["SOCKTRACE_NEW_STATE"]))
            .collect()
    };
    wait_until("the client's TIME_WAIT in the journal", || {
        client_states(&entries())
            .iter()
            .any(|s| s.contains("TIME_WAIT"))
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let all = entries();
    assert_eq!(
        client_states(&all).join(" "),
        "\"CLOSE\">\"SYN_SENT\" \"SYN_SENT\">\"ESTABLISHED\" \"ESTABLISHED\">\"FIN_WAIT1\" \
         \"FIN_WAIT1\">\"FIN_WAIT2\" \"FIN_WAIT2\">\"TIME_WAIT\" \"TIME_WAIT\">\"CLOSE\""
    );
    let pid = std::process::id().to_string();
    for e in &all {
        assert_eq!(e["SYSLOG_IDENTIFIER"], "socktrace", "{e}");
        assert_eq!(e["SOCKTRACE_PID"], pid.as_str(), "{e}");
    }
    // The close record: who ended in TIME_WAIT, as a sentence and fields.
    let close = all
        .iter()
        .find(|e| e["SOCKTRACE_TYPE"] == "close" && e["SOCKTRACE_TIME_WAIT"] == "true")
        .expect("the client's close entry");
    assert!(
        close["MESSAGE"]
            .as_str()
            .unwrap()
            .contains("TIME_WAIT here"),
        "{close}"
    );
}

/// rsyslogd on its own socket, writing what its RFC 5424 parser found.
fn rsyslogd(dir: &Path) -> (Daemon, PathBuf, PathBuf) {
    assert!(
        Path::new(RSYSLOGD).is_file(),
        "{RSYSLOGD} is missing: install Debian's rsyslog package (`cargo xtask test` does)"
    );
    let socket = dir.join("log.sock");
    let out = dir.join("parsed.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{dir}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{socket}\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n\
             template(name=\"parsed\" type=\"string\" \
             string=\"%app-name%|%procid%|%syslogseverity-text%|%structured-data%|%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{out}\" template=\"parsed\")\n",
            dir = dir.display(),
            socket = socket.display(),
            out = out.display(),
        ),
    )
    .expect("writing rsyslog.conf");
    let child = Command::new(RSYSLOGD)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rsyslogd");
    wait_until("rsyslogd's socket", || socket.exists());
    (Daemon(child), socket, out)
}

/// What rsyslogd (in `dir`) wrote of `socktrace --syslog --port PORT`
/// while `traffic` ran, once a line holds `needle`: all of it, and that
/// line.
fn syslogged(dir: &Path, port: u16, traffic: impl FnOnce(), needle: &str) -> (String, String) {
    let (_rsyslogd, socket, parsed) = rsyslogd(dir);
    let p = port.to_string();
    let tracer = Tracer::start(&["--syslog", socket.to_str().unwrap(), "--port", &p]);
    traffic();
    let lines = || std::fs::read_to_string(&parsed).unwrap_or_default();
    wait_until(needle, || lines().contains(needle));
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let text = lines();
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .unwrap()
        .to_string();
    (text, line)
}

#[test]
fn syslog_messages_are_rfc5424_with_structured_data() {
    let dir = scratch_dir("syslog");
    let port = free_port("127.0.0.1");
    let (text, line) = syslogged(&dir, port, || connect_once(port), "new_state=\"TIME_WAIT\"");
    // rsyslog's RFC 5424 parser found the app name, the pid, the severity
    // and our structured data.
    let fields: Vec<&str> = line.splitn(5, '|').collect();
    assert_eq!(fields[0], "socktrace", "{line}");
    assert_eq!(fields[2], "info", "{line}");
    let sd = fields[3];
    assert!(sd.starts_with("[socktrace@32473 "), "{line}");
    for expected in [
        "old_state=\"FIN_WAIT2\"".to_string(),
        format!("dport=\"{port}\""),
        format!("pid=\"{}\"", std::process::id()),
        "type=\"state\"".into(),
    ] {
        assert!(sd.contains(&expected), "{expected} missing from {line}");
    }
    assert!(fields[4].contains("FIN_WAIT2 -> TIME_WAIT"), "{line}");
    // The bind of the listener is there too.
    assert!(text.contains("type=\"bind\""), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syslog_shows_a_forged_name_escaped() {
    let dir = scratch_dir("syslog-forged");
    let port = free_port("127.0.0.1");
    let bind = || {
        let status = forged(&["bind", "udp", "127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("sockops");
        assert!(status.success());
    };
    let (_, line) = syslogged(&dir, port, bind, "type=\"release\"");
    // Escaped by socktrace, as everywhere for people (not left to the
    // receiver, which may write control bytes as they are): in the
    // message, and in the value (whose backslashes RFC 5424 doubles).
    let fields: Vec<&str> = line.splitn(5, '|').collect();
    assert!(
        fields[4].starts_with(&format!("{FORGED_SHOWN} (")),
        "{line}"
    );
    let value = FORGED_SHOWN.replace('\\', "\\\\");
    assert!(fields[3].contains(&format!("comm=\"{value}\"")), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
