//! The tracker on event streams as the kernel produces them (the orders
//! below are the ones the integration tests observe on Linux 6.18).
use super::*;
use crate::event::{Comm, Errno, Proto, TwEnd};

const CLIENT: u32 = 100;
const SERVER: u32 = 200;

fn owner(pid: u32, source: OwnerSource) -> Owner {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    Owner {
        pid,
        tid: pid,
        uid: 0,
        comm: Comm::new(&comm),
        cgroup_id: 1,
        cgroup: None,
        source,
    }
}

fn ev(
    ms: u64,
    sock: u64,
    pid: Option<u32>,
    (local, remote): (&str, &str),
    (old, new): (TcpState, TcpState),
    info: StateInfo,
) -> Event {
    Event {
        mono_ns: ms * 1_000_000,
        owner: pid.map_or(Owner::UNKNOWN, |p| owner(p, OwnerSource::Syscall)),
        proto: Proto::Tcp,
        sock: Some(SockId(sock)),
        netns: 1,
        detail: Detail::State {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            old,
            new,
            info,
        },
    }
}

fn run(tracker: &mut Tracker, events: Vec<Event>) -> Vec<Record> {
    let mut out = Vec::new();
    for e in events {
        tracker.observe(e, &mut out);
    }
    out
}

fn states(records: &[Record], sock: u64) -> Vec<(TcpState, TcpState)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Event(Event {
                sock: Some(SockId(s)),
                detail: Detail::State { old, new, .. },
                ..
            }) if *s == sock => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

fn close(records: &[Record], sock: u64) -> &super::Close {
    let closes: Vec<&super::Close> = records
        .iter()
        .filter_map(|r| match r {
            Record::Close(c) if c.sock == SockId(sock) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(closes.len(), 1, "{records:#?}");
    closes[0]
}

use TcpState::*;

const C: (&str, &str) = ("127.0.0.1:40000", "127.0.0.1:8080");
const S: (&str, &str) = ("127.0.0.1:8080", "127.0.0.1:40000");
const NONE: StateInfo = StateInfo {
    sk_err: Errno(0),
    rst_received: false,
    rst_sent: false,
    peer_fin: false,
    tw_table_full: false,
    bytes_acked: 0,
    bytes_received: 0,
    tcp: None,
    tw_end: None,
};

fn tcp(retransmits: u32, srtt_us: u32) -> StateInfo {
    StateInfo {
        tcp: Some(TcpStats {
            retransmits,
            srtt_us,
            rttvar_us: srtt_us / 2,
        }),
        ..NONE
    }
}

/// A client that waited 1.2 s in SYN_SENT (its SYN sent again once), a
/// server whose SYN-ACK came back in 80 µs, one whose SYN-ACK was sent
/// again, and a connect that timed out after 2 SYNs sent again.
#[test]
fn handshakes_are_timed_from_each_side() {
    let mut t = Tracker::new(16);
    let out = run(
        &mut t,
        vec![
            ev(0, 1, Some(CLIENT), C, (Close, SynSent), NONE),
            ev(1200, 1, Some(CLIENT), C, (SynSent, Established), tcp(1, 40)),
            ev(1300, 1, Some(CLIENT), C, (Established, Close), tcp(4, 55)),
            ev(1200, 2, Some(SERVER), S, (Listen, SynRecv), NONE),
            ev(1200, 2, Some(SERVER), S, (SynRecv, Established), tcp(0, 80)),
            ev(1300, 2, Some(SERVER), S, (Established, Close), tcp(0, 60)),
            ev(1200, 3, Some(SERVER), S, (Listen, SynRecv), NONE),
            ev(1200, 3, Some(SERVER), S, (SynRecv, Established), tcp(1, 80)),
            ev(1300, 3, Some(SERVER), S, (Established, Close), tcp(1, 60)),
            ev(0, 4, Some(CLIENT), C, (Close, SynSent), NONE),
            ev(7000, 4, Some(CLIENT), C, (SynSent, Close), tcp(2, 0)),
        ],
    );
    let client = close(&out, 1);
    assert_eq!(client.connect_ns, Some(1_200_000_000));
    assert_eq!(client.syn_retransmits, Some(1));
    assert_eq!(
        client.tcp,
        Some(TcpStats {
            retransmits: 4,
            srtt_us: 55,
            rttvar_us: 27
        }),
        "at the end, the whole life's"
    );
    let server = close(&out, 2);
    assert_eq!(
        (server.connect_ns, server.syn_retransmits),
        (Some(80_000), Some(0))
    );
    let resent = close(&out, 3);
    assert_eq!(
        (resent.connect_ns, resent.syn_retransmits),
        (None, Some(1)),
        "the first SYN-ACK's time is gone"
    );
    let failed = close(&out, 4);
    assert_eq!((failed.connect_ns, failed.syn_retransmits), (None, Some(2)));
    assert!(failed.failure.is_some());
}

#[test]
fn a_kernel_without_the_counts_leaves_them_unknown() {
    let mut t = Tracker::new(16);
    let out = run(
        &mut t,
        vec![
            ev(0, 1, Some(CLIENT), C, (Close, SynSent), NONE),
            ev(3, 1, Some(CLIENT), C, (SynSent, Established), NONE),
            ev(9, 1, Some(CLIENT), C, (Established, Close), NONE),
        ],
    );
    let c = close(&out, 1);
    assert_eq!(
        (c.connect_ns, c.syn_retransmits, c.tcp),
        (Some(3_000_000), None, None),
        "an active open's time needs no kernel count"
    );
}

/// Client closes first: 1000 bytes out, 3000 back.
fn conversation() -> Vec<Event> {
    let fin = StateInfo {
        peer_fin: true,
        ..NONE
    };
    vec![
        ev(
            0,
            1,
            Some(SERVER),
            ("127.0.0.1:8080", "0.0.0.0:0"),
            (Close, Listen),
            NONE,
        ),
        ev(
            1,
            2,
            Some(CLIENT),
            ("127.0.0.1:0", "127.0.0.1:8080"),
            (Close, SynSent),
            NONE,
        ),
        ev(2, 2, Some(CLIENT), C, (SynSent, Established), NONE),
        ev(2, 3, Some(SERVER), S, (Listen, SynRecv), NONE),
        ev(3, 3, Some(SERVER), S, (SynRecv, Established), NONE),
        ev(10, 2, Some(CLIENT), C, (Established, FinWait1), NONE),
        ev(10, 3, Some(SERVER), S, (Established, CloseWait), fin),
        ev(11, 3, Some(SERVER), S, (CloseWait, LastAck), fin),
        ev(11, 2, Some(CLIENT), C, (FinWait1, FinWait2), NONE),
        ev(
            11,
            2,
            Some(CLIENT),
            C,
            (FinWait2, Close),
            StateInfo {
                bytes_acked: 1002,
                bytes_received: 3001,
                ..fin
            },
        ),
        ev(
            12,
            3,
            Some(SERVER),
            S,
            (LastAck, Close),
            StateInfo {
                bytes_acked: 3001,
                bytes_received: 1001,
                ..fin
            },
        ),
        ev(
            20,
            1,
            Some(SERVER),
            ("127.0.0.1:8080", "0.0.0.0:0"),
            (Listen, Close),
            NONE,
        ),
    ]
}

#[test]
fn the_active_closer_enters_time_wait() {
    let mut t = Tracker::new(16);
    let out = run(&mut t, conversation());
    assert_eq!(
        states(&out, 2),
        [
            (Close, SynSent),
            (SynSent, Established),
            (Established, FinWait1),
            (FinWait1, FinWait2),
            (FinWait2, TimeWait)
        ]
    );
    let c = close(&out, 2);
    assert_eq!(
        (c.opener, c.closed_first, c.time_wait),
        (Opener::Active, Some(Side::Local), true)
    );
    assert_eq!(
        (c.bytes_sent, c.bytes_received),
        (1000, 3000),
        "SYN and FINs are not data"
    );
    assert_eq!(
        (c.duration_ns, c.failure, c.reset_by),
        (10_000_000, None, None)
    );
    assert_eq!(
        c.spent,
        [
            (SynSent, 1_000_000),
            (Established, 8_000_000),
            (FinWait1, 1_000_000),
            (FinWait2, 0)
        ]
    );
    let s = close(&out, 3);
    assert_eq!(
        (s.opener, s.closed_first, s.time_wait),
        (Opener::Passive, Some(Side::Remote), false)
    );
    assert_eq!((s.bytes_sent, s.bytes_received), (3000, 1000));
    assert_eq!(s.owner.pid, SERVER);
    assert!(
        !out.iter()
            .any(|r| matches!(r, Record::Close(c) if c.sock == SockId(1))),
        "listener"
    );
    assert_eq!(
        (t.timewaits.len(), t.len()),
        (1, 0),
        "only the TIME_WAIT remains"
    );
}

#[test]
fn no_time_wait_when_the_kernel_could_not_create_one() {
    // The TIME_WAIT bucket table is full: no timewait socket takes over.
    let mut events = conversation();
    for e in &mut events {
        if let Detail::State {
            old: FinWait2,
            info,
            ..
        } = &mut e.detail
        {
            info.tw_table_full = true;
        }
    }
    let mut t = Tracker::new(16);
    let out = run(&mut t, events);
    assert_eq!(states(&out, 2).last(), Some(&(FinWait2, Close)));
    let c = close(&out, 2);
    assert_eq!((c.time_wait, c.closed_first), (false, Some(Side::Local)));
    assert!(t.timewaits.is_empty());
}

#[test]
fn time_wait_ends_when_a_dump_misses_it_or_by_expiry() {
    let mut t = Tracker::new(16);
    run(&mut t, conversation());
    let mut ended = Vec::new();
    // Still there at the next dump: nothing ends.
    t.timewaits
        .reconcile(&[SockId(2)], 1_000_000_000, 1, &mut ended);
    assert!(ended.is_empty());
    // Gone 2 s in: ended early (reuse, RST), seen by that dump.
    t.timewaits.reconcile(&[], 2_000_000_000, 1, &mut ended);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].mono_ns, 2_000_000_000);
    let Detail::State { old, new, info, .. } = ended[0].detail else {
        panic!()
    };
    assert_eq!(
        (old, new, info.tw_end),
        (TimeWait, Close, Some(TwEnd::Observed))
    );
    assert_eq!(ended[0].owner.pid, CLIENT);

    // Gone after its 60 s: it expired, at exactly entry + 60 s.
    let mut t = Tracker::new(16);
    run(&mut t, conversation());
    let mut ended = Vec::new();
    t.timewaits.reconcile(&[], 75_000_000_000, 1, &mut ended);
    assert_expired(&ended[0]);
}

/// `end` is the conversation's TIME_WAIT ending by expiry: at exactly its
/// entry + 60 s.
fn assert_expired(end: &Event) {
    assert_eq!(end.mono_ns, 11_000_000 + TW_LEN_NS);
    let Detail::State { info, .. } = end.detail else {
        panic!()
    };
    assert_eq!(info.tw_end, Some(TwEnd::Timeout));
}

#[test]
fn a_time_wait_of_another_namespace_ends_by_expiry_not_by_our_dumps() {
    let mut t = Tracker::new(16);
    run(&mut t, conversation());
    let mut ended = Vec::new();
    // Our dumps (namespace 7) cannot list it: missing says nothing.
    t.timewaits.reconcile(&[], 2_000_000_000, 7, &mut ended);
    assert!(ended.is_empty());
    t.timewaits.reconcile(&[], 75_000_000_000, 7, &mut ended);
    assert_eq!(ended.len(), 1);
    assert_expired(&ended[0]);
}

#[test]
fn a_dump_started_before_the_entry_does_not_end_it() {
    let mut t = Tracker::new(16);
    run(&mut t, conversation());
    let mut ended = Vec::new();
    t.timewaits.reconcile(&[], 5_000_000, 1, &mut ended);
    assert!(ended.is_empty());
    assert_eq!(t.timewaits.len(), 1);
}

#[test]
fn refused_and_timed_out_connects() {
    let mut t = Tracker::new(16);
    let refused = StateInfo {
        sk_err: Errno(111),
        rst_received: true,
        ..NONE
    };
    let timed_out = StateInfo {
        sk_err: Errno(110),
        ..NONE
    };
    let out = run(
        &mut t,
        vec![
            ev(
                0,
                5,
                Some(CLIENT),
                ("127.0.0.1:0", "127.0.0.1:9"),
                (Close, SynSent),
                NONE,
            ),
            ev(
                1,
                5,
                Some(CLIENT),
                ("127.0.0.1:0", "127.0.0.1:9"),
                (SynSent, Close),
                refused,
            ),
            ev(
                0,
                6,
                Some(CLIENT),
                ("10.0.0.1:0", "10.0.0.2:80"),
                (Close, SynSent),
                NONE,
            ),
            ev(
                3000,
                6,
                Some(CLIENT),
                ("10.0.0.1:0", "10.0.0.2:80"),
                (SynSent, Close),
                timed_out,
            ),
        ],
    );
    let c = close(&out, 5);
    assert_eq!(
        c.failure,
        Some(Failure {
            reason: close::Reason::Refused,
            errno: Errno(111)
        })
    );
    assert_eq!(c.reset_by, Some(Side::Remote));
    let c = close(&out, 6);
    assert_eq!(c.failure.unwrap().reason, close::Reason::TimedOut);
    assert_eq!(c.reset_by, None);
}

#[test]
fn an_abort_is_a_reset_we_sent() {
    let mut t = Tracker::new(16);
    let out = run(
        &mut t,
        vec![
            ev(
                0,
                7,
                Some(CLIENT),
                ("127.0.0.1:0", "127.0.0.1:8080"),
                (Close, SynSent),
                NONE,
            ),
            ev(1, 7, Some(CLIENT), C, (SynSent, Established), NONE),
            ev(2, 7, Some(CLIENT), C, (Established, Close), NONE),
        ],
    );
    let c = close(&out, 7);
    assert_eq!(
        (c.reset_by, c.failure, c.time_wait),
        (Some(Side::Local), None, false)
    );
}

/// An aborted connection: its RST (and the kernel's reason) comes after
/// its transition to CLOSE.
fn aborted(sock: u64, at_ms: u64) -> Vec<Event> {
    vec![
        ev(
            at_ms,
            sock,
            Some(CLIENT),
            ("127.0.0.1:0", "127.0.0.1:8080"),
            (Close, SynSent),
            NONE,
        ),
        ev(
            at_ms + 1,
            sock,
            Some(CLIENT),
            C,
            (SynSent, Established),
            NONE,
        ),
        ev(at_ms + 2, sock, Some(CLIENT), C, (Established, Close), NONE),
    ]
}

fn closes(records: &[Record]) -> Vec<(u64, Option<&str>)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Close(c) => Some((c.sock.0, c.reset_reason.as_deref())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_aborts_close_waits_for_its_resets_reason() {
    let mut t = Tracker::new(16);
    t.resets
        .name(vec!["not_specified".into(), "tcp_abort_on_close".into()]);
    let mut out = run(&mut t, aborted(7, 0));
    assert_eq!(states(&out, 7).last(), Some(&(Established, Close)));
    assert_eq!(closes(&out), [], "the close waits for its RST");
    t.reset(SockId(7), 1, &mut out);
    assert_eq!(closes(&out), [(7, Some("tcp_abort_on_close"))]);
    // A value the kernel did not name goes by its number.
    let mut out = run(&mut t, aborted(8, 10));
    t.reset(SockId(8), 40, &mut out);
    assert_eq!(closes(&out), [(8, Some("40"))]);
}

#[test]
fn a_close_whose_reset_never_comes_goes_out_after_the_wait() {
    let mut t = Tracker::new(16);
    t.resets.name(vec!["not_specified".into()]);
    let mut out = run(&mut t, aborted(7, 0));
    out.extend(run(&mut t, aborted(8, 5)));
    let closed_ns = 2_000_000;
    t.resets
        .release(Some(closed_ns + RESET_WAIT_NS - 1), &mut out);
    assert_eq!(closes(&out), []);
    t.resets.release(Some(closed_ns + RESET_WAIT_NS), &mut out);
    assert_eq!(closes(&out), [(7, None)]);
    t.resets.release(None, &mut out);
    assert_eq!(closes(&out), [(7, None), (8, None)]);
    // Its RST, late, changes nothing.
    t.reset(SockId(7), 0, &mut out);
    assert_eq!(closes(&out).len(), 2);
}

#[test]
fn a_reset_sent_while_open_is_its_closes_reason() {
    let mut t = Tracker::new(16);
    t.resets
        .name(vec!["not_specified".into(), "tcp_keepalive_timeout".into()]);
    let mut events = aborted(7, 0);
    let end = events.pop().unwrap();
    let mut out = run(&mut t, events);
    t.reset(SockId(7), 1, &mut out);
    let sent = StateInfo {
        rst_sent: true,
        ..NONE
    };
    let mut end = end;
    if let Detail::State { info, .. } = &mut end.detail {
        *info = sent;
    }
    out.extend(run(&mut t, vec![end]));
    assert_eq!(closes(&out), [(7, Some("tcp_keepalive_timeout"))]);
}

#[test]
fn without_reasons_no_close_waits() {
    let mut t = Tracker::new(16);
    let out = run(&mut t, aborted(7, 0));
    assert_eq!(closes(&out), [(7, None)]);
}

#[test]
fn owners_from_the_snapshot_fill_unknown_ones() {
    let mut t = Tracker::new(16);
    let server = owner(SERVER, OwnerSource::Cached);
    t.preload(
        [
            Known {
                sock: SockId(1),
                netns: 1,
                state: Listen,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "0.0.0.0:0".parse().unwrap(),
                owner: server.clone(),
            },
            Known {
                sock: SockId(9),
                netns: 1,
                state: Established,
                local: "127.0.0.1:5000".parse().unwrap(),
                remote: "127.0.0.1:6000".parse().unwrap(),
                owner: owner(CLIENT, OwnerSource::Cached),
            },
        ],
        0,
    );
    let out = run(
        &mut t,
        vec![
            // A connection to the pre-existing listener: the kernel never
            // saw the listener's owner.
            ev(1, 3, None, S, (Listen, SynRecv), NONE),
            // A pre-existing connection ends; its owner comes from the snapshot.
            ev(
                2,
                9,
                None,
                ("127.0.0.1:5000", "127.0.0.1:6000"),
                (Established, FinWait1),
                NONE,
            ),
        ],
    );
    let owners: Vec<(u32, OwnerSource)> = out
        .iter()
        .map(|r| match r {
            Record::Event(e) => (e.owner.pid, e.owner.source),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        owners,
        [(SERVER, OwnerSource::Cached), (CLIENT, OwnerSource::Cached)]
    );
}

#[test]
fn zero_ports_are_filled_from_what_the_socket_showed() {
    let mut t = Tracker::new(16);
    let out = run(
        &mut t,
        vec![
            ev(
                0,
                4,
                Some(SERVER),
                ("127.0.0.1:8080", "127.0.0.1:0"),
                (Listen, SynRecv),
                NONE,
            ),
            ev(1, 4, Some(SERVER), S, (SynRecv, Established), NONE),
        ],
    );
    assert_eq!(t.len(), 1);
    let Record::Event(first) = &out[0] else {
        panic!()
    };
    let Detail::State { remote, .. } = first.detail else {
        panic!()
    };
    assert_eq!(
        remote.port(),
        0,
        "not known yet when the first event went out"
    );
    let Record::Event(second) = &out[1] else {
        panic!()
    };
    let Detail::State { remote, .. } = second.detail else {
        panic!()
    };
    assert_eq!(remote.port(), 40000);
}

#[test]
fn the_table_is_bounded_and_counts_what_it_drops() {
    let mut t = Tracker::new(4);
    let opens: Vec<Event> = (0..10)
        .map(|i| {
            ev(
                i,
                100 + i,
                Some(CLIENT),
                ("127.0.0.1:0", "127.0.0.1:80"),
                (Close, SynSent),
                NONE,
            )
        })
        .collect();
    run(&mut t, opens);
    assert_eq!((t.len(), t.evicted), (4, 6));
}

#[test]
fn connections_whose_close_was_missed_are_forgotten() {
    use TcpState::*;
    let mut t = Tracker::new(16);
    let ends = ("127.0.0.1:40000", "127.0.0.1:80");
    let info = StateInfo::default();
    run(
        &mut t,
        vec![
            ev(1, 1, Some(CLIENT), ends, (Close, SynSent), info),
            ev(2, 1, Some(CLIENT), ends, (SynSent, Established), info),
            ev(1, 2, Some(CLIENT), ends, (Close, SynSent), info),
            ev(2, 2, Some(CLIENT), ends, (SynSent, Established), info),
            // Active within a second of the dump: kept whether listed or
            // not (it may have been hashed just after the dump passed).
            ev(500, 3, Some(CLIENT), ends, (Close, SynSent), info),
            // Another namespace's: never in our dumps.
            Event {
                netns: 2,
                ..ev(1, 4, Some(CLIENT), ends, (Close, SynSent), info)
            },
        ],
    );
    assert_eq!(t.len(), 4);
    // The kernel still has socket 1; socket 2's close was never seen.
    t.forget_gone(&[SockId(1)], 1_100 * 1_000_000, 1);
    assert_eq!((t.len(), t.gone), (3, 1));
}

#[test]
fn time_waits_found_at_start_end_in_their_namespace() {
    let mut t = Tracker::new(16);
    t.preload(
        [Known {
            sock: SockId(4),
            netns: 4026531840,
            state: TimeWait,
            local: "127.0.0.1:5000".parse().unwrap(),
            remote: "127.0.0.1:6000".parse().unwrap(),
            owner: Owner::UNKNOWN,
        }],
        0,
    );
    let mut ended = Vec::new();
    t.timewaits
        .reconcile(&[], 2_000_000_000, 4026531840, &mut ended);
    let netns: Vec<u32> = ended.iter().map(|e| e.netns).collect();
    assert_eq!(
        netns,
        [4026531840],
        "not 0, which the JSON writes as unknown"
    );
}
