//! The analyses on a stream recorded on the real kernel (`socktrace record`
//! with `--port 47001..47004`, see fixtures/README.md): a server restarting
//! 5 times (~2 ms each) on 47001; a listener on 47004 and a failed bind to
//! it (EADDRINUSE); a UDP server on 47002 for 300 ms; `churn` making 10
//! client-first then 6 server-first connections to 47003 over two
//! loopback addresses. Every number below is what those programs did.
use std::io::BufReader;

use rustc_hash::FxHashMap;

use super::{
    lifecycles::Lifecycles,
    listeners::{Kind, Listeners},
    timewait::{Feed, Host, Place, Settings, Timewait},
};
use crate::{
    event::{Errno, Proto},
    input::Reader,
    summary::Summary,
    track::Record,
};

const RECORDING: &str = include_str!("../../fixtures/listeners-and-churn.jsonl");
const MS: u64 = 1_000_000;

fn records() -> Vec<Record> {
    let mut reader = Reader::new(BufReader::new(RECORDING.as_bytes()));
    let records: Vec<Record> = reader.by_ref().map(|r| r.expect("a valid line")).collect();
    let header = reader.header().expect("a header line");
    assert_eq!(header.filters.len(), 4);
    // Recorded before headers said `time` and `schema`: `start` reads as
    // its time.
    assert_eq!(
        (header.time.as_str(), header.schema),
        ("2026-11-25T17:26:48.778932015Z", None)
    );
    records
}

#[test]
fn listeners_table() {
    let mut l = Listeners::new(1000 * MS);
    let notes: Vec<_> = records().iter().filter_map(|r| l.observe(r)).collect();
    assert_eq!(notes.len(), 19); // 9 opens, 9 closes, 1 failed bind
    let rows: Vec<_> = l
        .rows()
        .map(|(k, r)| {
            (
                (k.proto, k.port, k.kind, k.comm.as_str()),
                (r.pids.len(), r.cycles, r.short, r.open, r.failed_binds),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                (Proto::Tcp, 47001, Kind::Listen, "sockops"),
                (1, 5, 5, 0, 0)
            ),
            ((Proto::Tcp, 47003, Kind::Listen, "churn"), (2, 2, 2, 0, 0)),
            (
                (Proto::Tcp, 47004, Kind::Listen, "python3"),
                (1, 1, 1, 0, 0)
            ),
            ((Proto::Tcp, 47004, Kind::Bound, "python3"), (1, 0, 0, 0, 1)),
            ((Proto::Udp, 47002, Kind::Bound, "python3"), (1, 1, 1, 0, 0)),
        ]
    );
    let restarts = l.rows().next().unwrap().1;
    let (min, median, max) = restarts.lifetimes().unwrap();
    // Each slept 2 ms listening.
    assert!((2 * MS..3 * MS).contains(&min) && min <= median && median <= max);
    let failed = l.rows().nth(3).unwrap().1;
    assert_eq!(failed.last_errno, Some(Errno(98)));
}

#[test]
fn timewait_report() {
    let mut feed = Feed::new(1000 * MS);
    let records = records();
    for r in &records {
        feed.observe(r);
    }
    let settings = Settings {
        top: 10,
        threshold_pct: 50,
        per_request_rate: 10,
    };
    let host = Host {
        port_range: (32768, 60999),
        tw_reuse: Some(2),
        max_tw_buckets: Some(131072),
    };
    let mut tw = Timewait::new(settings, host, 0, Vec::new());
    let r = tw.tick(1_000 * MS, &feed.counted(), feed.in_use(), None);
    assert_eq!((r.entries, r.client_entries, r.server_entries), (16, 10, 6));
    assert_eq!(r.population, 16);
    let dests: Vec<_> = r
        .by_destination
        .iter()
        .map(|d| (d.dest.remote.to_string(), d.time_wait, d.in_use))
        .collect();
    assert_eq!(
        dests,
        [
            ("127.0.0.1:47003".to_string(), 5, 0),
            ("127.0.0.2:47003".to_string(), 5, 0)
        ]
    );
    let ports: Vec<_> = r
        .by_local_port
        .iter()
        .map(|p| (p.id, p.population))
        .collect();
    assert_eq!(ports, [(47003, 6)]);
    let by_process: Vec<_> = r
        .by_process
        .iter()
        .map(|p| (p.comm.as_str(), p.population))
        .collect();
    assert_eq!(by_process, [("churn", 10), ("churn", 6)]);
    // 16 connections, all short, in one second from one process per side:
    // not above 10/s per destination for the client (5 each).
    assert!(r.per_request.is_empty(), "{:?}", r.per_request);
    assert_eq!(
        tw.entries_by_place(),
        FxHashMap::from_iter([
            (Place::To("127.0.0.1:47003".parse().unwrap()), 5),
            (Place::To("127.0.0.2:47003".parse().unwrap()), 5),
            (Place::Served("127.0.0.1:47003".parse().unwrap()), 3),
            (Place::Served("127.0.0.2:47003".parse().unwrap()), 3),
        ])
    );
}

#[test]
fn lifecycles_table() {
    let mut l = Lifecycles::default();
    for r in &records() {
        l.observe(r);
    }
    let rows: Vec<_> = l
        .rows()
        .into_iter()
        .map(|(k, r)| {
            (
                k.place.to_string(),
                r.connections,
                r.failed,
                r.reset,
                r.time_wait,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("to 127.0.0.1:47003".to_string(), 8, 0, 0, 5),
            ("to 127.0.0.2:47003".to_string(), 8, 0, 0, 5),
            ("served on 127.0.0.1:47003".to_string(), 8, 0, 0, 3),
            ("served on 127.0.0.2:47003".to_string(), 8, 0, 0, 3),
        ]
    );
}

#[test]
fn summary_counts() {
    let mut s = Summary::default();
    for r in &records() {
        s.count(r);
    }
    assert_eq!(
        (s.state, s.bind, s.listen, s.release, s.close),
        (192, 10, 8, 1, 32)
    );
    assert_eq!(s.time_waits.values().sum::<u64>(), 16);
    assert_eq!(s.listeners_closed, 9);
    assert_eq!(s.short_listeners.values().sum::<u64>(), 9);
    assert_eq!(s.short_listeners["tcp 47001 sockops"], 5);
}
