//! socktrace end to end: binds, listens and the command line, on the real
//! kernel with real sockets. Connections are in lifecycle.rs.
mod common;

use common::*;
use serde_json::Value;

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
        &["--duration", "NaN"],
        &["--port", "0"],
        &["--port", "65536"],
        &["--port", "http"],
        &["--nice", "20"],
        &["--track-limit", "0"],
        &["--tw-poll", "0"],
        &["--metrics", "9400"],
        &["--metrics", "localhost"],
        &["--user", "no-such-user-here"],
        &["watch", "--lifecycle", "extra-argument"],
        &["listeners", "--short", "0"],
        &["listeners", "--short", "-5"],
        &["listeners", "--interval", "never"],
        &["timewait", "--threshold", "0"],
        &["timewait", "--threshold", "101"],
        &["timewait", "--top", "0"],
        &["timewait", "--interval", "0"],
        &["record"],
        &["analyze"],
        &["analyze", "x.jsonl", "--report", "everything"],
        &["analyze", "x.jsonl", "--plot", "x.svg"],
        &["--json", "listeners"],
        &["no-such-command"],
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

#[test]
fn a_port_filter_drops_other_sockets_in_the_kernel() {
    // Our sockets use other ports; nothing may reach the ring (the summary
    // counts every record read from it, before any userspace filtering).
    let wanted = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&["--port", &wanted.to_string()]);
    let report = Op::run(&["bind", "tcp", "127.0.0.1", "0"]);
    let other = Op::start(&["tcp-server", "127.0.0.1", "1", "1", "wait"]);
    let port = other.port().to_string();
    Op::run(&["tcp-client", "127.0.0.1", &port, "1", "1", "close"]);
    other.wait();
    // And one bind of the wanted port, which must come through.
    let wanted_bind = Op::run(&["bind", "udp", "127.0.0.1", &wanted.to_string()]);
    // The UDP socket's close is its release; the ring is read in order.
    let pid = wanted_bind["pid"].as_u64().unwrap();
    tracer.wait_for("the wanted port's release", |ev| {
        of_type(ev, "release").any(|e| e["pid"] == pid)
    });
    let mut done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    assert_ne!(report["port"], wanted);
    done.events.retain(|e| !only_skipped_runs(e));
    let kinds: Vec<(&str, u64)> = done
        .events
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["pid"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(kinds, [("bind", pid), ("release", pid), ("summary", 0)]);
    let counted = &done.events[2]["events"];
    assert_eq!(
        (&counted["bind"], &counted["release"], &counted["state"]),
        (&1.into(), &1.into(), &0.into())
    );
    // The kernel put these two in the ring and nothing else: the other
    // sockets cost no ring space at all.
    assert_eq!(
        (&counted["kernel_emitted"], &counted["filtered"]),
        (&2.into(), &0.into())
    );
    let release = &done.events[1];
    assert_eq!(release["port"], wanted);
    assert_eq!(release["proto"], "udp");
    assert_eq!(release["sock"], done.events[0]["sock"]);
    let summary = done.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("socktrace: 2 events (state 0, bind 1, listen 0, release 1)"),
        "{summary}"
    );
}

#[test]
fn sigterm_stops_cleanly_with_everything_drained() {
    let mut tracer = Tracer::start(&[]);
    let report = Op::run(&["listen", "127.0.0.1", "3"]);
    let pid = report["pid"].clone();
    tracer.wait_for("the listen", |ev| {
        of_type(ev, "listen").any(|e| e["pid"] == pid)
    });
    let done = tracer.signal(libc::SIGTERM);
    assert!(done.status.success(), "exit: {}", done.status);
    let summary = done.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains("listen 1") || summary.contains("listen "),
        "{summary}"
    );
    // The listener's LISTEN -> CLOSE came before the signal: it is there.
    let sock = of_type(&done.events, "listen")
        .find(|e| e["pid"] == pid)
        .unwrap()["sock"]
        .clone();
    assert!(
        of_type(&done.events, "state").any(|e| e["sock"] == sock && e["new_state"] == "CLOSE"),
        "drained before exit"
    );
}
