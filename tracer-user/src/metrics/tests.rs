use super::*;
use crate::{
    event::{Event, Owner, Proto, TcpState, TcpStats},
    track::Close,
};

/// The value of `series` (name and labels, as encoded) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

fn state(old: TcpState, new: TcpState) -> Record {
    Record::Event(Event::sample(
        1,
        10,
        "app",
        Proto::Tcp,
        Detail::transition("127.0.0.1:8080", "127.0.0.1:50000", old, new),
    ))
}

fn bind(errno: i32) -> Record {
    Record::Event(Event::sample(
        1,
        10,
        "app",
        Proto::Tcp,
        Detail::Bind {
            addr: "0.0.0.0:80".parse().expect("addr"),
            requested_port: 80,
            errno: Errno(errno),
        },
    ))
}

fn listen(errno: i32) -> Record {
    Record::Event(Event::sample(
        1,
        10,
        "app",
        Proto::Tcp,
        Detail::Listen {
            addr: "0.0.0.0:80".parse().expect("addr"),
            backlog: 128,
            errno: Errno(errno),
        },
    ))
}

/// A connection that ended in TIME_WAIT on local port `port`.
fn time_wait(opener: Opener, port: u16) -> Record {
    let mut close = Close::sample(
        1,
        Owner::UNKNOWN,
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:9",
    );
    close.opener = opener;
    close.time_wait = true;
    Record::Close(close)
}

#[test]
fn counts_transitions_binds_and_listens() {
    let m = Metrics::new();
    m.observe(&state(TcpState::Close, TcpState::SynSent));
    m.observe(&state(TcpState::FinWait2, TcpState::TimeWait));
    m.observe(&state(TcpState::FinWait2, TcpState::TimeWait));
    m.observe(&bind(0));
    m.observe(&bind(libc::EADDRINUSE));
    m.observe(&bind(libc::EADDRINUSE));
    m.observe(&listen(0));
    m.observe(&listen(libc::EOPNOTSUPP));
    let text = m.encode();
    let v = |series| value(&text, series);
    assert_eq!(
        v(r#"socktrace_tcp_transitions_total{old_state="CLOSE",new_state="SYN_SENT"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(r#"socktrace_tcp_transitions_total{old_state="FIN_WAIT2",new_state="TIME_WAIT"}"#),
        Some(2.0)
    );
    assert_eq!(v(r#"socktrace_binds_total{result="ok"}"#), Some(1.0));
    assert_eq!(
        v(r#"socktrace_binds_total{result="EADDRINUSE"}"#),
        Some(2.0)
    );
    assert_eq!(v(r#"socktrace_listens_total{result="ok"}"#), Some(1.0));
    assert_eq!(
        v(r#"socktrace_listens_total{result="EOPNOTSUPP"}"#),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn time_wait_entries_by_port_are_bounded() {
    let m = Metrics::new();
    m.observe(&time_wait(Opener::Active, 41000));
    m.observe(&time_wait(Opener::Active, 41001));
    // The first TOP_PORTS ports get a label, later ones count as `other`.
    for port in 0..TOP_PORTS as u16 + 3 {
        m.observe(&time_wait(Opener::Passive, 8000 + port));
    }
    m.observe(&time_wait(Opener::Passive, 8000));
    m.observe(&time_wait(Opener::Unknown, 8001));
    // A close without TIME_WAIT is not an entry.
    m.observe(&Record::Close(Close::sample(
        1,
        Owner::UNKNOWN,
        "127.0.0.1:8002",
        "127.0.0.1:9",
    )));
    let text = m.encode();
    let v = |port: &str| {
        value(
            &text,
            &format!(r#"socktrace_timewait_entries_total{{local_port="{port}"}}"#),
        )
    };
    assert_eq!(v("client"), Some(2.0));
    assert_eq!(v("8000"), Some(2.0));
    assert_eq!(v("8001"), Some(2.0));
    assert_eq!(v("8002"), Some(1.0));
    assert_eq!(v(&(8000 + TOP_PORTS - 1).to_string()), Some(1.0));
    assert_eq!(v(&(8000 + TOP_PORTS).to_string()), None);
    assert_eq!(v("other"), Some(3.0));
    let series = text
        .lines()
        .filter(|l| l.starts_with("socktrace_timewait_entries_total{"))
        .count();
    assert_eq!(series, TOP_PORTS + 2);
}

#[test]
fn connection_durations_skip_connections_older_than_us() {
    let m = Metrics::new();
    let mut close = Close::sample(1, Owner::UNKNOWN, "127.0.0.1:1000", "127.0.0.1:9");
    close.duration_ns = 1_500_000; // 1.5 ms
    m.observe(&Record::Close(close.clone()));
    close.duration_ns = 3_000_000_000;
    m.observe(&Record::Close(close.clone()));
    close.predates_us = true;
    m.observe(&Record::Close(close));
    let text = m.encode();
    let v = |series| value(&text, series);
    assert!(text.contains("# UNIT socktrace_connection_duration_seconds seconds\n"));
    assert_eq!(v("socktrace_connection_duration_seconds_count"), Some(2.0));
    assert_eq!(v("socktrace_connection_duration_seconds_sum"), Some(3.0015));
    assert_eq!(
        v(r#"socktrace_connection_duration_seconds_bucket{le="0.0001"}"#),
        Some(0.0)
    );
    assert_eq!(
        v(r#"socktrace_connection_duration_seconds_bucket{le="0.0016"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(r#"socktrace_connection_duration_seconds_bucket{le="104.8576"}"#),
        Some(2.0)
    );
    assert_eq!(
        v(r#"socktrace_connection_duration_seconds_bucket{le="+Inf"}"#),
        Some(2.0)
    );
}

#[test]
fn handshakes_and_retransmits_by_service() {
    let m = Metrics::new();
    let mut client = Close::sample(1, Owner::UNKNOWN, "127.0.0.1:40000", "127.0.0.1:443");
    client.connect_ns = Some(1_003_000_000);
    client.tcp = Some(TcpStats {
        retransmits: 3,
        srtt_us: 50,
        rttvar_us: 20,
    });
    m.observe(&Record::Close(client.clone()));
    let mut server = Close::sample(1, Owner::UNKNOWN, "127.0.0.1:8080", "127.0.0.1:40001");
    server.opener = Opener::Passive;
    server.connect_ns = Some(60_000);
    m.observe(&Record::Close(server));
    // Open before start: its side and handshake are unknown.
    client.opener = Opener::Unknown;
    m.observe(&Record::Close(client));
    let text = m.encode();
    let v = |series: &str| value(&text, series);
    let le = |labels: &str, le: &str| {
        v(&format!(
            "socktrace_connect_duration_seconds_bucket{{le=\"{le}\",{labels}}}"
        ))
    };
    let client = r#"side="client",port="443""#;
    assert_eq!(le(client, "0.65536"), Some(0.0));
    assert_eq!(le(client, "1.31072"), Some(1.0), "{text}");
    let server = r#"side="server",port="8080""#;
    assert_eq!(le(server, "0.00008"), Some(1.0), "{text}");
    assert_eq!(
        v(&format!("socktrace_retransmits_total{{{client}}}")),
        Some(3.0)
    );
    assert_eq!(
        v(&format!("socktrace_retransmits_total{{{server}}}")),
        None,
        "no count from this kernel"
    );
}

#[test]
fn losses_follow_absolute_totals() {
    let m = Metrics::new();
    let mut kernel = KernelCounters {
        ring_drops: 5,
        recursion_misses: 2,
        ..KernelCounters::default()
    };
    m.set_losses(&kernel, 1);
    kernel.ring_drops = 7;
    m.set_losses(&kernel, 4);
    // Totals never go down; a smaller one changes nothing.
    m.set_losses(&KernelCounters::default(), 0);
    let text = m.encode();
    assert_eq!(value(&text, "socktrace_ring_drops_total"), Some(7.0));
    assert_eq!(value(&text, "socktrace_recursion_misses_total"), Some(2.0));
    assert_eq!(
        value(&text, "socktrace_owner_map_evictions_total"),
        Some(4.0)
    );
}

#[test]
fn listeners() {
    let m = Metrics::new();
    m.set_listeners_open(3);
    m.set_listeners_open(2);
    m.short_lived_listener();
    let text = m.encode();
    assert!(text.contains("# TYPE socktrace_listeners_open gauge\n"));
    assert_eq!(value(&text, "socktrace_listeners_open"), Some(2.0));
    assert_eq!(
        value(&text, "socktrace_short_lived_listeners_total"),
        Some(1.0)
    );
}

#[test]
fn time_wait_population_keeps_the_top_ports() {
    let row = |port: &str, entries, population| TimewaitRow {
        local_port: port.into(),
        entries,
        population,
    };
    let m = Metrics::new();
    // Ports 1..=25 with entries equal to the port: 6..=25 are the top 20.
    let mut rows: Vec<TimewaitRow> = (1..=25).map(|p| row(&p.to_string(), p, 10)).collect();
    rows.push(row("client", 100, 7));
    rows.push(row("other", 0, 1));
    m.set_timewait(&rows);
    let text = m.encode();
    let v = |port: &str| {
        value(
            &text,
            &format!(r#"socktrace_timewait_sockets{{local_port="{port}"}}"#),
        )
    };
    assert_eq!(v("client"), Some(7.0));
    assert_eq!(v("25"), Some(10.0));
    assert_eq!(v("7"), Some(10.0));
    assert_eq!(v("6"), None);
    assert_eq!(v("other"), Some(61.0)); // ports 1..=6 and the `other` row
    // The next call replaces them all.
    m.set_timewait(&[row("8080", 3, 2)]);
    let text = m.encode();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("socktrace_timewait_sockets{"))
        .collect();
    assert_eq!(
        series,
        [r#"socktrace_timewait_sockets{local_port="8080"} 2"#]
    );
}

#[test]
fn stuck_sockets_by_program_and_state_follow_each_update() {
    let m = Metrics::new();
    let owner = |pid, comm| {
        let detail = crate::event::Detail::Release {
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        Event::sample(0, pid, comm, Proto::Tcp, detail).owner
    };
    let row = |pid, comm, state, count| crate::analysis::stuck::ByProcess {
        owner: owner(pid, comm),
        state,
        count,
        oldest_ns: 0,
    };
    // Two processes of one program add up; a second state is its own series.
    m.set_stuck(&[
        row(1, "leaky", TcpState::CloseWait, 3),
        row(2, "leaky", TcpState::CloseWait, 2),
        row(3, "curl", TcpState::SynSent, 1),
    ]);
    let text = m.encode();
    assert!(
        text.contains("# TYPE socktrace_stuck_sockets gauge\n"),
        "{text}"
    );
    let leaky = r#"socktrace_stuck_sockets{comm="leaky",state="CLOSE_WAIT"}"#;
    let curl = r#"socktrace_stuck_sockets{comm="curl",state="SYN_SENT"}"#;
    assert_eq!(value(&text, leaky), Some(5.0));
    assert_eq!(value(&text, curl), Some(1.0));
    // curl's connection got through: its series goes.
    m.set_stuck(&[row(1, "leaky", TcpState::CloseWait, 4)]);
    let text = m.encode();
    assert_eq!(value(&text, leaky), Some(4.0));
    assert_eq!(value(&text, curl), None, "{text}");
}

/// Every family, every series and every value `/metrics` shows, a push
/// carries too, as Prometheus names them after its OTLP translation:
/// counters as cumulative monotonic sums (`_total`), gauges as gauges
/// (series gone are gone from both), histograms with the same buckets
/// (`_seconds` from the unit). A family added to one side only fails here.
#[test]
fn a_push_carries_what_metrics_shows() {
    let otlp = otlp::Otlp::new("http://127.0.0.1:9/v1/metrics".parse().unwrap());
    let m = &otlp.metrics;
    m.observe(&state(TcpState::SynSent, TcpState::Established));
    m.observe(&bind(libc::EADDRINUSE));
    m.observe(&listen(0));
    m.observe(&time_wait(Opener::Passive, 8080));
    let mut close = Close::sample(1, Owner::UNKNOWN, "127.0.0.1:40000", "127.0.0.1:443");
    close.duration_ns = 1_500_000;
    close.connect_ns = Some(60_000);
    close.tcp = Some(TcpStats {
        retransmits: 2,
        srtt_us: 50,
        rttvar_us: 20,
    });
    close.reset_by = Some(crate::track::Side::Local);
    close.reset_reason = Some("tcp_abort_on_close".into());
    m.observe(&Record::Close(close));
    m.set_losses(
        &KernelCounters {
            ring_drops: 5,
            ..KernelCounters::default()
        },
        1,
    );
    m.set_listeners_open(3);
    m.short_lived_listener();
    m.listen_drops(8080, 4);
    let row = |port: &str, population| TimewaitRow {
        local_port: port.into(),
        entries: 1,
        population,
    };
    m.set_timewait(&[row("8080", 2), row("9090", 1)]);
    m.set_timewait(&[row("8080", 3)]);
    m.set_netns_timewait(Some(12), Some(262_144));
    let owner = Event::sample(
        0,
        7,
        "leaky",
        Proto::Tcp,
        Detail::Release {
            addr: "127.0.0.1:1".parse().unwrap(),
        },
    )
    .owner;
    let stuck = |state, count| crate::analysis::stuck::ByProcess {
        owner: owner.clone(),
        state,
        count,
        oldest_ns: 0,
    };
    m.set_stuck(&[stuck(TcpState::CloseWait, 2), stuck(TcpState::SynSent, 1)]);
    m.set_stuck(&[stuck(TcpState::CloseWait, 3)]);
    m.set_port_headroom(&[dest_row("10.0.0.2:443", 900), dest_row("10.0.0.3:80", 5)]);
    m.set_port_headroom(&[dest_row("10.0.0.2:443", 1000)]);
    m.otlp_failure();

    let text = m.encode();
    let (shown, shown_types) = parse_exposition(&text);
    let (pushed, pushed_types) = translate(&otlp.collect());
    assert_eq!(pushed_types, shown_types);
    assert_eq!(pushed, shown, "{text}");
    // Not vacuous: every kind is there, the gone series are not.
    for series in [
        r#"socktrace_resets_total{by="local",reason="tcp_abort_on_close"}"#,
        r#"socktrace_stuck_sockets{comm="leaky",state="CLOSE_WAIT"}"#,
        r#"socktrace_connect_duration_seconds_bucket{le="0.00008",port="443",side="client"}"#,
        "socktrace_otlp_push_failures_total",
        "socktrace_ephemeral_port_range",
    ] {
        assert!(shown.contains_key(series), "{series} in {shown:?}");
    }
    for gone in [
        r#"socktrace_stuck_sockets{comm="leaky",state="SYN_SENT"}"#,
        r#"socktrace_timewait_sockets{local_port="9090"}"#,
    ] {
        assert!(!pushed.contains_key(gone), "{gone} in {pushed:?}");
    }
}

/// A series as `name{k="v",...}`, labels sorted, `le` as a number.
type Series = std::collections::BTreeMap<String, f64>;
type Types = std::collections::BTreeSet<(String, &'static str)>;

fn series(name: &str, mut labels: Vec<(String, String)>) -> String {
    labels.sort();
    if labels.is_empty() {
        return name.into();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| match (k.as_str(), v.parse::<f64>()) {
            ("le", Ok(le)) => format!("le=\"{le}\""),
            _ => format!("{k}=\"{v}\""),
        })
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The series and family types of an OpenMetrics exposition.
fn parse_exposition(text: &str) -> (Series, Types) {
    let mut all = Series::new();
    let mut types = Types::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let (name, kind) = family.split_once(' ').expect("a type");
            let kind = ["counter", "gauge", "histogram"]
                .into_iter()
                .find(|k| *k == kind)
                .expect("a known type");
            types.insert((name.into(), kind));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("a sample");
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closed labels");
                let labels = inner
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (head, Vec::new()),
        };
        all.insert(series(name, labels), value.parse().expect("a number"));
    }
    (all, types)
}

/// A push as Prometheus stores it (its OTLP translation, suffixes added).
fn translate(batch: &opentelemetry_sdk::metrics::data::ResourceMetrics) -> (Series, Types) {
    use opentelemetry_sdk::metrics::{
        Temporality,
        data::{AggregatedMetrics, MetricData},
    };
    let attrs = |a: &mut dyn Iterator<Item = &KeyValue>| -> Vec<(String, String)> {
        a.map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    };
    let mut all = Series::new();
    let mut types = Types::new();
    for metric in batch.scope_metrics().flat_map(|s| s.metrics()) {
        let name = metric.name();
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                assert!(sum.is_monotonic() && sum.temporality() == Temporality::Cumulative);
                types.insert((name.into(), "counter"));
                for p in sum.data_points() {
                    let s = series(&format!("{name}_total"), attrs(&mut p.attributes()));
                    all.insert(s, p.value() as f64);
                }
            }
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                types.insert((name.into(), "gauge"));
                for p in gauge.data_points() {
                    all.insert(series(name, attrs(&mut p.attributes())), p.value() as f64);
                }
            }
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                assert_eq!(metric.unit(), "s");
                assert_eq!(h.temporality(), Temporality::Cumulative);
                let name = format!("{name}_seconds");
                for p in h.data_points() {
                    let labels = attrs(&mut p.attributes());
                    let with = |extra: Option<(&str, String)>| {
                        let mut l = labels.clone();
                        l.extend(extra.map(|(k, v)| (k.to_string(), v)));
                        l
                    };
                    let mut cumulative = 0;
                    let bounds = p.bounds().map(|b| b.to_string()).chain(["+Inf".into()]);
                    for (le, n) in bounds.zip(p.bucket_counts()) {
                        cumulative += n;
                        let s = series(&format!("{name}_bucket"), with(Some(("le", le))));
                        all.insert(s, cumulative as f64);
                    }
                    all.insert(series(&format!("{name}_sum"), with(None)), p.sum());
                    all.insert(
                        series(&format!("{name}_count"), with(None)),
                        p.count() as f64,
                    );
                }
                types.insert((name, "histogram"));
            }
            other => panic!("{name}: an unexpected kind {other:?}"),
        }
    }
    (all, types)
}

#[test]
fn the_namespaces_time_wait_and_its_limit_show_once_known() {
    let m = Metrics::new();
    let (sockets, limit) = (
        "socktrace_netns_timewait_sockets",
        "socktrace_tcp_max_tw_buckets",
    );
    assert_eq!(
        value(&m.encode(), sockets),
        None,
        "nothing before it is read"
    );
    assert_eq!(value(&m.encode(), limit), None, "nothing before it is read");
    m.set_netns_timewait(Some(17), None);
    assert_eq!(value(&m.encode(), sockets), Some(17.0));
    assert_eq!(
        value(&m.encode(), limit),
        None,
        "an unreadable limit shows none"
    );
    m.set_netns_timewait(Some(3), Some(262_144));
    assert_eq!(value(&m.encode(), sockets), Some(3.0));
    assert_eq!(value(&m.encode(), limit), Some(262_144.0));
}

/// A destination of 10.0.0.1's connections holding `held` of 28232 ports.
fn dest_row(remote: &str, held: u64) -> crate::analysis::timewait::DestRow {
    crate::analysis::timewait::DestRow {
        dest: crate::analysis::timewait::Dest {
            netns: 1,
            local: "10.0.0.1".parse().unwrap(),
            remote: remote.parse().unwrap(),
        },
        per_sec: 0.0,
        time_wait: held,
        in_use: 0,
        ports: crate::analysis::timewait::Headroom {
            held,
            range: 28232,
            percent: 0.0,
            runs_out_in_s: None,
            tw_reuse: false,
        },
    }
}

#[test]
fn port_headroom_by_destination_and_the_range() {
    let m = Metrics::new();
    m.set_port_headroom(&[dest_row("10.0.0.2:443", 900), dest_row("10.0.0.3:80", 5)]);
    m.set_port_headroom(&[dest_row("10.0.0.2:443", 1000)]);
    let text = m.encode();
    let held = |daddr: &str, dport: u16| {
        format!(
            r#"socktrace_ephemeral_ports_held{{saddr="10.0.0.1",daddr="{daddr}",dport="{dport}"}}"#
        )
    };
    assert_eq!(value(&text, &held("10.0.0.2", 443)), Some(1000.0), "{text}");
    assert_eq!(value(&text, &held("10.0.0.3", 80)), None, "gone: {text}");
    assert_eq!(
        value(&text, "socktrace_ephemeral_port_range"),
        Some(28232.0)
    );
}
