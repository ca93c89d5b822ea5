use super::*;
use crate::{
    event::{Comm, OwnerSource},
    track::Known,
};

const MS: u64 = 1_000_000;

fn event(at: u64, pid: u32, sock: u64, proto: Proto, detail: Detail) -> Record {
    let mut e = Event::sample(at, pid, "srv", proto, detail);
    e.sock = Some(SockId(sock));
    e.owner.comm = Comm::new(b"srv\0\0\0\0\0\0\0\0\0\0\0\0\0");
    e.owner.source = OwnerSource::Syscall;
    Record::Event(e)
}

fn state(at: u64, sock: u64, old: TcpState, new: TcpState) -> Record {
    event(
        at,
        7,
        sock,
        Proto::Tcp,
        Detail::transition("0.0.0.0:8080", "0.0.0.0:0", old, new),
    )
}

fn listen(at: u64, sock: u64) -> Record {
    event(
        at,
        7,
        sock,
        Proto::Tcp,
        Detail::Listen {
            addr: "0.0.0.0:8080".parse().unwrap(),
            backlog: 128,
            errno: Errno(0),
        },
    )
}

#[test]
fn a_listener_cycling_is_caught_every_time() {
    let mut l = Listeners::new(1000 * MS);
    let mut notes = Vec::new();
    for i in 0..100u64 {
        let t = i * 10 * MS;
        for r in [
            state(t, i, TcpState::Close, TcpState::Listen),
            listen(t + 1000, i),
            // 50 µs after it began listening.
            state(t + 50_000, i, TcpState::Listen, TcpState::Close),
        ] {
            notes.extend(l.observe(&r));
        }
    }
    assert_eq!(notes.len(), 200);
    assert_eq!(notes[0].what, What::Opened { backlog: Some(128) });
    assert_eq!(
        notes[1].what,
        What::Closed {
            lifetime_ns: Some(50_000),
            short: true
        }
    );
    let rows: Vec<_> = l.rows().collect();
    assert_eq!(rows.len(), 1);
    let (key, row) = rows[0];
    assert_eq!(
        (key.proto, key.port, key.kind),
        (Proto::Tcp, 8080, Kind::Listen)
    );
    assert_eq!(key.comm, "srv");
    assert_eq!((row.cycles, row.short, row.open), (100, 100, 0));
    assert_eq!(row.lifetimes(), Some((50_000, 50_000, 50_000)));
    assert_eq!(l.open_now(), 0);
}

#[test]
fn udp_binds_release_and_failed_binds() {
    let mut l = Listeners::new(1000 * MS);
    let addr: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let bind = |at, sock, errno| {
        event(
            at,
            9,
            sock,
            Proto::Udp,
            Detail::Bind {
                addr,
                requested_port: 5353,
                errno: Errno(errno),
            },
        )
    };
    let opened = l.observe(&bind(0, 1, 0)).unwrap();
    assert_eq!(
        (opened.kind, opened.what),
        (Kind::Bound, What::Opened { backlog: None })
    );
    let failed = l.observe(&bind(MS, 2, 98)).unwrap();
    assert_eq!(failed.what, What::BindFailed { errno: Errno(98) });
    let closed = l
        .observe(&event(
            2000 * MS,
            9,
            1,
            Proto::Udp,
            Detail::Release { addr },
        ))
        .unwrap();
    assert_eq!(
        closed.what,
        What::Closed {
            lifetime_ns: Some(2000 * MS),
            short: false
        }
    );
    let (_, row) = l.rows().next().unwrap();
    assert_eq!((row.cycles, row.short, row.failed_binds), (1, 0, 1));
    assert_eq!(row.last_errno, Some(Errno(98)));
}

#[test]
fn listen_without_bind_takes_the_port_from_the_call() {
    let mut l = Listeners::new(1000 * MS);
    let mut at_zero = state(0, 9, TcpState::Close, TcpState::Listen);
    if let Record::Event(e) = &mut at_zero
        && let Detail::State { local, .. } = &mut e.detail
    {
        local.set_port(0); // what the tracepoint shows before autobind
    }
    assert_eq!(l.observe(&at_zero), None);
    let opened = l.observe(&listen(10, 9)).unwrap();
    assert_eq!(opened.addr.port(), 8080);
    let closed = l
        .observe(&state(MS, 9, TcpState::Listen, TcpState::Close))
        .unwrap();
    assert_eq!(closed.addr.port(), 8080);
    let rows: Vec<_> = l.rows().map(|(k, r)| (k.port, r.cycles, r.open)).collect();
    assert_eq!(rows, [(8080, 1, 0)]);
}

#[test]
fn a_tcp_bind_then_listen_is_one_listener() {
    let mut l = Listeners::new(1000 * MS);
    let bind = event(
        0,
        7,
        5,
        Proto::Tcp,
        Detail::Bind {
            addr: "0.0.0.0:8080".parse().unwrap(),
            requested_port: 8080,
            errno: Errno(0),
        },
    );
    assert_eq!(l.observe(&bind), None); // announced at listen
    assert_eq!(
        l.observe(&state(10, 5, TcpState::Close, TcpState::Listen)),
        None
    );
    assert!(l.observe(&listen(20, 5)).is_some());
    let rows: Vec<_> = l.rows().map(|(k, r)| (k.kind, r.open)).collect();
    assert_eq!(rows, [(Kind::Listen, 1)]);
    let open: Vec<_> = l.open().map(|(k, since)| (k.kind, since)).collect();
    assert_eq!(
        open,
        [(Kind::Listen, Some(10))],
        "listening since CLOSE -> LISTEN"
    );
    let closed = l.observe(&state(5 * MS, 5, TcpState::Listen, TcpState::Close));
    assert_eq!(
        closed.unwrap().what,
        What::Closed {
            lifetime_ns: Some(5 * MS - 10),
            short: true
        }
    );
}

#[test]
fn a_listeners_drops_are_news_from_its_first_sample_on() {
    let mut l = Listeners::new(1000 * MS);
    // Seen to start: all it drops is news. Found at start: only what it
    // drops after its first sample.
    l.observe(&state(0, 1, TcpState::Close, TcpState::Listen));
    l.observe(&listen(1, 1));
    let old = Known {
        sock: SockId(2),
        netns: 1,
        state: TcpState::Listen,
        local: "0.0.0.0:9090".parse().unwrap(),
        remote: "0.0.0.0:0".parse().unwrap(),
        owner: Owner::UNKNOWN,
    };
    l.observe(&Record::Existing(old, 0));
    let sample = |sock, depth, drops| QueueSample {
        sock: SockId(sock),
        depth,
        backlog: 1,
        drops,
    };
    let notes = l.queues(
        10 * MS,
        &[sample(1, 2, 3), sample(2, 0, 40), sample(9, 0, 5)],
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (notes[0].sock, notes[0].owner.pid, notes[0].what),
        (
            SockId(1),
            7,
            What::Dropped {
                dropped: 3,
                depth: 2,
                backlog: 1
            }
        )
    );
    assert!(
        l.queues(20 * MS, &[sample(1, 2, 3), sample(2, 0, 40)])
            .is_empty()
    );
    let notes = l.queues(30 * MS, &[sample(1, 1, 3), sample(2, 1, 45)]);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].sock, SockId(2));
    let rows: Vec<_> = l.rows().map(|(k, r)| (k.port, r.drops, r.queue)).collect();
    assert_eq!(rows, [(8080, 3, Some((1, 1))), (9090, 5, Some((1, 1)))]);
}
