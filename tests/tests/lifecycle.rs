//! Connections end to end: every transition owned by the right process,
//! close records, TIME_WAIT on the right side, failures that say why.
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const REQ: u64 = 1000;
const REPLY: u64 = 3000;

struct Conversation {
    events: Vec<Value>,
    server_pid: u64,
    client_pid: u64,
    port: u64,
    cport: u64,
    /// The client's, the accepted one's and the listener's socket ids.
    client: String,
    accepted: String,
    listener: String,
}

/// A server and a client process talking over `ip`; `server` and `client`
/// are their sockops modes. Returns once both ends have closed.
fn converse(tracer: &mut Tracer, ip: &str, server: &str, client: &str) -> Conversation {
    require_time_wait_room();
    let (req, reply) = (REQ.to_string(), REPLY.to_string());
    let s = Op::start(&["tcp-server", ip, &req, &reply, server]);
    let port = s.port();
    let c = Op::start(&["tcp-client", ip, &port.to_string(), &req, &reply, client]);
    let cport = c.port();
    let (server_pid, client_pid) = (s.pid(), c.pid());
    c.wait();
    s.wait();
    let events = tracer.wait_for("both ends and the listener to close", |ev| {
        let listener = of_type(ev, "listen")
            .find(|e| e["pid"] == server_pid)
            .map(|e| e["sock"].as_str().unwrap().to_string());
        has_close(ev, sock_by_ports(ev, cport, port).as_ref())
            && has_close(ev, conn(ev, port, cport).as_ref())
            && closed(ev, listener.as_ref())
    });
    let listener = of_type(events, "listen")
        .find(|e| e["pid"] == server_pid)
        .unwrap();
    Conversation {
        server_pid,
        client_pid,
        port,
        cport,
        client: sock_by_ports(events, cport, port).unwrap(),
        accepted: conn(events, port, cport).unwrap(),
        listener: listener["sock"].as_str().unwrap().to_string(),
        events: events.to_vec(),
    }
}

fn owners(events: &[Value], sock: &str) -> Vec<(u64, String)> {
    states_of(events, sock)
        .iter()
        .map(|e| {
            (
                e["pid"].as_u64().unwrap_or(0),
                e["owner_source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn client_closes_first(ip: &str, family: &str) {
    let mut tracer = Tracer::start(&[]);
    let c = converse(&mut tracer, ip, "wait", "close");
    let ev = &c.events;

    // The listener: bind, listen and its transitions are one socket (the
    // cookie), all the server's.
    let bind = of_sock(ev, "bind", &c.listener);
    assert_eq!(bind.len(), 1, "{bind:?}");
    assert_eq!(
        (&bind[0]["pid"], &bind[0]["port"]),
        (&c.server_pid.into(), &c.port.into())
    );
    assert_eq!(
        transitions(ev, &c.listener),
        ["CLOSE -> LISTEN", "LISTEN -> CLOSE"]
    );
    let syscall = |pid: u64| (pid, "syscall".to_string());
    assert_eq!(
        owners(ev, &c.listener),
        [syscall(c.server_pid), syscall(c.server_pid)]
    );

    // The client: active open, active close, so it ends in TIME_WAIT; every
    // transition is the client's, including those run by the server's
    // packets.
    assert_eq!(
        transitions(ev, &c.client),
        [
            "CLOSE -> SYN_SENT",
            "SYN_SENT -> ESTABLISHED",
            "ESTABLISHED -> FIN_WAIT1",
            "FIN_WAIT1 -> FIN_WAIT2",
            "FIN_WAIT2 -> TIME_WAIT",
        ]
    );
    assert_eq!(owners(ev, &c.client), vec![syscall(c.client_pid); 5]);
    for e in states_of(ev, &c.client) {
        assert_eq!((&e["family"], &e["proto"]), (&family.into(), &"tcp".into()));
        assert_eq!((&e["daddr"], &e["dport"]), (&ip.into(), &c.port.into()));
        assert_eq!(e["comm"], "sockops");
    }

    // The accepted socket: the listener's owner until accept, the server's
    // own after; never the client, whose packets drove most of it.
    assert_eq!(
        transitions(ev, &c.accepted),
        [
            "LISTEN -> SYN_RECV",
            "SYN_RECV -> ESTABLISHED",
            "ESTABLISHED -> CLOSE_WAIT",
            "CLOSE_WAIT -> LAST_ACK",
            "LAST_ACK -> CLOSE",
        ]
    );
    let inherited = (c.server_pid, "inherited".to_string());
    assert_eq!(
        owners(ev, &c.accepted),
        [
            inherited.clone(),
            inherited,
            syscall(c.server_pid),
            syscall(c.server_pid),
            syscall(c.server_pid)
        ]
    );
    for e in states_of(ev, &c.accepted) {
        assert_eq!(
            (&e["sport"], &e["dport"]),
            (&c.port.into(), &c.cport.into()),
            "no zero peer"
        );
    }

    let close = close_of(ev, &c.client);
    assert_eq!(
        (&close["pid"], &close["opened"]),
        (&c.client_pid.into(), &"active".into())
    );
    assert_eq!(
        (&close["closed_first"], &close["time_wait"]),
        (&"local".into(), &true.into())
    );
    assert_eq!(
        (&close["reset_by"], &close["failure"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        (&close["bytes_sent"], &close["bytes_received"]),
        (&REQ.into(), &REPLY.into())
    );
    assert_eq!(
        (&close["sport"], &close["dport"]),
        (&c.cport.into(), &c.port.into())
    );
    let state_ms = close["state_ms"].as_object().unwrap();
    let visited: Vec<&String> = state_ms.keys().collect();
    assert_eq!(
        visited,
        ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "SYN_SENT"]
    );
    let sum: f64 = state_ms.values().map(|v| v.as_f64().unwrap()).sum();
    assert!(
        (sum - close["duration_ms"].as_f64().unwrap()).abs() < 0.01,
        "{close}"
    );

    let close = close_of(ev, &c.accepted);
    assert_eq!(
        (&close["pid"], &close["opened"]),
        (&c.server_pid.into(), &"passive".into())
    );
    assert_eq!(
        (&close["closed_first"], &close["time_wait"]),
        (&"remote".into(), &false.into())
    );
    assert_eq!(
        (&close["bytes_sent"], &close["bytes_received"]),
        (&REPLY.into(), &REQ.into())
    );
    assert!(
        of_sock(ev, "close", &c.listener).is_empty(),
        "a listener is no connection"
    );

    // Stopping ends the TIME_WAIT by its computed expiry: 60 s after entry.
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let tw: Vec<&Value> = states_of(&done.events, &c.client)
        .into_iter()
        .filter(|e| e["old_state"] == "TIME_WAIT")
        .collect();
    assert_eq!(tw.len(), 1, "{tw:?}");
    assert_eq!(
        (&tw[0]["new_state"], &tw[0]["timewait_end"]),
        (&"CLOSE".into(), &"timeout".into())
    );
    assert_eq!(tw[0]["pid"], c.client_pid);
    let entered = states_of(&done.events, &c.client)[4]["time"]
        .as_str()
        .unwrap()
        .to_string();
    let secs = |t: &str| -> f64 {
        let hms = t.split('T').nth(1).unwrap().trim_end_matches('Z');
        let parts: Vec<f64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
    };
    let waited = (secs(tw[0]["time"].as_str().unwrap()) - secs(&entered)).rem_euclid(86400.0);
    assert!((waited - 60.0).abs() < 1e-6, "TIME_WAIT lasted {waited} s");
}

#[test]
fn client_closes_first_ipv4() {
    client_closes_first("127.0.0.1", "ipv4");
}

#[test]
fn client_closes_first_ipv6() {
    client_closes_first("::1", "ipv6");
}

#[test]
fn server_closes_first() {
    let mut tracer = Tracer::start(&[]);
    let c = converse(&mut tracer, "127.0.0.1", "first", "wait");
    let ev = &c.events;
    assert_eq!(
        transitions(ev, &c.accepted),
        [
            "LISTEN -> SYN_RECV",
            "SYN_RECV -> ESTABLISHED",
            "ESTABLISHED -> FIN_WAIT1",
            "FIN_WAIT1 -> FIN_WAIT2",
            "FIN_WAIT2 -> TIME_WAIT",
        ]
    );
    assert!(
        owners(ev, &c.accepted)
            .iter()
            .all(|(pid, _)| *pid == c.server_pid)
    );
    assert_eq!(
        transitions(ev, &c.client),
        [
            "CLOSE -> SYN_SENT",
            "SYN_SENT -> ESTABLISHED",
            "ESTABLISHED -> CLOSE_WAIT",
            "CLOSE_WAIT -> LAST_ACK",
            "LAST_ACK -> CLOSE",
        ]
    );
    assert!(
        owners(ev, &c.client)
            .iter()
            .all(|(pid, src)| *pid == c.client_pid && src == "syscall")
    );
    let server = close_of(ev, &c.accepted);
    assert_eq!(
        (&server["closed_first"], &server["time_wait"]),
        (&"local".into(), &true.into())
    );
    let client = close_of(ev, &c.client);
    assert_eq!(
        (&client["closed_first"], &client["time_wait"]),
        (&"remote".into(), &false.into())
    );
}

#[test]
fn reset_says_which_side_sent_it() {
    let mut tracer = Tracer::start(&[]);
    let c = converse(&mut tracer, "127.0.0.1", "wait", "rst");
    let ev = &c.events;
    assert_eq!(
        transitions(ev, &c.client),
        [
            "CLOSE -> SYN_SENT",
            "SYN_SENT -> ESTABLISHED",
            "ESTABLISHED -> CLOSE"
        ]
    );
    let client = close_of(ev, &c.client);
    assert_eq!(
        (&client["reset_by"], &client["time_wait"]),
        (&"local".into(), &false.into())
    );
    assert_eq!(client["pid"], c.client_pid);
    assert_eq!(
        transitions(ev, &c.accepted).last().unwrap(),
        "ESTABLISHED -> CLOSE"
    );
    let server = close_of(ev, &c.accepted);
    assert_eq!(
        (&server["reset_by"], &server["failure"]),
        (&"remote".into(), &Value::Null)
    );
    assert_eq!(server["pid"], c.server_pid);
}

/// `n` connections the server closes with data unread: the kernel closes
/// such a socket, then sends a reset on it.
fn close_with_unread_data(n: usize) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..n {
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"never read").unwrap();
        let (server, _) = listener.accept().unwrap();
        server.peek(&mut [0]).unwrap(); // the data is there
        drop(server);
        let _ = client.read(&mut [0]); // the reset
    }
}

/// Where the kernel gives no socket storage (5.10), what socktrace knows of
/// a socket is kept by its address, and the kernel hands a freed socket's
/// memory to the next socket at once. A reset sent after a close marked a
/// closed socket's entry, which then outlived it: the next connection
/// there was "reset", and its TIME_WAIT not seen.
#[test]
fn a_closed_sockets_marks_do_not_pass_to_the_next_one() {
    let mut tracer = Tracer::start(&[]);
    for round in 0..8 {
        close_with_unread_data(3);
        let c = converse(&mut tracer, "127.0.0.1", "first", "wait");
        let server = close_of(&c.events, &c.accepted);
        assert_eq!(
            (&server["reset_by"], &server["time_wait"]),
            (&Value::Null, &true.into()),
            "round {round}: {server}"
        );
        let client = close_of(&c.events, &c.client);
        assert_eq!(client["reset_by"], Value::Null, "round {round}: {client}");
    }
}

/// Each socket's id is the kernel's cookie for it, in hex, which `ss -e`
/// shows (`sk:`), so an event joins with what ss lists: on every kernel,
/// whether socktrace's programs may ask for the cookie (5.12+) or read it
/// from the socket once cgroup hooks made the kernel give one.
#[test]
fn socket_ids_are_the_cookies_ss_shows() {
    let mut tracer = Tracer::start(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();
    let (sport, dport) = (u64::from(port), u64::from(cport));
    let established = |ev: &[Value], local: u64, remote: u64| {
        of_type(ev, "state")
            .any(|e| e["sport"] == local && e["dport"] == remote && e["new_state"] == "ESTABLISHED")
    };
    let events = tracer.wait_for("both ends established", |ev| {
        established(ev, dport, sport) && established(ev, sport, dport)
    });
    let ids = [
        (cport, sock_by_ports(events, dport, sport).unwrap()),
        (port, conn(events, sport, dport).unwrap()),
    ];
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let ss = Command::new("ss")
        .args(["-tanHe", "state", "established", &filter])
        .output()
        .expect("running ss (iproute2)");
    let listed = String::from_utf8_lossy(&ss.stdout).into_owned();
    for (local, sock) in ids {
        let line = listed
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("127.0.0.1:"))
                    .is_some_and(|w| w == format!("127.0.0.1:{local}"))
            })
            .unwrap_or_else(|| panic!("port {local} not in ss's {listed}"));
        let cookie = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sk:"))
            .unwrap_or_else(|| panic!("no sk: in {line}"));
        // Both in hex, ss's without leading zeros.
        let hex = |id: &str| u64::from_str_radix(id, 16).expect("a hex id");
        assert_eq!(hex(&sock), hex(cookie), "port {local}: {line}");
    }
}

/// A client that closes first while the server holds on: its socket
/// leaves for a timewait socket (FIN_WAIT2 substate) at the close, before
/// any FIN of the server's. `close()` set RCV_SHUTDOWN, which was taken for
/// the peer's FIN: one byte less was reported received.
#[test]
fn bytes_received_are_exact_when_the_peer_has_not_closed() {
    use std::io::{Read as _, Write as _};
    require_time_wait_room();
    let mut tracer = Tracer::start(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.read_exact(&mut vec![0; REQ as usize]).unwrap();
        c.write_all(&vec![0; REPLY as usize]).unwrap();
        let _ = held.recv(); // the connection stays open until then
    });
    let (port_arg, req, reply) = (port.to_string(), REQ.to_string(), REPLY.to_string());
    let client = Op::start(&["tcp-client", "127.0.0.1", &port_arg, &req, &reply, "close"]);
    let (pid, cport) = (client.pid(), client.port());
    client.wait();
    let events = tracer.wait_for("the client's close record", |ev| {
        of_type(ev, "close").any(|e| e["pid"] == pid && e["sport"] == cport)
    });
    let close = of_type(events, "close")
        .find(|e| e["pid"] == pid && e["sport"] == cport)
        .unwrap()
        .clone();
    release.send(()).unwrap();
    server.join().unwrap();
    assert_eq!(
        (&close["bytes_sent"], &close["bytes_received"]),
        (&REQ.into(), &REPLY.into()),
        "{close}"
    );
    assert_eq!(
        (&close["closed_first"], &close["time_wait"]),
        (&"local".into(), &true.into())
    );
}

#[test]
fn refused_connect_says_refused() {
    let mut tracer = Tracer::start(&[]);
    let port = free_port("127.0.0.1") as u64;
    let report = Op::run(&["connect", "127.0.0.1", &port.to_string()]);
    let pid = report["pid"].clone();
    assert_eq!(report["errno"], libc::ECONNREFUSED);
    let events = tracer.wait_for("the close record", |ev| {
        of_type(ev, "close").any(|e| e["dport"] == port && e["pid"] == pid)
    });
    let close = of_type(events, "close")
        .find(|e| e["dport"] == port)
        .unwrap();
    assert_eq!(
        close["failure"],
        serde_json::json!({"reason": "refused", "errno": 111, "error": "ECONNREFUSED"})
    );
    assert_eq!(
        (&close["opened"], &close["reset_by"]),
        (&"active".into(), &"remote".into())
    );
}

#[test]
fn unanswered_connect_says_timed_out() {
    require_root();
    let ns = Netns::new();
    // One SYN retry: ETIMEDOUT after about 3 s instead of 2 minutes.
    ns.one_syn_retry();
    let mut tracer = Tracer::start(&[]);
    // The listener's accept queue is full, so the kernel drops the SYNs.
    let op = Op::spawn(ns.exec(&[sockops_bin(), "syn-timeout"]));
    let (pid, port) = (op.pid(), op.port());
    assert_eq!(op.report["errno"], libc::ETIMEDOUT);
    op.wait();
    let events = tracer.wait_for("the timed-out close", |ev| {
        of_type(ev, "close").any(|e| e["pid"] == pid && e["failure"] != Value::Null)
    });
    let close = of_type(events, "close")
        .find(|e| e["pid"] == pid && e["failure"] != Value::Null)
        .unwrap();
    assert_eq!(
        close["failure"],
        serde_json::json!({"reason": "timed_out", "errno": 110, "error": "ETIMEDOUT"})
    );
    assert_eq!(close["dport"], port);
    assert_eq!(close["netns"], ns.inode(), "the test namespace's inode");
}

#[test]
fn another_namespaces_sockets_are_not_judged_by_our_dumps() {
    require_root();
    let ns = Netns::new();
    let mut tracer = Tracer::start(&[]);
    let mut op = Op::spawn(ns.exec(&[sockops_bin(), "pair", "127.0.0.1"]));
    let (pid, port, cport) = (
        op.pid(),
        op.port(),
        op.report["client_port"].as_u64().unwrap(),
    );
    // Idle for longer than socktrace takes to forget a connection of its
    // own namespace that its sock_diag dumps no longer list.
    std::thread::sleep(std::time::Duration::from_secs(3));
    op.proceed();
    op.wait();
    let events = tracer.wait_for("both close records", |ev| {
        of_type(ev, "close").filter(|e| e["pid"] == pid).count() == 2
    });
    let client = conn(events, cport, port).expect("the client's transitions");
    let close = close_of(events, &client);
    assert_eq!(
        (&close["opened"], &close["time_wait"], &close["netns"]),
        (&"active".into(), &true.into(), &ns.inode().into())
    );
    assert!(close["duration_ms"].as_f64().unwrap() >= 3000.0, "{close}");
    // Its TIME_WAIT lasts 60 s where our dumps cannot see it: no poll
    // ends it; at exit its end is computed (entry + 60 s).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let done = tracer.stop();
    let ends: Vec<&Value> = states_of(&done.events, &client)
        .into_iter()
        .filter(|e| e["old_state"] == "TIME_WAIT")
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["timewait_end"], "timeout", "{}", ends[0]);
}

#[test]
fn socket_used_after_fork_belongs_to_the_child() {
    let mut tracer = Tracer::start(&[]);
    let s = Op::start(&[
        "tcp-server",
        "127.0.0.1",
        &REQ.to_string(),
        &REPLY.to_string(),
        "wait",
    ]);
    let port = s.port();
    let f = Op::start(&[
        "fork-client",
        "127.0.0.1",
        &port.to_string(),
        &REQ.to_string(),
        &REPLY.to_string(),
    ]);
    let (parent, child, cport) = (f.pid(), f.report["child"].as_u64().unwrap(), f.port());
    f.wait();
    s.wait();
    let events = tracer.wait_for("the client's close record", |ev| {
        has_close(ev, sock_by_ports(ev, cport, port).as_ref())
    });
    let sock = sock_by_ports(events, cport, port).unwrap();
    let pids: Vec<u64> = owners(events, &sock).iter().map(|(pid, _)| *pid).collect();
    assert_eq!(
        pids,
        [parent, parent, child, child, child],
        "{:?}",
        transitions(events, &sock)
    );
    assert_eq!(close_of(events, &sock)["pid"], child);
}

#[test]
fn connection_opened_before_start() {
    require_root();
    let mut pair = Op::start(&["pair", "127.0.0.1"]);
    let (pid, port, cport) = (
        pair.pid(),
        pair.port(),
        pair.report["client_port"].as_u64().unwrap(),
    );
    // Only the pair's sockets: the host may hold many others.
    let mut tracer = Tracer::start(&["--snapshot", "--port", &port.to_string()]);
    pair.proceed();
    pair.wait();
    let events = tracer.wait_for("both close records", |ev| {
        has_close(ev, conn(ev, cport, port).as_ref())
            && has_close(ev, conn(ev, port, cport).as_ref())
    });
    // The snapshot named all three sockets and their owner.
    let existing: Vec<&Value> = of_type(events, "socket")
        .filter(|e| e["pid"] == pid)
        .collect();
    let mut states: Vec<(&str, u64)> = existing
        .iter()
        .map(|e| (e["state"].as_str().unwrap(), e["sport"].as_u64().unwrap()))
        .collect();
    states.sort();
    let mut expected = [
        ("ESTABLISHED", port),
        ("ESTABLISHED", cport),
        ("LISTEN", port),
    ];
    expected.sort();
    assert_eq!(states, expected);
    // Its later events carry that owner, learnt from the snapshot or from
    // the close itself.
    let client = conn(events, cport, port).unwrap();
    assert_eq!(
        existing
            .iter()
            .filter(|e| e["sock"] == client.as_str())
            .count(),
        1,
        "same id as ss"
    );
    for e in states_of(events, &client) {
        assert_eq!(e["pid"], pid, "{e}");
    }
    let close = close_of(events, &client);
    assert_eq!(
        (&close["pid"], &close["predates_start"]),
        (&pid.into(), &true.into())
    );
    assert_eq!(close["closed_first"], "local");
}

#[test]
fn more_connections_than_the_tracker_holds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepter = std::thread::spawn(move || {
        (0..40)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<_>>()
    });
    let mut tracer = Tracer::start(&["--track-limit", "8"]);
    let mut hold = Op::start(&["hold", "127.0.0.1", &port.to_string(), "40"]);
    let pid = hold.pid();
    let ports: Vec<u64> = hold.report["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    let accepted = accepter.join().unwrap();
    hold.proceed();
    hold.wait();
    drop(accepted);
    let events = tracer.wait_for("40 client sockets to end", |ev| {
        ports
            .iter()
            .all(|&p| closed(ev, sock_by_ports(ev, p, port as u64).as_ref()))
    });
    // Every transition of every client socket is still the client's.
    for &p in &ports {
        let sock = sock_by_ports(events, p, port as u64).unwrap();
        assert!(
            owners(events, &sock).iter().all(|(owner, _)| *owner == pid),
            "{p}"
        );
    }
    let done = tracer.stop();
    let summary = done.stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        summary.contains("connections dropped from tracking (table full)"),
        "{summary}"
    );
}

/// A cgroup of the test's own, removed when dropped.
struct TestCgroup(std::path::PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A 64-hex-digit container id of the test's own.
fn container_id() -> String {
    format!("{:064x}", {
        use std::hash::{BuildHasher as _, RandomState};
        RandomState::new().hash_one(unique_name("cgroup"))
    })
}

/// `cmd` run in the cgroup at `dir`.
fn in_cgroup(mut cmd: Command, dir: &std::path::Path) -> Command {
    use std::os::unix::process::CommandExt as _;
    let procs = dir.join("cgroup.procs");
    // SAFETY: only a write(2) between fork and exec: into the cgroup.
    unsafe { cmd.pre_exec(move || std::fs::write(&procs, b"0")) };
    cmd
}

#[test]
fn events_name_the_cgroup_and_the_container() {
    use std::os::unix::fs::MetadataExt as _;
    require_root();
    let id = container_id();
    let name = format!("docker-{id}.scope");
    let cgroup = TestCgroup(cgroup_v2_root().join(&name));
    std::fs::create_dir(&cgroup.0).unwrap();
    let inode = std::fs::metadata(&cgroup.0).unwrap().ino();

    let mut tracer = Tracer::start(&[]);
    let port = free_port("127.0.0.1").to_string();
    let mut cmd = Command::new(sockops_bin());
    cmd.args(["connect", "127.0.0.1", &port]);
    let op = Op::spawn(in_cgroup(cmd, &cgroup.0));
    let pid = op.pid();
    op.wait();
    let events = tracer.wait_for("the close record", |ev| {
        of_type(ev, "close").any(|e| e["pid"] == pid)
    });
    for e in events.iter().filter(|e| e["pid"] == pid) {
        assert_eq!(e["cgroup_id"], inode, "{e}");
        assert_eq!(e["cgroup"], format!("/{name}"), "{e}");
        assert_eq!(e["container"], id.as_str(), "{e}");
    }
}

#[test]
fn in_a_private_cgroup_namespace_cgroups_are_the_hosts() {
    use std::os::unix::fs::MetadataExt as _;
    require_root();
    // The host's tree: BASE/pod/ctr is the cgroup of socktrace's own
    // container, the root of its cgroup namespace (as containerd gives a
    // pod); BASE/docker-ID.scope a container beside it.
    let root = cgroup_v2_root();
    let base = unique_name("cgns");
    let id = container_id();
    let docker = format!("/{base}/docker-{id}.scope");
    let made = |path: &str| {
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup(dir)
    };
    // Removed children first (dropped in the reverse order of creation).
    let _base = made(&base);
    let _pod = made(&format!("{base}/pod"));
    let ns_root = made(&format!("{base}/pod/ctr"));
    let docker_dir = made(&docker);
    let (ns_root, docker_dir) = (&ns_root.0, &docker_dir.0);
    let inode = std::fs::metadata(docker_dir).unwrap().ino();
    // A server in the container from before socktrace starts: its owner
    // comes from the start-up iterator, its cgroup id from the kernel
    // (/proc/PID/cgroup would read `/../../docker-ID.scope` in there).
    let mut server = Command::new(sockops_bin());
    server.args(["tcp-server", "127.0.0.1", "1", "1", "wait"]);
    let server = Op::spawn(in_cgroup(server, docker_dir));
    let (server_pid, port) = (server.pid(), server.port().to_string());

    // socktrace as the DaemonSet runs it in such a pod: in the namespace,
    // its own cgroupfs mounted (showing only the namespace), and the
    // host's bind-mounted read-only over /sys/fs/cgroup.
    let mounts = scratch_dir("cgns-mounts");
    let (host, own) = (mounts.join("host"), mounts.join("own"));
    let inside = format!(
        "set -e; mkdir {host} {own}; mount --bind {root} {host}; mount -t cgroup2 none {own}; \
         mount --bind {host} /sys/fs/cgroup; mount -o remount,bind,ro /sys/fs/cgroup; \
         umount {host}; exec {bin} --json --snapshot --port {port}",
        host = host.display(),
        own = own.display(),
        root = root.display(),
        bin = socktrace_bin().display(),
    );
    let script = format!(
        "echo $$ > {procs} && exec unshare --cgroup --mount --propagation private sh -c '{inside}'",
        procs = ns_root.join("cgroup.procs").display(),
    );
    let mut command = Command::new("sh");
    command.args(["-c", &script]);
    let mut tracer = Tracer::spawn(command);
    // The container's processes now: a client, and a UDP bind released
    // at once (only the cgroup hooks on the hierarchy's root see that
    // release: the container is outside socktrace's namespace).
    let mut client = Command::new(sockops_bin());
    client.args(["tcp-client", "127.0.0.1", &port, "1", "1", "close"]);
    let client = Op::spawn(in_cgroup(client, docker_dir));
    let client_pid = client.pid();
    client.wait();
    server.wait();
    let mut bind = Command::new(sockops_bin());
    bind.args(["bind", "udp", "127.0.0.1", &port]);
    let bind = Op::spawn(in_cgroup(bind, docker_dir));
    let bind_pid = bind.pid();
    bind.wait();
    tracer.wait_for("the release and both closes", |ev| {
        of_type(ev, "release").any(|e| e["pid"] == bind_pid)
            && of_type(ev, "close")
                .filter(|e| e["pid"] == client_pid || e["pid"] == server_pid)
                .count()
                >= 2
    });
    let done = tracer.stop();
    std::fs::remove_dir_all(&mounts).expect("removing the mount points");
    assert!(done.status.success(), "{}", done.stderr);
    let degraded = degraded_beyond_the_kernel(&done.stderr);
    assert!(degraded.is_empty(), "{degraded:?}");
    // The snapshot's listener (from the iterator), the client's transitions and
    // close, the server's, the release: all name the host's cgroup and
    // the container.
    let theirs: Vec<&Value> = done
        .events
        .iter()
        .filter(|e| {
            [server_pid, client_pid, bind_pid]
                .map(Value::from)
                .contains(&e["pid"])
        })
        .collect();
    let snapshot = theirs.iter().filter(|e| e["type"] == "socket").count();
    assert_eq!(snapshot, 1, "the listener in the snapshot: {theirs:?}");
    for e in &theirs {
        assert_eq!(e["cgroup"], docker.as_str(), "{e}");
        assert_eq!(e["container"], id.as_str(), "{e}");
        assert_eq!(e["cgroup_id"], inode, "{e}");
    }
}

#[test]
fn time_wait_ended_by_reuse_is_seen_gone() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut c, _) = listener.accept().unwrap();
            c.read_exact(&mut vec![0; REQ as usize]).unwrap();
            c.write_all(&vec![0; REPLY as usize]).unwrap();
            let _ = c.read_to_end(&mut Vec::new());
        }
    });
    let lport = free_port("127.0.0.1");
    let client = || {
        let mut cmd = Command::new(sockops_bin());
        cmd.args(["tcp-client", "127.0.0.1", &port.to_string()])
            .args([REQ.to_string(), REPLY.to_string(), "close".into()])
            .env("SOCKOPS_LOCAL_PORT", lport.to_string());
        Op::spawn(cmd)
    };
    require_time_wait_room();
    let mut tracer = Tracer::start(&["--tw-poll", "0.2"]);
    let first = client();
    let pid = first.pid();
    first.wait();
    let events = tracer.wait_for("the first client's TIME_WAIT", |ev| {
        of_type(ev, "close").any(|e| e["pid"] == pid && e["time_wait"] == true)
    });
    let sock = sock_by_ports(events, lport as u64, port as u64).unwrap();
    // What the events say is in TIME_WAIT is what ss sees.
    let ours: Vec<String> = of_type(events, "state")
        .filter(|e| e["new_state"] == "TIME_WAIT" && e["sport"] == lport)
        .map(|e| {
            format!(
                "{}:{} {}:{}",
                e["saddr"].as_str().unwrap(),
                e["sport"],
                e["daddr"].as_str().unwrap(),
                e["dport"]
            )
        })
        .collect();
    let filter = format!("sport = :{lport}");
    let ss = Command::new("ss")
        .args(["-tanH", "state", "time-wait", &filter])
        .output()
        .unwrap();
    let seen: Vec<String> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(ours, seen);
    // Linux lets a connect reuse a loopback TIME_WAIT (tcp_tw_reuse=2) once
    // its last timestamp is a second old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    client().wait();
    server.join().unwrap();
    let events = tracer.wait_for("the TIME_WAIT to be seen gone", |ev| {
        states_of(ev, &sock)
            .iter()
            .any(|e| e["old_state"] == "TIME_WAIT")
    });
    let states = states_of(events, &sock);
    let end = states.last().unwrap();
    assert_eq!(
        (&end["new_state"], &end["timewait_end"]),
        (&"CLOSE".into(), &"observed".into())
    );
    assert_eq!(
        (&end["pid"], &end["sport"], &end["dport"]),
        (&pid.into(), &lport.into(), &port.into())
    );
}

/// Under churn, a connect or close is often interrupted on its CPU by a
/// softirq that moves another connection on: the kernel skips the state
/// program then (it is running), and its catcher does its work. Each of
/// churn's connections is seen to end on both sides, bar what socktrace
/// says it lost.
#[test]
fn churn_ends_every_connection_or_counts_it_lost() {
    let port = free_port("0.0.0.0");
    let p = port.to_string();
    let mut tracer = Tracer::start(&["--port", &p]);
    let (_, connections) = churn(port, 2000, "client");
    // Churn's connections, both sides. A slow machine may also see a
    // server-side child reset in SYN_RECV (its client's ACK came too
    // late): a socket of its own, never established, not one of churn's.
    let ends = |ev: &[Value]| {
        of_type(ev, "close")
            .filter(|c| c["state_ms"].get("ESTABLISHED").is_some())
            .count() as u64
    };
    // Cumulative, in each loss record.
    let lost = |ev: &[Value]| {
        of_type(ev, "loss")
            .map(|e| e["recursion_misses"].as_u64().unwrap() + e["ring_drops"].as_u64().unwrap())
            .max()
            .unwrap_or(0)
    };
    tracer.wait_for("both ends of every connection", |ev| {
        ends(ev) + lost(ev) >= 2 * connections
    });
    let done = tracer.stop();
    let mut by_sock: std::collections::BTreeMap<&str, Vec<&Value>> = Default::default();
    for close in of_type(&done.events, "close") {
        by_sock
            .entry(close["sock"].as_str().unwrap())
            .or_default()
            .push(close);
    }
    let twice: Vec<_> = by_sock.values().filter(|c| c.len() > 1).collect();
    assert!(twice.is_empty(), "connections ended twice: {twice:?}");
    let (ends, lost) = (ends(&done.events), lost(&done.events));
    assert!(
        ends <= 2 * connections && ends + lost >= 2 * connections,
        "{connections} connections: {ends} ends seen, {lost} events lost"
    );
}
