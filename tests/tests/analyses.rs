//! The analyses against real sockets: `listeners` catching a listener that
//! cycles 100 times at about a millisecond a life, failed binds and UDP
//! servers; `timewait` counting hundreds of real connections exactly, by
//! side, from the kernel's tallies; `record` then `analyze` offline.
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn listener_notes<'a>(events: &'a [Value], event: &'a str, port: u16) -> Vec<&'a Value> {
    of_type(events, "listener")
        .filter(|e| e["event"] == event && e["port"] == port)
        .collect()
}

#[test]
fn a_listener_cycling_100_times_is_caught_every_time() {
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::command(&["listeners", "--json", "--short", "1000"]);
    let cycle = Op::run(&[
        "listen-cycle",
        "127.0.0.1",
        &port.to_string(),
        "100",
        "1000",
    ]);
    let pid = cycle["pid"].clone();
    tracer.wait_for("100 listener closes", |ev| {
        listener_notes(ev, "close", port).len() >= 100
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let opens = listener_notes(&done.events, "open", port);
    let closes = listener_notes(&done.events, "close", port);
    assert_eq!((opens.len(), closes.len()), (100, 100));
    for note in opens.iter().chain(&closes) {
        assert_eq!(note["pid"], pid, "{note}");
        assert_eq!(note["kind"], "listen");
        assert_eq!(note["proto"], "tcp");
    }
    assert!(opens.iter().all(|n| n["backlog"] == 16));
    for close in &closes {
        let ms = close["lifetime_ms"].as_f64().expect("timed");
        // It slept 1 ms listening: at least that, and short by any measure.
        assert!((1.0..1000.0).contains(&ms), "{close}");
        assert_eq!(close["short"], true);
    }
    // The table at exit: one row, 100 cycles, all short, none open.
    let table = of_type(&done.events, "listeners").last().expect("table");
    let rows: Vec<&Value> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["port"] == port)
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    let row = rows[0];
    assert_eq!(
        (&row["cycles"], &row["short"], &row["open"]),
        (&100.into(), &100.into(), &0.into())
    );
    assert_eq!(row["pids"], serde_json::json!([pid]));
    assert!(row["min_ms"].as_f64().unwrap() >= 1.0, "{row}");
    // And the summary says so too.
    let summary = of_type(&done.events, "summary").last().expect("summary");
    assert!(
        summary["listeners_closed"].as_u64().unwrap() >= 100,
        "{summary}"
    );
}

#[test]
fn failed_binds_and_udp_servers_are_listeners_too() {
    let mut tracer = Tracer::command(&["listeners", "--json"]);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let refused = Op::run(&["bind", "tcp", "127.0.0.1", &port.to_string()]);
    assert_eq!(refused["errno"], 98, "{refused}"); // EADDRINUSE
    let udp_port = free_port("127.0.0.1");
    let udp = Op::run(&["bind", "udp", "127.0.0.1", &udp_port.to_string()]);
    tracer.wait_for("the failed bind and the UDP socket's close", |ev| {
        !listener_notes(ev, "bind_failed", port).is_empty()
            && listener_notes(ev, "close", udp_port)
                .iter()
                .any(|n| n["pid"] == udp["pid"])
    });
    drop(holder);
    let done = tracer.stop();
    let failed = listener_notes(&done.events, "bind_failed", port)
        .into_iter()
        .find(|n| n["pid"] == refused["pid"])
        .expect("the failed bind's note");
    assert_eq!(failed["pid"], refused["pid"]);
    assert_eq!(failed["error"], "EADDRINUSE");
    // Other tests run at the same time: pick this process's notes.
    let of_udp = |event| {
        listener_notes(&done.events, event, udp_port)
            .into_iter()
            .find(|n| n["pid"] == udp["pid"])
            .unwrap_or_else(|| panic!("no {event} note of the UDP socket"))
    };
    let (opened, closed) = (of_udp("open"), of_udp("close"));
    for note in [opened, closed] {
        assert_eq!(
            (&note["kind"], &note["proto"]),
            (&"bound".into(), &"udp".into())
        );
        assert_eq!(note["pid"], udp["pid"]);
    }
    let table = of_type(&done.events, "listeners").last().expect("table");
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == port && r["kind"] == "bound")
        .expect("a row for the failed bind");
    assert_eq!(row["failed_binds"], 1);
}

/// The last `timewait` report.
fn last_report(events: &[Value]) -> &Value {
    of_type(events, "timewait")
        .last()
        .expect("a timewait report")
}

#[test]
fn timewait_counts_real_churn_exactly_by_side() {
    require_time_wait_room();
    let port = free_port("0.0.0.0");
    let p = port.to_string();
    let mut tracer = Tracer::command(&["timewait", "--json", "--interval", "0.5", "--port", &p]);
    let (client_pid, clients) = churn(port, 300, "client");
    let side = |ev: &[Value], key: &str| -> u64 {
        of_type(ev, "timewait")
            .map(|r| r[key].as_u64().unwrap())
            .sum()
    };
    // Exact, unless the kernel skipped some of our runs (it says how many).
    let missed = |ev: &[Value]| -> u64 {
        of_type(ev, "timewait")
            .last()
            .map_or(0, |r| r["missed"].as_u64().unwrap())
    };
    tracer.wait_for("the client-side TIME_WAIT entries", |ev| {
        side(ev, "client_side") + missed(ev) >= clients
    });
    let (server_pid, servers) = churn(port, 200, "server");
    tracer.wait_for("the server-side TIME_WAIT entries", |ev| {
        side(ev, "server_side") + missed(ev) >= servers
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let reports: Vec<&Value> = of_type(&done.events, "timewait").collect();
    let sum = |key: &str| -> u64 { reports.iter().map(|r| r[key].as_u64().unwrap()).sum() };
    let missed = missed(&done.events);
    let counts = |got: u64, expected: u64, what: &str| {
        assert!(
            got <= expected && got + missed >= expected,
            "{what}: {got} counted, {expected} happened, {missed} runs missed"
        );
    };
    counts(sum("client_side"), clients, "client side");
    counts(sum("server_side"), servers, "server side");
    let last = last_report(&done.events);
    counts(
        last["total_entries"].as_u64().unwrap(),
        clients + servers,
        "total",
    );
    assert!(
        last["population"].as_u64().unwrap() + missed >= clients + servers,
        "{last}"
    );
    // Server side: counted under the server's port, owned by churn #2.
    let ports = last["by_local_port"].as_array().unwrap();
    assert_eq!(ports[0]["port"], port);
    // Client side: four destinations, from churn #1.
    let with_entries: Vec<&Value> = reports
        .iter()
        .flat_map(|r| r["by_destination"].as_array().unwrap())
        .filter(|d| d["dport"] == port)
        .collect();
    assert!(!with_entries.is_empty());
    // Towards churn #1's server port. Others may show a connection of
    // churn #2's still closing (in use, no TIME_WAIT) towards its peer.
    let dests: Vec<&Value> = last["by_destination"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["dport"] == port)
        .collect();
    let held: u64 = dests.iter().map(|d| d["time_wait"].as_u64().unwrap()).sum();
    counts(held, clients, "held towards the destinations");
    assert_eq!(dests.len(), 4, "{last}");
    ports_headroom(&reports);
    // Who: both churn processes, by pid.
    let pids: Vec<u64> = reports
        .iter()
        .flat_map(|r| r["by_process"].as_array().unwrap())
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.contains(&u64::from(client_pid)), "{pids:?}");
    assert!(pids.contains(&u64::from(server_pid)), "{pids:?}");
    // 300 short connections in well under a second: connection-per-request.
    let flagged = reports
        .iter()
        .flat_map(|r| r["per_request"].as_array().unwrap())
        .any(|c| c["pid"] == client_pid && c["dport"] == port);
    assert!(
        flagged,
        "no connection-per-request warning for pid {client_pid}"
    );
    let summary = of_type(&done.events, "summary").last().expect("summary");
    let entered: u64 = summary["time_wait_destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["entries"].as_u64().unwrap())
        .sum();
    counts(entered, clients + servers, "summary");
}

/// The first line of a file under /proc/sys/net/ipv4, as numbers.
fn sysctl(name: &str) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .expect(name)
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}

/// Every destination row of every report holds its ports in TIME_WAIT
/// and in use against `ip_local_port_range`, and says when none is left
/// at the rate they grew since the report before (null when they did
/// not; connections in use when a destination is first seen count as
/// there before).
fn ports_headroom(reports: &[&Value]) {
    let range = match sysctl("ip_local_port_range")[..] {
        [low, high] => high - low + 1,
        ref other => panic!("ip_local_port_range: {other:?}"),
    };
    let reuse = sysctl("tcp_tw_reuse")[0];
    let mut before: std::collections::HashMap<String, u64> = Default::default();
    let mut growing = 0;
    for r in reports {
        let interval_s = r["interval_ms"].as_f64().unwrap() / 1000.0;
        let mut now = std::collections::HashMap::new();
        for d in r["by_destination"].as_array().unwrap() {
            let n = |key: &str| d[key].as_u64().unwrap_or_else(|| panic!("{key}: {d}"));
            let held = n("time_wait") + n("in_use");
            assert_eq!((n("held"), n("range")), (held, range), "{d}");
            let percent = held as f64 * 100.0 / range as f64;
            assert!(
                (d["percent"].as_f64().unwrap() - percent).abs() <= 0.051,
                "{d}"
            );
            let loopback = d["daddr"].as_str().unwrap().starts_with("127.");
            assert_eq!(
                d["tw_reuse_applies"],
                reuse == 1 || reuse == 2 && loopback,
                "{d}"
            );
            let key = format!("{} {} {}", d["saddr"], d["daddr"], d["dport"]);
            let prior = before.get(&key).copied().unwrap_or(n("in_use"));
            let rate = (held as f64 - prior as f64) / interval_s;
            match d["runs_out_in_s"].as_f64() {
                Some(s) => {
                    assert!(rate > 0.0, "{d} after {prior} held");
                    let want = range.saturating_sub(held) as f64 / rate;
                    assert!((s - want).abs() <= 0.051 + want * 1e-3, "{d}: want {want}");
                    growing += 1;
                }
                None => assert!(rate <= 0.0, "{d} after {prior} held"),
            }
            now.insert(key, held);
        }
        before = now;
    }
    assert!(growing > 0, "no destination's ports grew while churn ran");
}

#[test]
fn record_then_analyze_offline() {
    let dir = scratch_dir("analyze");
    let file = dir.join("run.jsonl");
    let f = file.to_str().unwrap();
    let port = free_port("127.0.0.1");
    let tracer = Tracer::command(&["record", f, "--port", &port.to_string()]);
    let cycle = Op::run(&["listen-cycle", "127.0.0.1", &port.to_string(), "5", "100"]);
    // record writes to the file, not stdout: wait for its lines there.
    let deadline = std::time::Instant::now() + patience();
    while std::fs::read_to_string(&file)
        .unwrap_or_default()
        .matches("\"listen\"")
        .count()
        < 5
    {
        assert!(
            std::time::Instant::now() < deadline,
            "record wrote too little"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = records(&text);
    let header = &lines[0];
    assert_eq!(header["type"], "header");
    assert_eq!(
        header["filters"],
        serde_json::json!([format!("port {port}")])
    );
    // Break it: a truncated line and garbage in the middle.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let cut = lines[2].len() / 2;
    lines[2].truncate(cut);
    lines.insert(3, "\u{1}\u{2} not json".into());
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(socktrace_bin())
        .args(["analyze", f, "--report", "listeners", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{f}:3: ")), "{stderr}");
    assert!(stderr.contains(&format!("{f}:4: ")), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table = records(&stdout).pop().expect("the table");
    let row = &table["rows"].as_array().unwrap()[0];
    assert_eq!(
        (&row["port"], &row["kind"]),
        (&port.into(), &"listen".into())
    );
    // The truncated line was the first listener's bind or transition: the
    // five cycles still end, four or five of them timed.
    assert_eq!(row["cycles"], 5, "{table}");
    assert_eq!(row["pids"], serde_json::json!([cycle["pid"]]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `analyze` of what is no recording (another file, an empty one, a
/// report) or of what cannot be read says so in one line and fails; a
/// recording without events (only its header) is a recording.
#[test]
fn analyze_refuses_input_without_records() {
    let dir = scratch_dir("analyze-none");
    let passwd = "root:x:0:0:root:/root:/bin/bash\n".repeat(12);
    let summary = r#"{"type":"summary","time":"2026-11-25T14:55:01Z"}"#.to_string() + "\n";
    let header = r#"{"type":"header","time":"2026-11-25T14:55:01Z","schema":1,"socktrace":"0.1.0","host":"h","kernel":"k","command":"c","filters":[]}"#.to_string() + "\n";
    let cases = [
        ("passwd", passwd, Some("no socktrace records")),
        ("empty", String::new(), Some("no socktrace records")),
        (
            "report",
            summary,
            Some(
                "no socktrace records, only 1 report line(s) (analyze reads what `record` and `--json` write)",
            ),
        ),
        ("header", header, None),
    ];
    for (name, text, refused) in cases {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new(socktrace_bin())
            .args(["analyze", file.to_str().unwrap(), "--report", "summary"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match refused {
            Some(why) => {
                assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
                assert_eq!(
                    stderr,
                    format!("socktrace: {}: {why}\n", file.display()),
                    "{name}"
                );
                assert!(out.stdout.is_empty(), "{name}");
            }
            None => {
                assert!(out.status.success(), "{name}: {stderr}");
                assert_eq!(stderr, "", "{name}");
                assert!(String::from_utf8_lossy(&out.stdout).starts_with("socktrace: 0 events"));
            }
        }
    }
    let out = Command::new(socktrace_bin())
        .args(["analyze", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "socktrace: {}:1: read error: Is a directory (os error 21)\n",
            dir.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server's TIME_WAIT belongs to the process that held the socket when
/// it closed: the worker that accepted and closed it, not the parent that
/// only listened (nginx's master and workers), as `watch` says too.
#[test]
fn timewait_counts_a_servers_time_wait_for_the_worker_that_closed_it() {
    require_time_wait_room();
    const COUNT: u64 = 20;
    let port = free_port("127.0.0.1").to_string();
    let mut tracer = Tracer::command(&["timewait", "--json", "--interval", "0.5", "--port", &port]);
    let report = Op::run(&["prefork-server", "127.0.0.1", &port, &COUNT.to_string()]);
    let (parent, worker) = (report["pid"].clone(), report["worker"].clone());
    let last = |ev: &[Value]| of_type(ev, "timewait").last().cloned();
    let held_by = |r: &Value, pid: &Value| -> u64 {
        r["by_process"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["pid"] == *pid)
            .map(|p| p["time_wait"].as_u64().unwrap())
            .sum()
    };
    tracer.wait_for("the worker's TIME_WAITs", |ev| {
        last(ev).is_some_and(|r| {
            r["server_side"].as_u64().unwrap() + held_by(&r, &worker) > 0
                && held_by(&r, &worker) + r["missed"].as_u64().unwrap() >= COUNT
        })
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let r = last(&done.events).expect("a timewait report");
    let missed = r["missed"].as_u64().unwrap();
    let worker_held = held_by(&r, &worker);
    assert!(
        worker_held <= COUNT && worker_held + missed >= COUNT,
        "the worker {worker} holds {worker_held} of {COUNT} TIME_WAITs ({missed} runs missed): {r}"
    );
    assert_eq!(
        held_by(&r, &parent),
        0,
        "the listening parent {parent} holds some: {r}"
    );
}
