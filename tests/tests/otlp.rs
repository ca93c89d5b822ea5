//! The OTLP exporter end to end: `socktrace --otlp-metrics` pushing to a
//! real receiver, VictoriaMetrics from Debian trixie (Debian's Prometheus
//! is built without its OTLP endpoint), read back with PromQL and compared
//! with `/metrics` of the same run.
mod common;

use std::{
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use common::{query::*, *};
use serde_json::Value;

const CONNECTIONS: u64 = 3;
/// Where `cargo xtask test` names the receiver's binary, and where
/// `cargo xtask setup --test` unpacks it.
const RECEIVER_VAR: &str = "SOCKTRACE_OTLP_RECEIVER";
const RECEIVER_DEFAULT: &str = "target/victoria-metrics-trixie/unpacked/usr/bin/victoria-metrics";
/// Labels a series gets from the push's resource, not from socktrace's
/// families.
const RESOURCE_LABELS: [&str; 7] = [
    "host_name",
    "service_name",
    "service_version",
    "service_instance_id",
    "telemetry_sdk_language",
    "telemetry_sdk_name",
    "telemetry_sdk_version",
];

fn receiver_bin() -> PathBuf {
    let bin = std::env::var_os(RECEIVER_VAR).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(RECEIVER_DEFAULT)
        },
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "{} not found: this test needs VictoriaMetrics from Debian trixie as its OTLP \
         receiver; `cargo xtask setup --test` (or `cargo xtask test`) fetches it, or set \
         {RECEIVER_VAR}",
        bin.display()
    );
    bin
}

/// VictoriaMetrics on a free loopback port, taking OTLP at
/// /opentelemetry/v1/metrics and naming series as Prometheus's OTLP
/// translation does; queries see samples as soon as they arrive.
fn receiver() -> QueryServer {
    let server = QueryServer::spawn("otlp-receiver", &receiver_bin(), |port, dir| {
        vec![
            format!("-storageDataPath={}", dir.join("data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-opentelemetry.usePrometheusNaming".into(),
            "-search.latencyOffset=0s".into(),
            "-search.disableCache".into(),
        ]
    });
    let deadline = Instant::now() + QUERY_TIMEOUT;
    while http_get(server.port, "/health").is_err() {
        assert!(
            Instant::now() < deadline,
            "the receiver did not start; its log (last lines first):\n{}",
            server.log_tail()
        );
        thread::sleep(Duration::from_millis(100));
    }
    server
}

/// The series the receiver holds now, keyed as `/metrics` names them:
/// the resource's labels apart, and a copy of them.
fn pushed(receiver: &QueryServer) -> Result<(Series, Vec<Value>), String> {
    let all = receiver.query_all(r#"{__name__=~"socktrace_.*"}"#)?;
    let mut series = Series::new();
    for s in &all {
        let labels = s["metric"].as_object().ok_or_else(|| s.to_string())?;
        let name = labels["__name__"].as_str().unwrap_or_default();
        let own = labels
            .iter()
            .filter(|(k, _)| *k != "__name__" && !RESOURCE_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()));
        let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
        series.insert(series_key(name, own), value.ok_or_else(|| s.to_string())?);
    }
    Ok((series, all))
}

/// Whether `pushed` holds the series of `shown`, and no other, with
/// their values: counts exactly, sums of seconds to 1e-9 relative (the
/// receiver keeps about 12 significant digits: 0.00040340600000000003 on
/// /metrics came back as 0.000403406).
fn agree(pushed: &Series, shown: &Series) -> bool {
    pushed.len() == shown.len()
        && shown.iter().all(|(series, want)| {
            pushed.get(series).is_some_and(|got| {
                if want.fract() == 0.0 {
                    got == want
                } else {
                    ((got - want) / want).abs() < 1e-9
                }
            })
        })
}

/// Loopback connections and a failed bind, watched alone (the scrapes and
/// pushes are loopback connections too): once the traffic has stopped,
/// every series `/metrics` shows reaches the receiver with its value, no
/// other arrives, and each carries socktrace's resource.
#[test]
fn pushed_metrics_read_back_equal_metrics() {
    require_time_wait_room();
    let receiver = receiver();
    let metrics_port = free_port("127.0.0.1");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!(
        "http://127.0.0.1:{}/opentelemetry/v1/metrics",
        receiver.port
    );
    let expression = format!("sport = :{port} or dport = :{port}");
    let tracer = Tracer::command(&[
        "watch",
        "--json",
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
        "--otlp-metrics",
        &url,
        "--otlp-interval",
        "1",
        &expression,
    ]);
    let listener = time_wait_connections_on(port, CONNECTIONS);
    let report = Op::run(&["bind", "tcp", "127.0.0.1", &port.to_string()]);
    assert_eq!(report["errno"], libc::EADDRINUSE);

    // The traffic has stopped once /metrics has counted it all.
    let scrape = || exposition(&http_get(metrics_port, "/metrics").expect("a scrape"));
    let client_tw = r#"socktrace_timewait_entries_total{local_port="client"}"#;
    let deadline = Instant::now() + patience();
    let shown = loop {
        let shown = scrape();
        if shown.get(client_tw) == Some(&(CONNECTIONS as f64))
            && shown.get(r#"socktrace_binds_total{result="EADDRINUSE"}"#) == Some(&1.0)
        {
            break shown;
        }
        assert!(Instant::now() < deadline, "traffic not counted: {shown:#?}");
        thread::sleep(Duration::from_millis(100));
    };
    // Pushes come every second: wait for one after the traffic.
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let (got, raw) = loop {
        let answer = pushed(&receiver);
        if let Ok((got, raw)) = &answer
            && agree(got, &shown)
        {
            break (got.clone(), raw.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the receiver's series never equalled /metrics'\nshown: {shown:#?}\npushed: {answer:#?}\n\
             socktrace: {}\nreceiver (last lines first):\n{}",
            tracer.stderr(),
            receiver.log_tail()
        );
        thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(scrape(), shown, "/metrics moved after the traffic stopped");
    for family in [
        r#"socktrace_tcp_transitions_total{new_state="ESTABLISHED",old_state="SYN_SENT"}"#.into(),
        client_tw.into(),
        "socktrace_connection_duration_seconds_count".into(),
        format!(
            r#"socktrace_connect_duration_seconds_bucket{{le="inf",port="{port}",side="client"}}"#
        ),
        "socktrace_ring_drops_total".into(),
        "socktrace_listeners_open".into(),
        "socktrace_otlp_push_failures_total".into(),
    ] {
        assert!(got.contains_key(&family), "no {family} in {got:#?}");
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    for series in &raw {
        let labels = &series["metric"];
        assert_eq!(labels["service_name"], "socktrace", "{series}");
        assert_eq!(labels["host_name"], hostname.trim(), "{series}");
        assert_eq!(labels["service_instance_id"], hostname.trim(), "{series}");
        assert!(labels["service_version"].is_string(), "{series}");
    }
    drop(listener);
    let finished = tracer.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains(&format!("socktrace: pushing metrics to {url} every 1 s\n")),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("failed"), "{}", finished.stderr);
}

/// With the receiver down, every push fails: counted, said once, and
/// socktrace runs on and exits 0.
#[test]
fn pushes_to_a_receiver_down_are_counted_and_said_once() {
    require_root();
    let metrics_port = free_port("127.0.0.1");
    let url = format!(
        "http://127.0.0.1:{}/opentelemetry/v1/metrics",
        free_port("127.0.0.1")
    );
    let tracer = Tracer::start(&[
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
        "--otlp-metrics",
        &url,
        "--otlp-interval",
        "0.2",
        "--port",
        "1",
    ]);
    let failures = "socktrace_otlp_push_failures_total";
    let deadline = Instant::now() + patience();
    while exposition(&http_get(metrics_port, "/metrics").expect("a scrape"))
        .get(failures)
        .is_none_or(|n| *n < 3.0)
    {
        assert!(Instant::now() < deadline, "fewer than 3 {failures}");
        thread::sleep(Duration::from_millis(100));
    }
    let finished = tracer.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let said: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| l.contains("failed"))
        .collect();
    assert_eq!(said.len(), 1, "{}", finished.stderr);
    assert!(
        said[0].starts_with(&format!("socktrace: pushing metrics to {url} failed"))
            && said[0].ends_with(": tcp connect error: Connection refused (os error 111)"),
        "{}",
        said[0]
    );
}

/// A URL socktrace cannot push to is one line, before anything starts.
#[test]
fn a_bad_url_is_one_line() {
    for (url, says) in [
        ("collector:4318", "pushes over http:// only"),
        (
            "https://collector:4318/v1/metrics",
            "pushes over http:// only",
        ),
        ("http://", "is not a URL"),
    ] {
        let out = std::process::Command::new(socktrace_bin())
            .args(["--otlp-metrics", url])
            .output()
            .expect("socktrace");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}
