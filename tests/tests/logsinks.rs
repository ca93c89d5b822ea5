//! `--journal` and `--syslog` against the real daemons: systemd-journald
//! (the host's, or one started here when none runs) and rsyslogd (started
//! here with its own socket and configuration); then on to a central host
//! on loopback, as a fleet sends them: through systemd-journal-upload to a
//! systemd-journal-remote (from a journald of the test's own), and from one
//! rsyslogd to another over TCP with octet-counted framing. Entries are read
//! back through the daemons' own tools and parsers.
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
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const JOURNAL_UPLOAD: &str = "/lib/systemd/systemd-journal-upload";

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
/// process on `port`, the client closing first; returns the client's port.
fn connect_once(port: u16) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listening");
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    let client_port = client.local_addr().expect("the client's address").port();
    drop(client);
    drop(server);
    client_port
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Stops `tracer` once it has printed the close record of the connection
/// `connect_once` made from `client_port` to `port`; returns its socket id
/// and every transition of it socktrace printed (`OLD>NEW`; the last,
/// `TIME_WAIT>CLOSE`, may come after the record, or not before the stop).
fn traced_client(mut tracer: Tracer, client_port: u16, port: u16) -> (String, Vec<String>) {
    let (cport, port) = (u64::from(client_port), u64::from(port));
    tracer.wait_for("the client's close record", |events| {
        has_close(events, conn(events, cport, port).as_ref())
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let sock = conn(&done.events, cport, port).unwrap();
    let states = states_of(&done.events, &sock)
        .iter()
        .map(|e| format!("{}>{}", str_of(&e["old_state"]), str_of(&e["new_state"])))
        .collect();
    (sock, states)
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
    require_tool(JOURNALD, "systemd");
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

/// An rsyslogd of the test's own, with only `config` (its work files,
/// pid file and configuration in `dir`), once `ready` holds.
fn rsyslogd_with(dir: &Path, config: &str, ready: impl FnMut() -> bool) -> Daemon {
    require_tool(RSYSLOGD, "rsyslog");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!("global(workDirectory=\"{}\")\n{config}", dir.display()),
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
    wait_until(&format!("rsyslogd in {}", dir.display()), ready);
    Daemon(child)
}

/// rsyslog configuration: messages on socket `socket` (RFC 5424, as
/// socktrace sends them).
fn from_socket(socket: &Path) -> String {
    format!(
        "module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{}\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n",
        socket.display()
    )
}

/// rsyslog configuration: what its RFC 5424 parser found written to `out`,
/// `app-name|procid|severity|structured data|message` a line.
fn parsed_to(out: &Path) -> String {
    format!(
        "template(name=\"parsed\" type=\"string\" \
         string=\"%app-name%|%procid%|%syslogseverity-text%|%structured-data%|%msg%\\n\")\n\
         action(type=\"omfile\" file=\"{}\" template=\"parsed\")\n",
        out.display()
    )
}

/// rsyslogd on its own socket, writing what its RFC 5424 parser found.
fn rsyslogd(dir: &Path) -> (Daemon, PathBuf, PathBuf) {
    let socket = dir.join("log.sock");
    let out = dir.join("parsed.log");
    let config = from_socket(&socket) + &parsed_to(&out);
    let daemon = rsyslogd_with(dir, &config, || socket.exists());
    (daemon, socket, out)
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
    let (text, line) = syslogged(
        &dir,
        port,
        || {
            connect_once(port);
        },
        "new_state=\"TIME_WAIT\"",
    );
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

/// A journald of the test's own, in a mount namespace of its own whose
/// /run/systemd/journal (its sockets, where `--journal` writes),
/// /run/log/journal (its files) and /etc/systemd (its configuration: only
/// ours) are directories of `dir`: nothing of the host's journal is read
/// or written. Processes join it through [`PrivateJournal::enter`].
struct PrivateJournal {
    daemon: Daemon,
    /// Its journal files' directory, as the host sees it.
    files: PathBuf,
}

impl PrivateJournal {
    fn start(dir: &Path) -> PrivateJournal {
        require_tool(JOURNALD, "systemd");
        let [sockets, files, etc] = ["sockets", "files", "etc"].map(|d| dir.join(d));
        for d in [&sockets, &files, &etc] {
            std::fs::create_dir_all(d).expect("creating the journal's directories");
        }
        // Volatile (in /run/log/journal); no kernel messages, nothing
        // forwarded.
        std::fs::write(
            etc.join("journald.conf"),
            "[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\n\
             ForwardToWall=no\nForwardToConsole=no\n",
        )
        .expect("writing journald.conf");
        let script = format!(
            "set -e; mount --bind {} /run/systemd/journal; mount --bind {} /run/log/journal; \
             mount --bind {} /etc/systemd; exec {JOURNALD}",
            sockets.display(),
            files.display(),
            etc.display()
        );
        std::fs::create_dir_all("/run/systemd/journal").expect("creating /run/systemd/journal");
        std::fs::create_dir_all("/run/log/journal").expect("creating /run/log/journal");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting systemd-journald in a mount namespace (unshare, util-linux)");
        let socket = sockets.join("socket");
        wait_until("the test's journald's socket", || socket.exists());
        PrivateJournal {
            daemon: Daemon(child),
            files,
        }
    }

    /// `program` in this journal's mount namespace.
    fn enter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.daemon.0.id()))
            .arg(program);
        cmd
    }
}

/// `journalctl --directory DIR -o json MATCH`, entry by entry.
fn journal_entries(dir: &Path, matching: &str) -> Vec<Value> {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", dir.display()))
        .args(["--no-pager", "-o", "json", matching])
        .output()
        .expect("running journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("journalctl's JSON"))
        .collect()
}

/// socktrace's journal entries on one host, shipped by
/// systemd-journal-upload over plain HTTP to a systemd-journal-remote on
/// loopback (the central host), found there by `journalctl --directory`:
/// exactly the client's transitions socktrace printed, with its socket
/// id and ports, and its close record.
#[test]
fn journal_entries_reach_a_central_journal_remote() {
    require_tool(JOURNAL_REMOTE, "systemd-journal-remote");
    require_tool(JOURNAL_UPLOAD, "systemd-journal-remote");
    let dir = scratch_dir("journal-remote");
    let journal = PrivateJournal::start(&dir);
    let central_port = free_port("127.0.0.1");
    let central = dir.join("central");
    std::fs::create_dir_all(&central).expect("creating the central journal's directory");
    let spawn = |mut cmd: Command, what: &str| {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Daemon(child)
    };
    let mut remote = journal.enter(JOURNAL_REMOTE);
    remote
        .arg(format!("--listen-http=127.0.0.1:{central_port}"))
        .arg(format!("--output={}/", central.display()));
    let remote = spawn(remote, "systemd-journal-remote");
    wait_until("systemd-journal-remote listening", || accepts(central_port));
    let mut upload = journal.enter(JOURNAL_UPLOAD);
    upload
        .arg(format!("--url=http://127.0.0.1:{central_port}"))
        .arg(format!("--directory={}", journal.files.display()));
    let upload = spawn(upload, "systemd-journal-upload");

    let port = free_port("127.0.0.1");
    let mut socktrace = journal.enter(socktrace_bin());
    socktrace.args(["--json", "--journal", "--port", &port.to_string()]);
    let tracer = Tracer::spawn(socktrace);
    let client_port = connect_once(port);
    let (sock, states) = traced_client(tracer, client_port, port);
    assert_eq!(
        states[..5].join(" "),
        "CLOSE>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT1 FIN_WAIT1>FIN_WAIT2 \
         FIN_WAIT2>TIME_WAIT"
    );
    let of_sock = format!("SOCKTRACE_SOCK={sock}");
    let arrived = || journal_entries(&central, &of_sock);
    // Each transition and the close record.
    wait_until("the client's entries at the central host", || {
        arrived().len() > states.len()
    });

    // journal-remote writes what a host sent to remote-HOST.journal.
    let files: Vec<String> = std::fs::read_dir(&central)
        .expect("the central directory")
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["remote-127.0.0.1.journal"]);
    let entries = arrived();
    let arrived_states: Vec<String> = entries
        .iter()
        .filter(|e| e["SOCKTRACE_TYPE"] == "state")
        .map(|e| {
            format!(
                "{}>{}",
                str_of(&e["SOCKTRACE_OLD_STATE"]),
                str_of(&e["SOCKTRACE_NEW_STATE"])
            )
        })
        .collect();
    assert_eq!(arrived_states, states);
    let pid = std::process::id().to_string();
    for e in &entries {
        assert_eq!(e["SYSLOG_IDENTIFIER"], "socktrace", "{e}");
        assert_eq!(e["SOCKTRACE_PID"], pid.as_str(), "{e}");
        assert_eq!(e["SOCKTRACE_DPORT"], port.to_string().as_str(), "{e}");
        if e["SOCKTRACE_OLD_STATE"] != "CLOSE" {
            assert_eq!(
                e["SOCKTRACE_SPORT"],
                client_port.to_string().as_str(),
                "{e}"
            );
        }
    }
    let closes: Vec<&Value> = entries
        .iter()
        .filter(|e| e["SOCKTRACE_TYPE"] == "close")
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["SOCKTRACE_TIME_WAIT"], "true", "{}", closes[0]);
    drop((upload, remote, journal));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// socktrace's syslog messages relayed by a first rsyslogd (omfwd, TCP,
/// RFC 5425 octet-counted framing) to a second one on loopback (imtcp, the
/// central host): its RFC 5424 parser finds exactly the client's
/// transitions socktrace printed, with their structured data.
#[test]
fn syslog_messages_reach_a_central_rsyslog_over_tcp() {
    let dir = scratch_dir("syslog-relay");
    let [central, relay] = ["central", "relay"].map(|d| dir.join(d));
    for d in [&central, &relay] {
        std::fs::create_dir_all(d).expect("creating rsyslog's directories");
    }
    let central_port = free_port("127.0.0.1");
    let received = central.join("received.log");
    let config = format!(
        "module(load=\"imtcp\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{central_port}\" \
         SupportOctetCountedFraming=\"on\")\n{}",
        parsed_to(&received)
    );
    let central_daemon = rsyslogd_with(&central, &config, || accepts(central_port));
    let socket = relay.join("log.sock");
    let config = format!(
        "{}action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{central_port}\" protocol=\"tcp\" \
         TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
        from_socket(&socket)
    );
    let relay_daemon = rsyslogd_with(&relay, &config, || socket.exists());

    let port = free_port("127.0.0.1");
    let tracer = Tracer::start(&[
        "--syslog",
        socket.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    let client_port = connect_once(port);
    let (sock, states) = traced_client(tracer, client_port, port);
    let of_sock = format!("sock=\"{sock}\"");
    let arrived = || -> Vec<String> {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&of_sock))
            .map(str::to_string)
            .collect()
    };
    // Each transition and the close record.
    wait_until("the client's messages at the central host", || {
        arrived().len() > states.len()
    });

    let lines = arrived();
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.splitn(5, '|').collect()).collect();
    let value = |sd: &str, name: &str| -> String {
        let start = sd
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {sd}"))
            + name.len()
            + 3;
        sd[start..][..sd[start..].find('"').unwrap()].to_string()
    };
    let state_fields: Vec<&Vec<&str>> = fields
        .iter()
        .filter(|f| f[3].contains("type=\"state\""))
        .collect();
    let arrived_states: Vec<String> = state_fields
        .iter()
        .map(|f| format!("{}>{}", value(f[3], "old_state"), value(f[3], "new_state")))
        .collect();
    assert_eq!(arrived_states, states, "{lines:#?}");
    for (f, line) in fields.iter().zip(&lines) {
        assert_eq!(f[0], "socktrace", "{line}");
        assert!(f[3].starts_with("[socktrace@32473 "), "{line}");
        assert_eq!(value(f[3], "pid"), std::process::id().to_string(), "{line}");
        assert_eq!(value(f[3], "dport"), port.to_string(), "{line}");
    }
    let transition = state_fields
        .iter()
        .find(|f| value(f[3], "new_state") == "TIME_WAIT")
        .expect("the client's TIME_WAIT");
    assert_eq!(value(transition[3], "sport"), client_port.to_string());
    assert!(
        transition[4].contains("FIN_WAIT2 -> TIME_WAIT"),
        "{lines:#?}"
    );
    let closes: Vec<_> = fields
        .iter()
        .filter(|f| f[3].contains("type=\"close\""))
        .collect();
    assert_eq!(closes.len(), 1, "{lines:#?}");
    assert_eq!(value(closes[0][3], "time_wait"), "true", "{lines:#?}");
    drop((relay_daemon, central_daemon));
    std::fs::remove_dir_all(&dir).unwrap();
}
