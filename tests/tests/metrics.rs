//! The Prometheus exporter end to end: `socktrace --metrics`, scraped by a
//! real Prometheus server (Debian's `prometheus`), read back through
//! Prometheus's query API.
mod common;

use std::{
    fs,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Where Debian's `prometheus` package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// How long Prometheus gets to start, scrape and answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECTIONS: u64 = 3;

#[test]
fn prometheus_scrapes_socktrace() {
    require_tool(PROMETHEUS, "prometheus");
    require_time_wait_room();
    let metrics_port = free_port("127.0.0.1");
    let tracer = Tracer::start(&["--metrics", &format!("127.0.0.1:{metrics_port}")]);

    // Loopback connections, each closed by the client first: it ends in
    // TIME_WAIT (its socket kept open until the server's FIN, or the kernel
    // skips to a timewait socket in FIN_WAIT2, see the README's limits).
    // Then a bind to a port in use.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    for _ in 0..CONNECTIONS {
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.shutdown(Shutdown::Write).expect("client FIN");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).expect("the client's FIN");
        drop(server);
        client.read_to_end(&mut rest).expect("the server's FIN");
    }
    let report = Op::run(&["bind", "tcp", "127.0.0.1", &port.to_string()]);
    assert_eq!(report["errno"], libc::EADDRINUSE);

    let prometheus = Prometheus::start(metrics_port);
    prometheus.wait_for(r#"up{job="socktrace"}"#, 1);
    // Both ends of each connection.
    prometheus.wait_for(
        r#"sum(socktrace_tcp_transitions_total{new_state="ESTABLISHED"})"#,
        2 * CONNECTIONS,
    );
    prometheus.wait_for(r#"socktrace_binds_total{result="EADDRINUSE"}"#, 1);
    prometheus.wait_for(
        r#"socktrace_timewait_entries_total{local_port="client"}"#,
        CONNECTIONS,
    );
    prometheus.wait_for("socktrace_connection_duration_seconds_count", CONNECTIONS);
    prometheus.wait_for("socktrace_ring_drops_total", 0);
    drop(prometheus);

    let finished = tracer.stop();
    assert!(
        finished.status.success(),
        "socktrace failed: {}\n{}",
        finished.status,
        finished.stderr
    );
    assert!(
        finished.stderr.contains(&format!(
            "metrics at http://127.0.0.1:{metrics_port}/metrics"
        )),
        "{}",
        finished.stderr
    );
}

/// A server that never closes after its client's FIN (CLOSE_WAIT), and
/// one that closes with a request unread (a RST): `socktrace stuck` with
/// a 1 s threshold shows the first in `socktrace_stuck_sockets` by program
/// and state until it closes, and the second in `socktrace_resets_total`
/// with the kernel's reason where it gives one. Only the two servers'
/// ports are watched.
#[test]
fn stuck_sockets_and_resets_by_reason() {
    require_root();
    let mut leak = Op::start(&["tcp-server", "127.0.0.1", "10", "0", "hold"]);
    let abort = TcpListener::bind("127.0.0.1:0").expect("listen");
    let abort_port = abort.local_addr().expect("addr").port();
    let metrics_port = free_port("127.0.0.1");
    let expression = format!("sport = :{} or sport = :{abort_port}", leak.port());
    let tracer = Tracer::command(&[
        "stuck",
        "--json",
        "--stuck",
        "1",
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
        &expression,
    ]);
    let scrape = || http_get(metrics_port, "/metrics").expect("a scrape");
    let stuck = r#"socktrace_stuck_sockets{comm="sockops",state="CLOSE_WAIT"}"#;
    Op::run(&[
        "tcp-client",
        "127.0.0.1",
        &leak.port().to_string(),
        "10",
        "0",
        "close",
    ]);
    assert_eq!(leak.next_report()["peer_closed"], true);
    let mut client = TcpStream::connect(("127.0.0.1", abort_port)).expect("connect");
    let (server, _) = abort.accept().expect("accept");
    client.write_all(b"unread").expect("a request");
    let mut peek = [0u8; 6];
    assert_eq!(server.peek(&mut peek).expect("it arrived"), 6);
    drop(server);
    let reason = if kernel_lacks("reset_reason") {
        "unknown"
    } else {
        "tcp_abort_on_close"
    };
    let reset = format!(r#"socktrace_resets_total{{by="local",reason="{reason}"}}"#);
    let text = wait_for_series(&scrape, &format!("{stuck} 1"));
    assert!(text.lines().any(|l| l == format!("{reset} 1")), "{text}");
    leak.proceed();
    leak.wait();
    let deadline = Instant::now() + patience();
    while scrape().contains(stuck) {
        assert!(Instant::now() < deadline, "still stuck once closed");
        thread::sleep(Duration::from_millis(100));
    }
    let finished = tracer.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// A Prometheus server on a free loopback port scraping 127.0.0.1:`target`
/// every second, its data in a temporary directory; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = scratch_dir("prometheus");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: socktrace\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .expect("writing the configuration");
        let log = fs::File::create(dir.join("prometheus.log")).expect("log file");
        let port = free_port("127.0.0.1");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        Prometheus { child, port, dir }
    }

    /// Waits until the instant query `promql` gives a value of at least
    /// `want` (no series counts as 0).
    fn wait_for(&self, promql: &str, want: u64) {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.query(promql) {
                Ok(value) if value.unwrap_or(0.0) >= want as f64 => return,
                Ok(value) => last = format!("value {value:?}"),
                Err(err) => last = err,
            }
            thread::sleep(Duration::from_millis(500));
        }
        let targets = http_get(self.port, "/api/v1/targets").unwrap_or_else(|e| e);
        let log = fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let log_tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "Prometheus did not answer `{promql}` with at least {want} within {QUERY_TIMEOUT:?}; \
             last: {last}\ntargets: {targets}\nprometheus log (last lines first):\n{}",
            log_tail.join("\n")
        );
    }

    /// The value of the first series `promql` returns now, if any.
    fn query(&self, promql: &str) -> Result<Option<f64>, String> {
        let body = http_get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(body);
        }
        let Some(first) = answer["data"]["result"].get(0) else {
            return Ok(None);
        };
        first["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or(body)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
