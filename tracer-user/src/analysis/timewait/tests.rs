use super::*;

const S: u64 = 1_000_000_000;

fn client(pid: u32, remote: &str, port: u16) -> Key {
    Key {
        netns: 1,
        pid,
        role: Role::Client,
        local: "127.0.0.1".parse().unwrap(),
        remote: remote.parse().unwrap(),
        port,
    }
}

fn counted(key: &Key, time_waits: u64, closes: u64, short: u64) -> Counted {
    Counted {
        key: key.clone(),
        comm: format!("p{}", key.pid),
        totals: Totals {
            time_waits,
            closes,
            short,
        },
    }
}

fn analysis(range: (u16, u16), tw_reuse: u8) -> Timewait {
    counting_from(range, Some(tw_reuse), Vec::new())
}

/// TIME_WAITs there when counting began at 0 (by key, how many), their
/// ends spread evenly over the next 60 s.
fn spread(before: Vec<(Key, u64)>) -> Before {
    before
        .into_iter()
        .map(|(key, n)| {
            (
                key,
                (1..=n).map(|i| i * crate::track::TW_LEN_NS / n).collect(),
            )
        })
        .collect()
}

/// Counting from 0, with the TIME_WAITs of `before` there then.
fn counting_from(range: (u16, u16), tw_reuse: Option<u8>, before: Before) -> Timewait {
    let settings = Settings {
        top: 10,
        threshold_pct: 50,
        per_request_rate: 10,
    };
    let host = Host {
        port_range: range,
        tw_reuse,
        max_tw_buckets: Some(1000),
    };
    Timewait::new(settings, host, 0, before)
}

#[test]
fn rates_population_and_expiry() {
    let mut tw = analysis((1000, 1999), 0);
    let a = client(10, "10.0.0.2", 80);
    let none = FxHashMap::default();
    let r = tw.tick(S, &[counted(&a, 100, 100, 100)], &none, Some(100));
    assert_eq!((r.entries, r.client_entries, r.population), (100, 100, 100));
    assert_eq!(r.rate(), 100.0);
    assert_eq!(r.by_process[0].id, 10);
    assert_eq!(r.by_process[0].comm, "p10");
    assert_eq!(r.by_destination[0].time_wait, 100);
    // Running totals: only the difference counts.
    let r = tw.tick(2 * S, &[counted(&a, 150, 150, 150)], &none, None);
    assert_eq!((r.entries, r.population, r.total_entries), (50, 150, 150));
    // 60 s after the first entries they are gone.
    let r = tw.tick(61 * S, &[counted(&a, 150, 150, 150)], &none, None);
    assert_eq!((r.entries, r.population), (0, 50));
    let r = tw.tick(62 * S, &[counted(&a, 150, 150, 150)], &none, None);
    assert_eq!(r.population, 0);
    assert_eq!(
        tw.entries_by_place(),
        FxHashMap::from_iter([(Place::To("10.0.0.2:80".parse().unwrap()), 150)])
    );
}

#[test]
fn port_pressure_names_the_process() {
    // 1000 ports; 450 in TIME_WAIT and 100 in use = 55 % > 50 %.
    let mut tw = analysis((1000, 1999), 0);
    let a = client(10, "10.0.0.2", 80);
    let b = client(11, "10.0.0.2", 80);
    let dest = a.destination();
    let in_use = FxHashMap::from_iter([(dest, 100)]);
    let r = tw.tick(
        S,
        &[counted(&a, 400, 400, 0), counted(&b, 50, 50, 0)],
        &in_use,
        None,
    );
    assert_eq!(r.pressure.len(), 1, "{r:?}");
    let p = &r.pressure[0];
    assert_eq!((p.ports.held, p.ports.range, p.pid), (550, 1000, 10));
    assert_eq!(p.comm, "p10");
    assert!((p.ports.percent - 55.0).abs() < 1e-9);
    assert!(!p.ports.tw_reuse);
    assert_eq!(r.by_destination[0].in_use, 100);
    // Under the threshold: no warning. Loopback with reuse=2: noted.
    let mut tw = analysis((1000, 1999), 2);
    let c = client(12, "127.0.0.2", 80);
    let r = tw.tick(S, &[counted(&c, 499, 499, 0)], &FxHashMap::default(), None);
    assert!(r.pressure.is_empty());
    let r = tw.tick(
        2 * S,
        &[counted(&c, 600, 600, 0)],
        &FxHashMap::default(),
        None,
    );
    assert!(r.pressure[0].ports.tw_reuse);
    assert!(
        r.settings[0].starts_with("tcp_tw_reuse=2"),
        "{:?}",
        r.settings
    );
    assert!(
        r.settings[1].contains("600 in use (60%)"),
        "{:?}",
        r.settings
    );
}

#[test]
fn every_destination_says_its_port_headroom() {
    // 1000 ports. Counting starts at 0 with 100 TIME_WAITs towards A.
    let a = client(10, "10.0.0.2", 80);
    let b = client(11, "127.0.0.3", 80);
    let before = spread(vec![(client(0, "10.0.0.2", 80), 100)]);
    let mut tw = counting_from((1000, 1999), Some(2), before);
    let ports = |r: &Report, key: &Key| {
        let row = r
            .by_destination
            .iter()
            .find(|d| d.dest == key.destination());
        let h = row.expect("a row").ports;
        (h.held, h.range, h.percent, h.runs_out_in_s, h.tw_reuse)
    };
    // At 0.5 s: A has 300 new TIME_WAITs (+300 in 0.5 s: 600/s), and 50
    // connections in use, there when first seen; B only 20 in use.
    let in_use = FxHashMap::from_iter([(a.destination(), 50), (b.destination(), 20)]);
    let half = S / 2;
    // (Those from before end one every 0.6 s: all 100 there at 0.5 s.)
    let r = tw.tick(half, &[counted(&a, 300, 300, 300)], &in_use, None);
    assert_eq!(ports(&r, &a), (450, 1000, 45.0, Some(550.0 / 600.0), false));
    assert_eq!(ports(&r, &b), (20, 1000, 2.0, None, true));
    assert!(r.pressure.is_empty());
    // At 1.5 s: A +100 TIME_WAITs and +50 in use in 1 s (150/s; the
    // old ones down to 98), past the threshold; B down to 10 in use.
    let in_use = FxHashMap::from_iter([(a.destination(), 100), (b.destination(), 10)]);
    let r = tw.tick(3 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
    assert_eq!(ports(&r, &a), (598, 1000, 59.8, Some(402.0 / 148.0), false));
    assert_eq!(ports(&r, &b), (10, 1000, 1.0, None, true));
    assert_eq!(r.pressure.len(), 1);
    assert_eq!(
        (r.pressure[0].ports, r.pressure[0].pid),
        (r.by_destination[0].ports, 10)
    );
    // Nothing new: A's ports do not fill, whatever it holds.
    let r = tw.tick(5 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
    assert_eq!(ports(&r, &a).3, None);
    // Full (400 + 95 from before + 700): it ran out.
    let in_use = FxHashMap::from_iter([(a.destination(), 700)]);
    let r = tw.tick(7 * half, &[counted(&a, 400, 400, 400)], &in_use, None);
    assert_eq!(ports(&r, &a), (1195, 1000, 119.5, Some(0.0), false));
}

#[test]
fn connection_per_request() {
    let mut tw = analysis((1000, 60999), 0);
    let fast = client(10, "10.0.0.2", 80);
    let slow = client(11, "10.0.0.3", 80);
    let long = client(12, "10.0.0.4", 80);
    let r = tw.tick(
        2 * S,
        &[
            counted(&fast, 40, 40, 40), // 20/s, all short
            counted(&slow, 10, 10, 10), // 5/s: too slow
            counted(&long, 40, 40, 10), // 20/s, mostly long
        ],
        &FxHashMap::default(),
        None,
    );
    assert_eq!(r.per_request.len(), 1, "{r:?}");
    assert_eq!((r.per_request[0].pid, r.per_request[0].per_sec), (10, 20.0));
}

#[test]
fn servers_are_counted_by_local_port() {
    let mut tw = analysis((32768, 60999), 0);
    let server = Key {
        role: Role::Server,
        port: 8080,
        ..client(20, "10.0.0.9", 0)
    };
    let r = tw.tick(
        S,
        &[counted(&server, 30, 30, 0)],
        &FxHashMap::default(),
        None,
    );
    assert_eq!((r.server_entries, r.client_entries), (30, 0));
    assert_eq!(r.by_local_port[0].id, 8080);
    assert_eq!(r.by_local_port[0].population, 30);
    assert!(r.by_destination.is_empty());
}

#[test]
fn sockets_from_before_start_end_when_their_timers_fire() {
    // Ten made just before counting began: all there until their timers
    // fire together, 59.5 s on; not an even share every second.
    let ends = vec![59 * S + S / 2; 10];
    let before = vec![(client(0, "10.0.0.2", 80), ends)];
    let mut tw = counting_from((1000, 1999), None, before);
    let none = FxHashMap::default();
    assert_eq!(tw.tick(30 * S, &[], &none, None).population, 10);
    assert_eq!(tw.tick(59 * S, &[], &none, None).population, 10);
    assert_eq!(tw.tick(60 * S, &[], &none, None).population, 0);
}

#[test]
fn sockets_from_before_start_spread_end_a_share_at_a_time() {
    let before = spread(vec![(client(0, "10.0.0.2", 80), 600)]);
    let mut tw = counting_from((1000, 1999), None, before);
    let none = FxHashMap::default();
    assert_eq!(tw.tick(30 * S, &[], &none, None).population, 300);
    assert_eq!(tw.tick(60 * S, &[], &none, None).population, 0);
}
