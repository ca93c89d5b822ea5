//! socktrace end to end: real kernel, real sockets, exact events.
mod common;

use common::*;
use serde_json::Value;

/// Listen, connect, accept, exchange, client closes first; every socket's
/// transitions, ports, family and the pids of the calls.
fn tcp_conversation(ip: &str, family: &str) {
    let mut tracer = Tracer::start(&[]);
    let server = Op::start(&["tcp-server", ip]);
    let port = server.port();
    let client = Op::start(&["tcp-client", ip, &port.to_string()]);
    let cport = client.port();
    let (server_pid, client_pid) = (server.pid(), client.pid());
    client.wait();
    server.wait();

    let events = tracer.wait_for("both ends and the listener to close", |ev| {
        let client = sock_by_ports(ev, cport, port);
        let accepted = of_type(ev, "state")
            .find(|e| e["sport"] == port && e["dport"] == cport && e["old_state"] != "CLOSE")
            .map(|e| e["sock"].as_str().unwrap().to_string());
        let listener = of_type(ev, "listen")
            .find(|e| e["pid"] == server_pid)
            .map(|e| e["sock"].as_str().unwrap().to_string());
        closed(ev, client.as_ref())
            && closed(ev, accepted.as_ref())
            && closed(ev, listener.as_ref())
    });

    // The server's bind and listen, stamped with the server.
    let bind: Vec<&Value> = of_type(events, "bind")
        .filter(|e| e["pid"] == server_pid)
        .collect();
    assert_eq!(bind.len(), 1, "{bind:?}");
    let b = bind[0];
    assert_eq!((&b["proto"], &b["family"]), (&"tcp".into(), &family.into()));
    assert_eq!(
        (&b["addr"], &b["port"], &b["requested_port"]),
        (&ip.into(), &port.into(), &0.into())
    );
    assert_eq!((&b["errno"], &b["error"]), (&0.into(), &Value::Null));
    let listen: Vec<&Value> = of_type(events, "listen")
        .filter(|e| e["pid"] == server_pid)
        .collect();
    assert_eq!(listen.len(), 1, "{listen:?}");
    let l = listen[0];
    assert_eq!(
        (&l["port"], &l["backlog"], &l["errno"]),
        (&port.into(), &16.into(), &0.into())
    );
    assert_eq!(
        (&l["proto"], &l["family"], &l["addr"]),
        (&"tcp".into(), &family.into(), &ip.into())
    );
    let listener = l["sock"].as_str().unwrap();
    assert_eq!(b["sock"], l["sock"], "bind and listen name the same socket");
    assert_eq!(
        transitions(events, listener),
        ["CLOSE -> LISTEN", "LISTEN -> CLOSE"]
    );
    assert_eq!(states_of(events, listener)[0]["pid"], server_pid);

    // The client's socket: active open, active close (it ends in TIME_WAIT,
    // which the full socket shows as FIN_WAIT2 -> CLOSE).
    let csock = sock_by_ports(events, cport, port).expect("client socket");
    assert_eq!(
        transitions(events, &csock),
        [
            "CLOSE -> SYN_SENT",
            "SYN_SENT -> ESTABLISHED",
            "ESTABLISHED -> FIN_WAIT1",
            "FIN_WAIT1 -> FIN_WAIT2",
            "FIN_WAIT2 -> CLOSE",
        ]
    );
    let cstates = states_of(events, &csock);
    assert_eq!(cstates[0]["pid"], client_pid, "connect() is the client's");
    assert_eq!(cstates[2]["pid"], client_pid, "close() is the client's");
    for e in &cstates {
        assert_eq!((&e["family"], &e["proto"]), (&family.into(), &"tcp".into()));
        assert_eq!((&e["daddr"], &e["dport"]), (&ip.into(), &port.into()));
        assert_eq!(e["owner_source"], "current");
    }
    assert!(
        cstates[1..]
            .iter()
            .all(|e| e["sport"] == cport && e["saddr"] == ip)
    );

    // The accepted socket: passive open, passive close.
    let accepted = of_type(events, "state")
        .find(|e| e["sport"] == port && e["dport"] == cport && e["old_state"] != "CLOSE")
        .map(|e| e["sock"].as_str().unwrap().to_string())
        .expect("accepted socket");
    assert_ne!(accepted, listener);
    assert_eq!(
        transitions(events, &accepted),
        [
            "LISTEN -> SYN_RECV",
            "SYN_RECV -> ESTABLISHED",
            "ESTABLISHED -> CLOSE_WAIT",
            "CLOSE_WAIT -> LAST_ACK",
            "LAST_ACK -> CLOSE",
        ]
    );
    assert_eq!(
        states_of(events, &accepted)[3]["pid"],
        server_pid,
        "close() is the server's"
    );

    let done = tracer.stop();
    assert!(done.status.success(), "socktrace exit: {}", done.status);
    assert!(
        done.stderr.contains(" events (state "),
        "no summary:\n{}",
        done.stderr
    );
}

#[test]
fn tcp_conversation_ipv4() {
    tcp_conversation("127.0.0.1", "ipv4");
}

#[test]
fn tcp_conversation_ipv6() {
    tcp_conversation("::1", "ipv6");
}

#[test]
fn connection_refused() {
    let mut tracer = Tracer::start(&[]);
    let port = free_port("127.0.0.1") as u64;
    let op = Op::start(&["connect", "127.0.0.1", &port.to_string()]);
    let pid = op.pid();
    assert_eq!(op.report["errno"], libc::ECONNREFUSED);
    op.wait();
    let events = tracer.wait_for("the refused socket to close", |ev| {
        let sock = of_type(ev, "state")
            .find(|e| e["dport"] == port && e["pid"] == pid)
            .map(|e| e["sock"].as_str().unwrap().to_string());
        closed(ev, sock.as_ref())
    });
    let sock = of_type(events, "state")
        .find(|e| e["dport"] == port && e["pid"] == pid)
        .map(|e| e["sock"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(
        transitions(events, &sock),
        ["CLOSE -> SYN_SENT", "SYN_SENT -> CLOSE"]
    );
}

/// Runs `sockops bind PROTO IP PORT` under a tracer; returns the child's
/// report and its one bind event.
fn traced_bind(proto: &str, ip: &str, port: u16) -> (Value, Value) {
    let mut tracer = Tracer::start(&[]);
    let report = Op::run(&["bind", proto, ip, &port.to_string()]);
    let pid = report["pid"].clone();
    let events = tracer.wait_for("the bind", |ev| {
        of_type(ev, "bind").any(|e| e["pid"] == pid)
    });
    let binds: Vec<&Value> = of_type(events, "bind")
        .filter(|e| e["pid"] == pid)
        .collect();
    assert_eq!(binds.len(), 1, "{binds:?}");
    (report, binds[0].clone())
}

#[test]
fn udp_bind_to_a_chosen_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (report, e) = traced_bind("udp", "127.0.0.1", port);
    assert_eq!(report["errno"], 0);
    assert_eq!(
        (&e["proto"], &e["family"], &e["addr"]),
        (&"udp".into(), &"ipv4".into(), &"127.0.0.1".into())
    );
    assert_eq!(
        (&e["port"], &e["requested_port"], &e["errno"]),
        (&port.into(), &port.into(), &0.into())
    );
}

#[test]
fn udp_bind_ipv6_port_zero_reports_the_kernels_pick() {
    let (report, e) = traced_bind("udp", "::1", 0);
    let chosen = report["port"].as_u64().unwrap();
    assert_ne!(chosen, 0);
    assert_eq!(
        (&e["proto"], &e["family"], &e["addr"]),
        (&"udp".into(), &"ipv6".into(), &"::1".into())
    );
    assert_eq!(
        (&e["port"], &e["requested_port"]),
        (&chosen.into(), &0.into())
    );
}

#[test]
fn tcp_bind_port_zero_reports_the_kernels_pick() {
    let (report, e) = traced_bind("tcp", "127.0.0.1", 0);
    let chosen = report["port"].as_u64().unwrap();
    assert_ne!(chosen, 0);
    assert_eq!(
        (&e["proto"], &e["port"], &e["requested_port"]),
        (&"tcp".into(), &chosen.into(), &0.into())
    );
}

#[test]
fn bind_failing_with_eaddrinuse() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (report, e) = traced_bind("tcp", "127.0.0.1", port);
    assert_eq!(report["errno"], libc::EADDRINUSE);
    assert_eq!(
        (&e["errno"], &e["error"]),
        (&libc::EADDRINUSE.into(), &"EADDRINUSE".into())
    );
    assert_eq!(
        (&e["proto"], &e["port"], &e["requested_port"]),
        (&"tcp".into(), &port.into(), &port.into())
    );
    drop(holder);
}

#[test]
fn listen_without_bind_reports_the_real_port() {
    let mut tracer = Tracer::start(&[]);
    let report = Op::run(&["listen", "127.0.0.1", "7"]);
    let (pid, port) = (report["pid"].clone(), report["port"].as_u64().unwrap());
    assert_ne!(port, 0);
    let events = tracer.wait_for("the listen and its CLOSE", |ev| {
        let sock = of_type(ev, "listen")
            .find(|e| e["pid"] == pid)
            .map(|e| e["sock"].as_str().unwrap().to_string());
        closed(ev, sock.as_ref())
    });
    let l = of_type(events, "listen").find(|e| e["pid"] == pid).unwrap();
    assert_eq!(
        (&l["port"], &l["backlog"], &l["errno"]),
        (&port.into(), &7.into(), &0.into())
    );
    assert_eq!(
        (&l["addr"], &l["proto"]),
        (&"0.0.0.0".into(), &"tcp".into())
    );
    let sock = l["sock"].as_str().unwrap();
    // CLOSE -> LISTEN fires before the kernel picks the port: sport 0 there.
    let states = states_of(events, sock);
    assert_eq!(
        transitions(events, sock),
        ["CLOSE -> LISTEN", "LISTEN -> CLOSE"]
    );
    assert_eq!((&states[0]["pid"], &states[0]["sport"]), (&pid, &0.into()));
}

#[test]
fn duration_stops_with_a_summary() {
    let tracer = Tracer::start(&["--duration", "0.5"]);
    let done = tracer.finish();
    assert!(done.status.success(), "exit: {}", done.status);
    let summary = done.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("socktrace: ") && summary.contains(" events (state "),
        "{}",
        done.stderr
    );
}

#[test]
fn bad_flags_get_one_line_and_exit_2() {
    for args in [
        &["--duration", "soon"][..],
        &["--no-such-flag"],
        &["--duration", "-3"],
    ] {
        let out = std::process::Command::new(socktrace_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("socktrace: "), "{stderr}");
    }
}

#[test]
fn without_privileges_it_says_what_is_missing() {
    // util-linux's setpriv drops every capability before exec.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(socktrace_bin())
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "socktrace: needs root (or CAP_BPF and CAP_PERFMON); missing: CAP_BPF, CAP_PERFMON\n"
    );
    assert!(out.stdout.is_empty());
}
