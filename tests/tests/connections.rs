//! What a connection's close record says of its health: how long its
//! handshake took, how many segments it sent again, its RTT; checked
//! against delays the tests impose and the kernel's own counts.
mod common;

use std::{io::Read as _, net::TcpListener, process::Command, thread::sleep, time::Duration};

use common::*;
use serde_json::Value;

fn ms(close: &Value, key: &str) -> f64 {
    close[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {close}"))
}

/// The close record of the connection from local port `sport` to `dport`.
fn close_by_ports(events: &[Value], sport: u64, dport: u64) -> &Value {
    of_type(events, "close")
        .find(|e| e["sport"] == sport && e["dport"] == dport)
        .unwrap_or_else(|| panic!("no close record {sport} -> {dport}"))
}

/// The last table `socktrace analyze FILE --report REPORT --json` prints.
fn analyzed(file: &str, report: &str) -> Value {
    let out = Command::new(socktrace_bin())
        .args(["analyze", file, "--report", report, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    records(&String::from_utf8_lossy(&out.stdout))
        .pop()
        .expect("the table")
}

/// The row of a listeners table for the TCP listener on `port`.
fn listen_row(table: &Value, port: u64) -> &Value {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == port && r["kind"] == "listen")
        .unwrap_or_else(|| panic!("the listener's row in {table}"))
}

/// A client whose first SYN the listener drops (its accept queue is full)
/// gets in when the kernel sends the SYN again, after the initial RTO of
/// 1 s: its connect time is the time connect() took, and says one SYN was
/// sent again. The listener's side of it took its SYN-ACK's round trip.
#[test]
fn a_connect_whose_syn_was_dropped_takes_its_retransmit() {
    require_root();
    let ns = Netns::new();
    let mut tracer = Tracer::start(&[]);
    // The listener accepts the two waiting 300 ms after the third client's
    // SYN was dropped: that one gets in with its second SYN, at 1 s.
    let op = Op::spawn(ns.exec(&[sockops_bin(), "slow-accept", "127.0.0.1", "300"]));
    let (pid, port) = (op.pid(), op.port());
    let sport = op.report["sport"].as_u64().expect("sport");
    let measured = ms(&op.report, "connect_ms");
    op.wait();
    let events = tracer.wait_for("the slow client's two ends", |ev| {
        of_type(ev, "close")
            .filter(|e| e["pid"] == pid && (e["sport"] == sport || e["dport"] == sport))
            .count()
            == 2
    });
    let client = close_by_ports(events, sport, port);
    assert_eq!(client["opened"], "active", "{client}");
    assert_eq!(client["syn_retransmits"], 1, "{client}");
    assert_eq!(client["retransmits"], 1, "the SYN only: {client}");
    let took = ms(client, "connect_ms");
    // The retransmit timer counts jiffies: it may fire up to one early
    // (10 ms at HZ=100; 5.10's guest showed 999.8 ms).
    assert!(
        (990.0..1500.0).contains(&took),
        "{took} ms: the SYN was sent again after 1 s: {client}"
    );
    // connect() returns once the kernel has the connection established:
    // a little later than the transition, never before.
    assert!(
        took <= measured && measured - took < 50.0,
        "socktrace {took} ms, connect() {measured} ms"
    );
    assert!(ms(client, "srtt_ms") < 100.0, "{client}");
    let server = close_by_ports(events, port, sport);
    assert_eq!(server["opened"], "passive", "{server}");
    assert_eq!(server["syn_retransmits"], 0, "{server}");
    let synack = ms(server, "connect_ms");
    assert!(
        synack < 100.0,
        "a SYN-ACK's round trip on loopback: {synack} ms {server}"
    );
    // The two that waited in the queue got in at once.
    let quick: Vec<&Value> = of_type(events, "close")
        .filter(|e| e["pid"] == pid && e["opened"] == "active" && e["sport"] != sport)
        .collect();
    assert_eq!(quick.len(), 2, "{quick:?}");
    for close in quick {
        assert_eq!(close["syn_retransmits"], 0, "{close}");
        assert!(ms(close, "connect_ms") < 100.0, "{close}");
    }
}

/// A sender whose peer's acknowledgements are lost for half a second (the
/// peer's namespace routes them to a blackhole) retransmits: its close
/// record counts exactly what the kernel counted for it (`ss -ti`'s
/// `retrans:…/N`, and the namespace's TcpRetransSegs, which holds this
/// connection alone).
#[test]
fn retransmits_after_an_outage_are_the_kernels_count() {
    require_root();
    let (client_ns, server_ns) = (Netns::new(), Netns::new());
    client_ns.link(&server_ns, "10.77.0.1/24", "10.77.0.2/24");
    let mut tracer = Tracer::start(&[]);
    let before = client_ns.counter("/proc/net/snmp", "Tcp:", "RetransSegs");
    let server =
        Op::spawn(server_ns.exec(&[sockops_bin(), "tcp-server", "10.77.0.2", "0", "0", "wait"]));
    let port = server.port().to_string();
    let mut client =
        Op::spawn(client_ns.exec(&[sockops_bin(), "trickle", "10.77.0.2", &port, "1500"]));
    let (pid, sport) = (client.pid(), client.port());
    sleep(Duration::from_millis(300));
    server_ns.blackhole("10.77.0.1/32", true);
    sleep(Duration::from_millis(500));
    server_ns.blackhole("10.77.0.1/32", false);
    let sent = client.next_report();
    assert!(sent["sent"].as_u64().unwrap() > 0, "{sent}");
    let counted = settled_retransmits(&client_ns, sport);
    assert!(counted > 0, "the outage made the sender retransmit");
    assert_eq!(
        client_ns.counter("/proc/net/snmp", "Tcp:", "RetransSegs") - before,
        counted,
        "one connection in the namespace"
    );
    client.proceed();
    client.wait();
    server.wait();
    let events = tracer.wait_for("the sender's close", |ev| {
        of_type(ev, "close").any(|e| e["pid"] == pid && e["sport"] == sport)
    });
    let close = of_type(events, "close")
        .find(|e| e["pid"] == pid && e["sport"] == sport)
        .unwrap();
    assert_eq!(close["retransmits"], counted, "{close}");
    assert_eq!(close["syn_retransmits"], 0, "{close}");
    let (srtt, rttvar) = (ms(close, "srtt_ms"), ms(close, "rttvar_ms"));
    assert!(srtt > 0.0 && srtt < 1000.0 && rttvar >= 0.0, "{close}");
}

/// The connection's total retransmits (`ss -ti`'s `retrans:…/N`), once
/// all it sent is acknowledged.
fn settled_retransmits(ns: &Netns, sport: u64) -> u64 {
    let deadline = std::time::Instant::now() + patience();
    loop {
        let info = ss(ns, &["-tinH", "state", "established"], sport);
        if !info.contains("unacked:") && !info.trim().is_empty() {
            return info
                .split_whitespace()
                .find_map(|w| w.strip_prefix("retrans:"))
                .map_or(0, |r| r.rsplit('/').next().unwrap().parse().unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "data still unacknowledged: {info}"
        );
        sleep(Duration::from_millis(50));
    }
}

/// A server that never closes what its client closed sits in CLOSE_WAIT:
/// `socktrace stuck` reports it with the server's pid once it has been so
/// for longer than `--stuck`, and no longer once it closes; at the end, a
/// line per process that still holds some.
#[test]
fn a_close_wait_leak_is_stuck_until_it_closes() {
    require_root();
    let mut tracer = Tracer::command(&["stuck", "--json", "--stuck", "1", "--interval", "0.2"]);
    let mut server = holding_server();
    let (pid, port) = (server.pid(), server.port());
    close_its_client(&mut server);
    let stuck_row = |e: &Value| -> Option<Value> {
        e["rows"]
            .as_array()?
            .iter()
            .find(|r| r["pid"] == pid && r["sport"] == port)
            .cloned()
    };
    let events = tracer.wait_for("the CLOSE_WAIT reported stuck", |ev| {
        of_type(ev, "stuck").any(|e| stuck_row(e).is_some())
    });
    let first = of_type(events, "stuck").find_map(stuck_row).unwrap();
    assert_eq!(first["state"], "CLOSE_WAIT", "{first}");
    assert_eq!(first["predates_start"], false, "{first}");
    assert!(
        (1000.0..1500.0).contains(&ms(&first, "age_ms")),
        "first reported within an interval of the threshold: {first}"
    );
    let reports_before = of_type(events, "stuck").count();
    // Not stuck before the threshold: every earlier report left it out.
    let earlier: Vec<&Value> = of_type(events, "stuck")
        .filter(|e| stuck_row(e).is_none())
        .collect();
    assert!(!earlier.is_empty(), "reports came before it was stuck");
    server.proceed();
    server.wait();
    tracer.wait_for("a report without it", |ev| {
        of_type(ev, "stuck")
            .skip(reports_before)
            .any(|e| stuck_row(e).is_none())
    });
    // A second leak, still open when socktrace stops: the exit summary
    // names its process.
    let mut leak = holding_server();
    let leak_pid = leak.pid();
    close_its_client(&mut leak);
    tracer.wait_for("the second leak reported stuck", |ev| {
        of_type(ev, "stuck").any(|e| {
            e["rows"]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["pid"] == leak_pid))
        })
    });
    let done = tracer.stop();
    leak.proceed();
    leak.wait();
    let line =
        format!("socktrace: stuck: pid {leak_pid} (sockops): 1 in CLOSE_WAIT, the oldest for ");
    assert!(done.stderr.contains(&line), "{}", done.stderr);
    assert!(
        !done.stderr.contains(&format!("pid {pid} ")),
        "{}",
        done.stderr
    );
}

/// A listener with backlog 1 that never accepts, and 20 clients: the
/// kernel drops the SYNs its full queue has no room for. The drops
/// socktrace reports for that listener, with its pid, are the namespace's
/// ListenOverflows (socktrace runs in the test's namespace: sock_diag shows
/// its own).
#[test]
fn a_full_accept_queues_drops_are_its_listeners() {
    require_root();
    let ns = Netns::new();
    // A client gives up after about 3 s.
    ns.one_syn_retry();
    let bin = socktrace_bin();
    let interval = Duration::from_millis(500);
    let tracer = Tracer::spawn(ns.enter(&[
        bin.to_str().unwrap(),
        "listeners",
        "--json",
        "--interval",
        &interval.as_secs_f64().to_string(),
    ]));
    // And a recording of the same, for `analyze` offline.
    let dir = scratch_dir("queues");
    let file = dir.join("run.jsonl");
    let f = file.to_str().unwrap();
    let recorder = Tracer::spawn(ns.enter(&[bin.to_str().unwrap(), "record", f]));
    let overflows = || ns.counter("/proc/net/netstat", "TcpExt:", "ListenOverflows");
    let before = overflows();
    let mut listener = Op::spawn(ns.exec(&[sockops_bin(), "backlog", "127.0.0.1", "1"]));
    let (pid, port) = (listener.pid(), listener.port().to_string());
    // All at once: each reports only once its connect() is over.
    let clients: Vec<std::process::Child> = (0..20)
        .map(|_| {
            ns.exec(&[sockops_bin(), "connect", "127.0.0.1", &port])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawning sockops")
        })
        .collect();
    let got_in = clients
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("sockops connect");
            assert!(out.status.success(), "sockops connect: {}", out.status);
            serde_json::from_slice::<Value>(&out.stdout).expect("its report")["errno"]
                .as_i64()
                .unwrap()
        })
        .filter(|&errno| errno == 0)
        .count();
    assert!(got_in < 20, "the queue filled: {got_in} got in");
    let dropped = overflows() - before;
    assert!(dropped > 0, "the kernel counted overflows");
    // The kernel's own depth and backlog (`ss -lt`'s Recv-Q and Send-Q):
    // with the clients racing over two CPUs it may admit one more than
    // backlog + 1. Then two samples' time, so the last one sees it.
    let queue = listen_queue(&ns, &port);
    sleep(2 * interval + Duration::from_millis(100));
    let done = tracer.stop();
    let recorded = recorder.stop();
    assert!(recorded.status.success(), "{}", recorded.stderr);
    listener.proceed();
    listener.wait();
    let port: u64 = port.parse().unwrap();
    let notes: Vec<&Value> = of_type(&done.events, "listener")
        .filter(|e| e["event"] == "drops" && e["port"] == port)
        .collect();
    assert!(!notes.is_empty(), "a drops line");
    assert!(
        notes.iter().all(|e| e["pid"] == pid && e["backlog"] == 1),
        "{notes:?}"
    );
    let reported: u64 = notes.iter().map(|e| e["dropped"].as_u64().unwrap()).sum();
    assert_eq!(reported, dropped, "{notes:?}");
    let table = of_type(&done.events, "listeners")
        .last()
        .expect("the final table");
    let row = listen_row(table, port);
    assert_eq!(row["drops"], dropped, "{row}");
    assert!(queue.0 >= 2 && queue.1 == 1, "ss: {queue:?}");
    assert_eq!(
        (&row["queue"], &row["backlog"]),
        (&Value::from(queue.0), &Value::from(queue.1)),
        "{row}"
    );
    // Offline, from the recording: the same drops for the same listener.
    let table = analyzed(f, "listeners");
    let row = listen_row(&table, port);
    assert_eq!(
        (&row["drops"], &row["pids"]),
        (&dropped.into(), &serde_json::json!([pid])),
        "{row}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `ss ARGS sport = :SPORT` prints in `ns`.
fn ss(ns: &Netns, args: &[&str], sport: impl std::fmt::Display) -> String {
    let filter = format!("sport = :{sport}");
    let out = ns
        .exec(&[&["ss"], args, &[&filter]].concat())
        .output()
        .expect("running ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A listener's accept queue depth and backlog as `ss -lt` shows them
/// (Recv-Q and Send-Q).
fn listen_queue(ns: &Netns, port: &str) -> (u64, u64) {
    let line = ss(ns, &["-ltnH"], port);
    let field = |i: usize| -> u64 {
        let word = line.split_whitespace().nth(i);
        word.and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("ss -lt: {line:?}"))
    };
    (field(1), field(2))
}

/// Two aborts on loopback, made here: a server that closes with data
/// unread (`tcp_abort_on_close`), and a client that closes with `SO_LINGER`
/// 0 (`tcp_disconnect` resets a connection in a state that needs it:
/// `tcp_state`). Each sends its RST just after its transition to CLOSE;
/// its close record says it reset, and why in the kernel's words where the
/// kernel says (Linux 6.10+). Each peer's record says it received one, with
/// no reason (a RST carries none).
#[test]
fn a_reset_sent_says_the_kernels_reason() {
    require_root();
    let mut tracer = Tracer::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = u64::from(listener.local_addr().unwrap().port());
    let unread_sport = close_unread(&listener);
    // The client closes at once: linger on, for 0 s.
    let (linger_client, mut linger_server) = connect(&listener);
    let linger_sport = u64::from(linger_client.local_addr().unwrap().port());
    socket2::SockRef::from(&linger_client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(linger_client);
    assert!(linger_server.read(&mut [0u8; 1]).is_err(), "reset");
    let pid = u64::from(std::process::id());
    let ours = [unread_sport, linger_sport].map(Value::from);
    let events = tracer.wait_for("four ends", |ev| {
        of_type(ev, "close")
            .filter(|e| e["pid"] == pid)
            .filter(|e| ours.contains(&e["sport"]) || ours.contains(&e["dport"]))
            .count()
            == 4
    });
    let reasons = !kernel_lacks("reset_reason");
    let said = |why: &str| {
        if reasons {
            Value::from(why)
        } else {
            Value::Null
        }
    };
    let cases = [
        (
            close_by_ports(events, port, unread_sport),
            "local",
            said("tcp_abort_on_close"),
        ),
        (
            close_by_ports(events, unread_sport, port),
            "remote",
            Value::Null,
        ),
        (
            close_by_ports(events, linger_sport, port),
            "local",
            said("tcp_state"),
        ),
        (
            close_by_ports(events, port, linger_sport),
            "remote",
            Value::Null,
        ),
    ];
    for (close, by, why) in cases {
        assert_eq!(
            (&close["reset_by"], &close["reset_reason"]),
            (&Value::from(by), &why),
            "{close}"
        );
    }
    let done = tracer.stop();
    assert_eq!(
        degraded_beyond_the_kernel(&done.stderr),
        Vec::<&str>::new(),
        "{}",
        done.stderr
    );
}

/// Offline: a recording of a server that closes with a request unread;
/// `analyze --report lifecycles` counts its RST by the kernel's reason.
#[test]
fn recorded_resets_are_counted_by_reason() {
    require_root();
    let dir = scratch_dir("resets");
    let file = dir.join("run.jsonl");
    let f = file.to_str().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tracer = Tracer::command(&["record", f, "--sport", &port.to_string()]);
    close_unread(&listener);
    // record writes to the file, not stdout: wait for the close there.
    let deadline = std::time::Instant::now() + patience();
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains(r#""type":"close""#)
    {
        assert!(std::time::Instant::now() < deadline, "no close recorded");
        sleep(Duration::from_millis(50));
    }
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let table = analyzed(f, "lifecycles");
    let row = &table["rows"][0];
    assert_eq!(
        (&row["side"], &row["port"]),
        (&"server".into(), &port.into())
    );
    let reasons = if kernel_lacks("reset_reason") {
        serde_json::json!({})
    } else {
        serde_json::json!({"tcp_abort_on_close": 1})
    };
    assert_eq!(
        (&row["reset"], &row["reset_reasons"]),
        (&1.into(), &reasons),
        "{table}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
