//! contrib/prometheus/socktrace.rules.yml: valid for `promtool check
//! rules`, and `promtool test rules` on what the real socktrace exported
//! while this test made the traffic each alert is about. Each scrape is one
//! instant of the unit test's series: a quiet one (just attached), then
//! one once the traffic shows.
mod common;

use std::{fmt::Write as _, net::TcpListener, path::PathBuf, process::Command};

use common::*;
use serde_json::Value;

/// Debian's `prometheus` package has it.
const PROMTOOL: &str = "/usr/bin/promtool";
/// Resets from here in 5 minutes that alert (the rule's threshold is 10).
const RESETS: usize = 11;
/// The instances the series are said to come from: `socktrace listeners`,
/// `socktrace stuck` and `socktrace timewait`.
const LISTENERS: &str = "node1:9400";
const STUCK: &str = "node1:9401";
const TIMEWAIT: &str = "node1:9402";

fn rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus/socktrace.rules.yml")
}

/// `promtool ARGS` (in `dir`), which must succeed; its stdout.
fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    require_tool(PROMTOOL, "prometheus");
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

#[test]
fn the_rules_pass_promtool_check() {
    let rules = rules();
    let out = promtool(
        &["check", "rules", rules.to_str().unwrap()],
        rules.parent().unwrap(),
    );
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
}

/// The counts of a scrape: `name{labels}` and whole-number value (what
/// the rules read; comments, `# EOF` and histograms' sums left out).
fn samples(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `series` with the labels Prometheus's scrape of `instance` would add.
fn scraped(series: &str, instance: &str) -> String {
    let target = format!(r#"job="socktrace",instance="{instance}""#);
    match series.strip_suffix('}') {
        Some(labelled) => format!("{labelled},{target}}}"),
        None => format!("{series}{{{target}}}"),
    }
}

/// promtool's input series of `instance`: every series of `busy`, its
/// value in `quiet` (`_`, none, where it had not appeared) for minutes 0 to
/// 4, then its value in `busy` for minutes 5 to 15.
fn input_series(instance: &str, quiet: &str, busy: &str) -> String {
    let quiet = samples(quiet);
    let mut out = String::new();
    for (series, value) in samples(busy) {
        let before = quiet
            .iter()
            .find(|(s, _)| *s == series)
            .map_or("_x4".to_string(), |(_, v)| format!("{v}+0x4"));
        writeln!(
            out,
            "      - series: '{}'\n        values: '{before} {value}+0x10'",
            scraped(&series, instance)
        )
        .unwrap();
    }
    out
}

/// Alert `name`'s rule in the rules file.
fn rule(name: &str) -> Value {
    let text = std::fs::read_to_string(rules()).expect("the rules file");
    let doc: Value = serde_norway::from_str(&text).expect("the rules file is YAML");
    doc["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == name)
        .unwrap_or_else(|| panic!("no alert {name} in the rules file"))
        .clone()
}

/// One `alert_rule_test` entry: alert `name` at minute `minute`, firing
/// once for each of `alerts` (an instance and the series' labels; the
/// target's and the rule's added, its annotations as the file has them),
/// and no more: none if `alerts` is empty.
type Alert<'a> = (&'a str, &'a [(&'a str, &'a str)]);

fn expect(name: &str, minute: u32, alerts: &[Alert]) -> String {
    let rule = rule(name);
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(instance, labels)| {
            let mut all = rule["labels"].as_object().cloned().unwrap_or_default();
            for (k, v) in labels
                .iter()
                .chain(&[("job", "socktrace"), ("instance", instance)])
            {
                all.insert(k.to_string(), Value::from(*v));
            }
            serde_json::json!({
                "exp_labels": all,
                "exp_annotations": rule["annotations"],
            })
        })
        .collect();
    format!(
        "      - eval_time: {minute}m\n        alertname: {name}\n        exp_alerts: {}\n",
        Value::from(alerts)
    )
}

/// Listeners that live 2 ms and a backlog-1 listener that never accepts,
/// SYNs beyond its queue dropped (`socktrace listeners --metrics`);
/// connections closed here with data unread (RSTs) and one a server never
/// closes after its client did (CLOSE_WAIT; `socktrace stuck --stuck 1
/// --metrics`). Each run scraped before and once all show, their series
/// fire each alert in `promtool test rules`, the stuck one only after its
/// 5 minutes, and the counters' alerts resolve once the events are past;
/// no events were lost, so that alert stays quiet; series that stay quiet
/// (the first scrapes, held) fire none.
#[test]
fn alerts_fire_on_what_socktrace_exported() {
    require_root();
    require_tool(PROMTOOL, "prometheus");
    let tracer = |args: &[&str]| {
        let port = free_port("127.0.0.1");
        let addr = format!("127.0.0.1:{port}");
        let mut all = args.to_vec();
        all.extend(["--json", "--metrics", &addr]);
        let tracer = Tracer::command(&all);
        (tracer, move || {
            http_get(port, "/metrics").expect("a scrape")
        })
    };
    let (listeners, scrape_listeners) = tracer(&["listeners", "--interval", "1"]);
    let (stuck, scrape_stuck) = tracer(&["stuck", "--stuck", "1"]);
    let quiet = [scrape_listeners(), scrape_stuck()];

    let cycle_port = free_port("127.0.0.1").to_string();
    Op::run(&["listen-cycle", "127.0.0.1", &cycle_port, "3", "2000"]);

    let mut backlog = Op::start(&["backlog", "127.0.0.1", "1"]);
    let backlog_port = backlog.port() as u16;
    // Connects that wait for their handshake: the SYNs beyond the queue are
    // dropped (and sent again) until these go.
    let waiting: Vec<socket2::Socket> = (0..8)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("a socket");
            s.set_nonblocking(true).expect("non-blocking");
            let to: std::net::SocketAddr = ([127, 0, 0, 1], backlog_port).into();
            let _ = s.connect(&to.into()); // EINPROGRESS
            s
        })
        .collect();

    let abort = TcpListener::bind("127.0.0.1:0").expect("listen");
    for _ in 0..RESETS {
        close_unread(&abort);
    }

    let mut leak = holding_server();
    close_its_client(&mut leak);

    let reason = if kernel_lacks("reset_reason") {
        "unknown"
    } else {
        "tcp_abort_on_close"
    };
    wait_for_series(
        &scrape_stuck,
        r#"socktrace_stuck_sockets{comm="sockops",state="CLOSE_WAIT"} 1"#,
    );
    let busy_stuck = wait_for_series(
        &scrape_stuck,
        &format!(r#"socktrace_resets_total{{by="local",reason="{reason}"}} {RESETS}"#),
    );
    // Sampled each second.
    let drops = format!(r#"socktrace_listen_drops_total{{local_port="{backlog_port}"}}"#);
    let deadline = std::time::Instant::now() + patience();
    let busy_listeners = loop {
        let text = scrape_listeners();
        if text.contains(&drops) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no {drops} in {text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(waiting);
    backlog.proceed();
    backlog.wait();
    leak.proceed();
    leak.wait();
    for tracer in [listeners, stuck] {
        let done = tracer.stop();
        assert!(done.status.success(), "{}", done.stderr);
    }

    let backlog_port = backlog_port.to_string();
    let firing = [
        // Both modes follow listeners.
        expect(
            "SocktraceShortLivedListeners",
            6,
            &[(LISTENERS, &[]), (STUCK, &[])],
        ),
        expect(
            "SocktraceListenQueueDrops",
            6,
            &[(LISTENERS, &[("local_port", &backlog_port)])],
        ),
        expect("SocktraceResetsSent", 6, &[(STUCK, &[("reason", reason)])]),
        // Pending at 6 minutes, firing after its 5.
        expect("SocktraceStuckCloseWait", 6, &[]),
        expect(
            "SocktraceStuckCloseWait",
            11,
            &[(STUCK, &[("comm", "sockops"), ("state", "CLOSE_WAIT")])],
        ),
        expect("SocktraceEventsLost", 6, &[]),
        // Events long past: resolved.
        expect("SocktraceShortLivedListeners", 16, &[]),
        expect("SocktraceListenQueueDrops", 16, &[]),
        expect("SocktraceResetsSent", 16, &[]),
    ];
    let silent = [
        "SocktraceShortLivedListeners",
        "SocktraceListenQueueDrops",
        "SocktraceResetsSent",
        "SocktraceStuckCloseWait",
        "SocktraceEventsLost",
    ]
    .map(|name| expect(name, 11, &[]));
    test_rules(&[
        (
            input_series(LISTENERS, &quiet[0], &busy_listeners)
                + &input_series(STUCK, &quiet[1], &busy_stuck),
            firing.concat(),
        ),
        (
            input_series(LISTENERS, &quiet[0], &quiet[0])
                + &input_series(STUCK, &quiet[1], &quiet[1]),
            silent.concat(),
        ),
    ]);
}

/// `promtool test rules` on the rules file with one test per case (its
/// input series and alert tests), which must all pass.
fn test_rules(cases: &[(String, String)]) {
    let mut text = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n",
        rules().display()
    );
    for (series, alerts) in cases {
        write!(
            text,
            "  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n{alerts}"
        )
        .unwrap();
    }
    let dir = scratch_dir("alerts");
    let tests = dir.join("socktrace.rules.test.yml");
    std::fs::write(&tests, text).expect("writing the unit tests");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `socktrace timewait --metrics` in a fresh network namespace whose
/// sysctl `name` (under /proc/sys/net/ipv4) is `value`; the tracer, the
/// namespace and how to scrape the metrics there.
fn timewait_in(name: &str, value: &str) -> (Tracer, Netns, u16) {
    let ns = Netns::new();
    let status = ns
        .exec(&[
            "sh",
            "-c",
            &format!("echo {value} > /proc/sys/net/ipv4/{name}"),
        ])
        .status()
        .expect("sh runs");
    assert!(status.success(), "setting {name} in the test namespace");
    let port = free_port("127.0.0.1");
    let bin = socktrace_bin();
    let addr = format!("127.0.0.1:{port}");
    let tracer = Tracer::spawn(ns.enter(&[
        bin.to_str().unwrap(),
        "timewait",
        "--json",
        "--interval",
        "1",
        "--metrics",
        &addr,
    ]));
    (tracer, ns, port)
}

/// Scrapes `port` in `ns` until `done` holds for a sample of the scrape.
fn scrape_until(ns: &Netns, port: u16, done: impl Fn(&str, u64) -> bool) -> String {
    let deadline = std::time::Instant::now() + patience();
    loop {
        let text = ns.run(|| http_get(port, "/metrics").expect("a scrape"));
        if samples(&text).iter().any(|(series, n)| done(series, *n)) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "not yet: {text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// In a network namespace whose `tcp_max_tw_buckets` is 1000, 900
/// connections closed by their client first (900 TIME_WAIT sockets, over
/// 80 % of the limit): `socktrace timewait --metrics` there, scraped before and after,
/// exports the limit and the namespace's TIME_WAIT count, and the
/// TIME_WAIT alert fires after its 5 minutes (pending before); the quiet
/// series (none in TIME_WAIT) fire nothing.
#[test]
fn time_wait_near_the_bucket_limit_alerts() {
    require_root();
    require_tool(PROMTOOL, "prometheus");
    // Each scrape leaves a TIME_WAIT there too (socktrace closes first):
    // the quiet scrape follows at most patience() / 100 ms = 300 of them, far
    // below 80 % of the limit.
    const LIMIT: u64 = 1000;
    const CONNECTIONS: u64 = 900;
    let (tracer, ns, port) = timewait_in("tcp_max_tw_buckets", &LIMIT.to_string());
    let quiet = scrape_until(&ns, port, |series, n| {
        series == "socktrace_tcp_max_tw_buckets" && n == LIMIT
    });
    ns.run(|| time_wait_connections(CONNECTIONS));
    let busy = scrape_until(&ns, port, |series, n| {
        series == "socktrace_netns_timewait_sockets" && n >= CONNECTIONS
    });
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let name = "SocktraceTimeWaitNearLimit";
    test_rules(&[
        (
            input_series(TIMEWAIT, &quiet, &busy),
            expect(name, 6, &[]) + &expect(name, 11, &[(TIMEWAIT, &[])]),
        ),
        (
            input_series(TIMEWAIT, &quiet, &quiet),
            expect(name, 11, &[]),
        ),
    ]);
}

/// In a network namespace whose ephemeral range is 20 ports, 17
/// connections to one listener closed by their client first: that
/// destination holds 17 of the 20 (85 %) in TIME_WAIT. `socktrace timewait
/// --metrics` there exports both, and the alert fires after its 5 minutes
/// for that destination only; the quiet series fire nothing.
#[test]
fn a_destination_near_the_end_of_its_ports_alerts() {
    require_root();
    require_tool(PROMTOOL, "prometheus");
    const RANGE: u64 = 20;
    const CONNECTIONS: u64 = 17;
    let (tracer, ns, port) = timewait_in("ip_local_port_range", "40000 40019");
    let quiet = scrape_until(&ns, port, |series, n| {
        series == "socktrace_tcp_max_tw_buckets" && n > 0
    });
    let listener = ns.run(|| time_wait_connections(CONNECTIONS));
    let dport = listener.local_addr().expect("addr").port().to_string();
    let held = format!(
        r#"socktrace_ephemeral_ports_held{{saddr="127.0.0.1",daddr="127.0.0.1",dport="{dport}"}}"#
    );
    let busy = scrape_until(&ns, port, |series, n| series == held && n >= CONNECTIONS);
    assert!(
        samples(&busy).contains(&("socktrace_ephemeral_port_range".into(), RANGE)),
        "{busy}"
    );
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let name = "SocktraceEphemeralPortsNearExhaustion";
    let labels = [
        ("saddr", "127.0.0.1"),
        ("daddr", "127.0.0.1"),
        ("dport", &dport[..]),
    ];
    test_rules(&[
        (
            input_series(TIMEWAIT, &quiet, &busy),
            expect(name, 6, &[]) + &expect(name, 11, &[(TIMEWAIT, &labels)]),
        ),
        (
            input_series(TIMEWAIT, &quiet, &quiet),
            expect(name, 11, &[]),
        ),
    ]);
}
