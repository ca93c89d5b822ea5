//! The Prometheus exporter end to end: `socktrace --metrics`, scraped by a
//! real Prometheus server (Debian's `prometheus`), read back through
//! Prometheus's query API.
mod common;

use std::{
    fs,
    net::TcpListener,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use common::{query::*, *};

/// Where Debian's `prometheus` package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const CONNECTIONS: u64 = 3;

#[test]
fn prometheus_scrapes_socktrace() {
    require_tool(PROMETHEUS, "prometheus");
    require_time_wait_room();
    let metrics_port = free_port("127.0.0.1");
    let tracer = Tracer::start(&["--metrics", &format!("127.0.0.1:{metrics_port}")]);

    // Loopback connections that end in TIME_WAIT, then a bind to a port
    // in use.
    let listener = time_wait_connections(CONNECTIONS);
    let port = listener.local_addr().expect("addr").port();
    let report = Op::run(&["bind", "tcp", "127.0.0.1", &port.to_string()]);
    assert_eq!(report["errno"], libc::EADDRINUSE);

    let prometheus = prometheus(metrics_port);
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
    let mut leak = holding_server();
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
    close_its_client(&mut leak);
    close_unread(&abort);
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
fn prometheus(target: u16) -> QueryServer {
    QueryServer::spawn("prometheus", Path::new(PROMETHEUS), |port, dir| {
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
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]
    })
}
