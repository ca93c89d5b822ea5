//! Filters end to end: what the kernel drops never reaches the ring (the
//! summary's `kernel_emitted` counts what did), an ss expression on real
//! sockets delivers exactly its connection, `timewait` rows filtered by
//! address and command, and bad filters are one line and exit 2.
mod common;

use std::{net::TcpListener, process::Command, thread, time::Duration};

use common::*;
use serde_json::Value;

/// The `events` object of the summary line.
fn counted(events: &[Value]) -> &Value {
    &of_type(events, "summary").last().expect("a summary line")["events"]
}

/// Records the kernel put in the ring: every event except the
/// `TIME_WAIT -> CLOSE` ends userspace works out itself.
fn from_ring(events: &[Value]) -> u64 {
    let n = |kind: &str| of_type(events, kind).count() as u64;
    let worked_out = of_type(events, "state")
        .filter(|e| e.get("timewait_end").is_some())
        .count() as u64;
    n("state") + n("bind") + n("listen") + n("release") - worked_out
}

/// A client bound to local `port` talks to a server started now; the
/// client closes first. Returns the client's pid.
fn connect_from(port: u16) -> u64 {
    let server = Op::start(&["tcp-server", "127.0.0.1", "1", "1", "wait"]);
    let mut cmd = Command::new(sockops_bin());
    cmd.env("SOCKOPS_LOCAL_PORT", port.to_string()).args([
        "tcp-client",
        "127.0.0.1",
        &server.port().to_string(),
        "1",
        "1",
        "close",
    ]);
    let client = Op::spawn(cmd);
    let pid = client.pid();
    client.wait();
    server.wait();
    pid
}

#[test]
fn kernel_filters_drop_events_before_the_ring() {
    require_time_wait_room();
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let ours = |e: &&Value| e["sport"] == port || e["dport"] == port;

    // The port alone: both ends of the connection come through, and the
    // kernel emitted exactly what was delivered.
    let mut tracer = Tracer::start(&["--port", &p]);
    let client = connect_from(port);
    tracer.wait_for("both ends' close records", |ev| {
        of_type(ev, "close").filter(ours).count() == 2
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let events = counted(&done.events);
    let delivered = from_ring(&done.events);
    assert!(
        of_type(&done.events, "state").any(|e| e["pid"] == client),
        "the client's transitions"
    );
    assert!(delivered >= 10, "{delivered} records");
    assert_eq!(events["kernel_emitted"], delivered, "{events}");
    assert_eq!(events["filtered"], 0, "{events}");

    // The same port and a process that does nothing: the kernel drops
    // every event of the same traffic after resolving its owner, before
    // reserving any ring space.
    let mut idle = Command::new("sleep").arg("60").spawn().expect("sleep");
    let tracer = Tracer::start(&["--port", &p, "--pid", &idle.id().to_string()]);
    connect_from(port);
    // Whatever the kernel sent would be read within 10 ms.
    thread::sleep(Duration::from_millis(300));
    let done = tracer.stop();
    let _ = idle.kill();
    let _ = idle.wait();
    assert!(done.status.success(), "{}", done.stderr);
    let events = counted(&done.events);
    assert_eq!(events["kernel_emitted"], 0, "{events}");
    for kind in ["state", "bind", "listen", "release", "close", "filtered"] {
        assert_eq!(events[kind], 0, "{kind}: {events}");
    }
    let traffic: Vec<&Value> = done
        .events
        .iter()
        .filter(|e| !only_skipped_runs(e))
        .collect();
    assert_eq!(traffic.len(), 1, "only the summary: {traffic:?}");
}

#[test]
fn a_connection_handed_to_another_process_ends_in_tracking_too() {
    require_time_wait_room();
    let server = Op::start(&["tcp-server", "127.0.0.1", "1", "1", "wait"]);
    let port = server.port().to_string();
    let mut cmd = Command::new(sockops_bin());
    cmd.env("SOCKOPS_WAIT", "1")
        .args(["fork-client", "127.0.0.1", &port, "1", "1"]);
    let mut parent = Op::spawn(cmd);
    let pid = parent.pid();
    // The parent connects; its child talks and closes (client first).
    let mut tracer = Tracer::start(&["--pid", &pid.to_string(), "--dport", &port]);
    parent.proceed();
    parent.wait();
    server.wait();
    tracer.wait_for("the parent's transitions", |ev| {
        of_type(ev, "state").filter(|e| e["pid"] == pid).count() == 2
    });
    thread::sleep(Duration::from_millis(300));
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let shown: Vec<String> = of_type(&done.events, "state")
        .map(|e| format!("{} -> {} {}", e["old_state"], e["new_state"], e["pid"]))
        .collect();
    assert_eq!(
        shown,
        [
            format!("\"CLOSE\" -> \"SYN_SENT\" {pid}"),
            format!("\"SYN_SENT\" -> \"ESTABLISHED\" {pid}")
        ]
    );
    // The child's close went through the kernel all the same (the socket
    // had been reported), so tracking ended the connection: its end, its
    // close record and its TIME_WAIT's end were filtered out in userspace.
    let events = counted(&done.events);
    assert_eq!(
        (&events["kernel_emitted"], &events["filtered"]),
        (&3.into(), &3.into()),
        "{events}"
    );
}

#[test]
fn an_ss_expression_delivers_only_its_connection() {
    require_time_wait_room();
    // Nobody accepts: the client connects, sends a byte and closes first,
    // waiting in TIME_WAIT (FIN_WAIT2 substate) for the peer's FIN.
    let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = wanted.local_addr().unwrap().port();
    let dport = format!("dport = :{port}");
    let time_waits = format!("state time-wait and ( dport = :{port} or sport = :80 )");
    let mut to_port = Tracer::start(&[&dport]);
    let mut in_time_wait = Tracer::start(&[&time_waits]);
    let client = Op::run(&[
        "tcp-client",
        "127.0.0.1",
        &port.to_string(),
        "1",
        "0",
        "close",
    ]);
    let other_port = other.local_addr().unwrap().port().to_string();
    Op::run(&["tcp-client", "127.0.0.1", &other_port, "1", "0", "close"]);
    let closed = |ev: &[Value]| of_type(ev, "close").any(|c| c["dport"] == port);
    to_port.wait_for("the close record", closed);
    in_time_wait.wait_for("the close record", closed);
    let (to_port, in_time_wait) = (to_port.stop(), in_time_wait.stop());
    drop((wanted, other));

    assert!(to_port.status.success(), "{}", to_port.stderr);
    let records: Vec<&Value> = to_port
        .events
        .iter()
        .filter(|e| e["type"] != "summary")
        .collect();
    for r in &records {
        assert!(
            (r["type"] == "state" || r["type"] == "close") && r["dport"] == port,
            "{r}"
        );
        assert_eq!(r["pid"], client["pid"], "{r}");
    }
    let sock = records[0]["sock"].as_str().unwrap();
    close_of(&to_port.events, sock);
    assert_eq!(
        transitions(&to_port.events, sock),
        [
            "CLOSE -> SYN_SENT",
            "SYN_SENT -> ESTABLISHED",
            "ESTABLISHED -> FIN_WAIT1",
            "FIN_WAIT1 -> FIN_WAIT2",
            "FIN_WAIT2 -> TIME_WAIT",
            "TIME_WAIT -> CLOSE"
        ]
    );
    assert_eq!(records.len(), 7, "six transitions and a close record");
    // The expression's port went to the kernel: the other connection was
    // never emitted.
    let events = counted(&to_port.events);
    assert_eq!(
        events["kernel_emitted"],
        from_ring(&to_port.events),
        "{events}"
    );

    assert!(in_time_wait.status.success(), "{}", in_time_wait.stderr);
    assert_eq!(
        transitions(&in_time_wait.events, sock),
        ["FIN_WAIT2 -> TIME_WAIT", "TIME_WAIT -> CLOSE"]
    );
    let close = close_of(&in_time_wait.events, sock);
    assert_eq!(close["time_wait"], true, "{close}");
    let kinds: Vec<&str> = in_time_wait
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["state", "close", "state", "summary"]);
}

#[test]
fn timewait_rows_filtered_by_address_and_command() {
    require_time_wait_room();
    let port = free_port("0.0.0.0");
    let p = port.to_string();
    let interval = ["timewait", "--json", "--interval", "0.5", "--port", &p];
    let mut all = Tracer::command(&interval);
    let filtered_args: Vec<&str> = interval
        .iter()
        .copied()
        .chain(["--addr", "127.0.0.2", "--comm", "^churn$"])
        .collect();
    let mut filtered = Tracer::command(&filtered_args);
    let out = Command::new(env!("CARGO_BIN_EXE_churn"))
        .args(["--threads", "2", "--addrs", "4", "--port", &p])
        .args(["--connections", "200", "--close", "client"])
        .output()
        .expect("churn");
    assert!(out.status.success(), "churn: {:?}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("churn's report");
    let clients = report["connections"].as_u64().unwrap();
    let client_side = |ev: &[Value]| -> u64 {
        of_type(ev, "timewait")
            .map(|r| r["client_side"].as_u64().unwrap())
            .sum()
    };
    // Exact, unless the kernel skipped some of an instance's program runs
    // (each report says how many so far).
    let missed = |ev: &[Value]| -> u64 {
        of_type(ev, "timewait")
            .last()
            .map_or(0, |r| r["missed"].as_u64().unwrap())
    };
    all.wait_for("every client-side TIME_WAIT", |ev| {
        client_side(ev) + missed(ev) >= clients
    });
    let all = all.stop();
    let missed_all = missed(&all.events);
    // Those towards 127.0.0.2, by the unfiltered count.
    let last = of_type(&all.events, "timewait").last().unwrap();
    let towards = |r: &Value| -> Vec<(String, u64)> {
        r["by_destination"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let daddr = d["daddr"].as_str().unwrap().to_string();
                (daddr, d["time_wait"].as_u64().unwrap())
            })
            .collect()
    };
    let expected: u64 = towards(last)
        .iter()
        .filter(|(daddr, _)| daddr == "127.0.0.2")
        .map(|(_, n)| n)
        .sum();
    assert!(expected > 0 && expected < clients, "{last}");
    filtered.wait_for("the client-side TIME_WAITs towards 127.0.0.2", |ev| {
        client_side(ev) + missed(ev) >= expected
    });
    // One more report, to see nothing else arrives.
    thread::sleep(Duration::from_millis(700));
    let filtered = filtered.stop();
    assert!(filtered.status.success(), "{}", filtered.stderr);
    let got = client_side(&filtered.events);
    let missed_filtered = missed(&filtered.events);
    assert!(
        got + missed_filtered >= expected && got <= expected + missed_all,
        "{got} counted, {expected} by the unfiltered instance; runs missed: \
         {missed_filtered} filtered, {missed_all} unfiltered"
    );
    let last = of_type(&filtered.events, "timewait").last().unwrap();
    assert_eq!(towards(last), [("127.0.0.2".to_string(), got)], "{last}");
    let processes = last["by_process"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{last}");
    assert_eq!(processes[0]["comm"], "churn");
}

#[test]
fn bad_filters_are_one_line_and_exit_2() {
    let cases = [
        (
            &["watch", "state established dport foo"][..],
            "socktrace: bad filter at token 4 ('foo'): expected a port\n",
        ),
        (
            &["(", "dport", "=", ":443"],
            "socktrace: bad filter at its end: expected )\n",
        ),
        (
            &["--addr", "10.0.0.0/33"],
            "socktrace: invalid value '10.0.0.0/33' for '--addr <CIDR>': prefix length /33 is \
             longer than 32 bits\n",
        ),
        (
            &["--comm", "ng(inx"],
            "socktrace: invalid value 'ng(inx' for '--comm <REGEX>': not a regular expression: \
             unclosed group\n",
        ),
        (
            &["timewait", "--state", "time-wait"],
            "socktrace: timewait counts TCP connection ends by process and destination: it \
             cannot apply --state\n",
        ),
    ];
    for (args, message) in cases {
        let out = Command::new(socktrace_bin()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), message, "{args:?}");
        assert!(out.stdout.is_empty());
    }
    for args in [
        &["--state", "estab"][..],
        &["--cgroup", "nginx"],
        &["listners"],
    ] {
        let out = Command::new(socktrace_bin()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("socktrace: "), "{stderr}");
    }
}
