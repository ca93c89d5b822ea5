//! The TIME_WAIT pane's numbers (pure: records in, rows out): how many
//! sockets wait now per local port (servers that closed first) and per
//! destination (clients), each with its population second by second over
//! the last five minutes. Entries come from close records that ended in
//! TIME_WAIT, ends from `TIME_WAIT -> CLOSE` events. A socket already
//! waiting at start is taken for a server's when its local port was
//! listening then, or is the lower of its two ports (a service port, the
//! peer's an ephemeral one).
use std::{collections::VecDeque, net::SocketAddr};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    event::{Detail, SockId, TcpState},
    track::{Opener, Record},
};

/// Seconds of history kept per row.
pub const HISTORY_SECS: usize = 300;
/// The most rows followed; sockets beyond them are counted in
/// [`Place::Other`].
const MAX_PLACES: usize = 4096;

/// Where TIME_WAIT sockets are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// A server's local port (it closed first).
    Port(u16),
    /// A client's destination.
    To(SocketAddr),
    /// Everything beyond the first `MAX_PLACES` rows.
    Other,
}

/// One row: TIME_WAIT sockets now, and the most there were in each of
/// the last seconds, oldest first (the last one is the current second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub place: Place,
    pub now: u32,
    pub history: Vec<u32>,
}

impl Waiting {
    /// The most at once in the history.
    pub fn peak(&self) -> u32 {
        self.history
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.now)
    }
}

/// A gauge sampled per second: the highest value in each second, the
/// value now carried into seconds without changes.
#[derive(Clone, Debug)]
struct Series {
    now: u32,
    /// The second of the last bucket.
    last_sec: u64,
    buckets: VecDeque<u32>,
}

impl Series {
    fn new(sec: u64) -> Series {
        Series {
            now: 0,
            last_sec: sec,
            buckets: VecDeque::from([0]),
        }
    }

    /// Carries the value now into every second up to `sec`.
    fn advance(&mut self, sec: u64) {
        if sec <= self.last_sec {
            return;
        }
        let gap = (sec - self.last_sec).min(HISTORY_SECS as u64);
        for _ in 0..gap {
            self.buckets.push_back(self.now);
        }
        while self.buckets.len() > HISTORY_SECS {
            self.buckets.pop_front();
        }
        self.last_sec = sec;
    }

    /// One more (`up`) or one less at second `sec`.
    fn step(&mut self, sec: u64, up: bool) {
        self.advance(sec);
        self.now = if up {
            self.now.saturating_add(1)
        } else {
            self.now.saturating_sub(1)
        };
        if let Some(last) = self.buckets.back_mut() {
            *last = (*last).max(self.now);
        }
    }

    fn idle(&self) -> bool {
        self.now == 0 && self.buckets.iter().all(|&n| n == 0)
    }
}

#[derive(Default)]
pub struct Population {
    places: FxHashMap<Place, Series>,
    /// Where each waiting socket is counted.
    socks: FxHashMap<SockId, Place>,
    /// Local ports found listening at start.
    listening: FxHashSet<u16>,
}

impl Population {
    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Existing(k, at) => match k.state {
                TcpState::Listen => {
                    self.listening.insert(k.local.port());
                }
                TcpState::TimeWait => {
                    let port = k.local.port();
                    let place = if self.listening.contains(&port) || port < k.remote.port() {
                        Place::Port(port)
                    } else {
                        Place::To(k.remote)
                    };
                    self.enter(k.sock, place, *at);
                }
                _ => {}
            },
            Record::Close(c) if c.time_wait => {
                let place = match c.opener {
                    Opener::Passive => Place::Port(c.local.port()),
                    _ => Place::To(c.remote),
                };
                self.enter(c.sock, place, c.mono_ns);
            }
            Record::Event(e) => {
                if let (
                    Some(sock),
                    Detail::State {
                        old: TcpState::TimeWait,
                        new: TcpState::Close,
                        ..
                    },
                ) = (e.sock, e.detail)
                {
                    self.leave(sock, e.mono_ns);
                }
            }
            _ => {}
        }
    }

    /// Brings every row's history up to `now_ns`; forgets rows that have
    /// had nothing for the whole history.
    pub fn tick(&mut self, now_ns: u64) {
        let sec = second(now_ns);
        for series in self.places.values_mut() {
            series.advance(sec);
        }
        self.places.retain(|_, series| !series.idle());
    }

    /// TIME_WAIT sockets now, everywhere.
    pub fn total(&self) -> u64 {
        self.places.values().map(|s| u64::from(s.now)).sum()
    }

    /// Every row, most waiting first (then the highest peak).
    pub fn rows(&self) -> Vec<Waiting> {
        let mut rows: Vec<Waiting> = self
            .places
            .iter()
            .map(|(place, series)| Waiting {
                place: *place,
                now: series.now,
                history: series.buckets.iter().copied().collect(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.now
                .cmp(&a.now)
                .then(b.peak().cmp(&a.peak()))
                .then(a.place.cmp(&b.place))
        });
        rows
    }

    fn enter(&mut self, sock: SockId, place: Place, at_ns: u64) {
        let place = if self.places.len() >= MAX_PLACES && !self.places.contains_key(&place) {
            Place::Other
        } else {
            place
        };
        // A socket id is never reused while the system runs: no earlier
        // entry of this socket to undo.
        self.socks.insert(sock, place);
        self.places
            .entry(place)
            .or_insert_with(|| Series::new(second(at_ns)))
            .step(second(at_ns), true);
    }

    fn leave(&mut self, sock: SockId, at_ns: u64) {
        if let Some(place) = self.socks.remove(&sock)
            && let Some(series) = self.places.get_mut(&place)
        {
            series.step(second(at_ns), false);
        }
    }
}

fn second(ns: u64) -> u64 {
    ns / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Event, Owner, Proto},
        track::{Close, Known},
    };

    const S: u64 = 1_000_000_000;

    fn close(at: u64, sock: u64, opener: Opener, local: &str, remote: &str) -> Record {
        let mut c = Close::sample(at, Owner::UNKNOWN, local, remote);
        c.sock = SockId(sock);
        c.opener = opener;
        c.time_wait = true;
        Record::Close(c)
    }

    fn end(at: u64, sock: u64) -> Record {
        let mut e = Event::sample(
            at,
            1,
            "x",
            Proto::Tcp,
            Detail::transition(
                "127.0.0.1:1",
                "127.0.0.1:2",
                TcpState::TimeWait,
                TcpState::Close,
            ),
        );
        e.sock = Some(SockId(sock));
        Record::Event(e)
    }

    #[test]
    fn servers_by_port_clients_by_destination_with_history() {
        let mut p = Population::default();
        let server = |at, sock| close(at, sock, Opener::Passive, "10.0.0.1:80", "10.0.0.9:5000");
        let client = |at, sock| close(at, sock, Opener::Active, "10.0.0.1:5000", "10.0.0.2:443");
        for r in [
            server(100 * S, 1),
            server(100 * S + 1, 2),
            client(101 * S, 3),
            end(102 * S, 1),
            end(103 * S, 99), // never seen entering: ignored
        ] {
            p.observe(&r);
        }
        p.tick(104 * S);
        assert_eq!(p.total(), 2);
        let rows = p.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].place, Place::Port(80));
        assert_eq!(rows[0].now, 1);
        // Seconds 100..=104: two until one ends during 102, then one.
        assert_eq!(rows[0].history, [2, 2, 2, 1, 1]);
        assert_eq!(rows[0].peak(), 2);
        assert_eq!(rows[1].place, Place::To("10.0.0.2:443".parse().unwrap()));
        assert_eq!(rows[1].history, [1, 1, 1, 1]);
    }

    #[test]
    fn history_is_bounded_and_idle_rows_go() {
        let mut p = Population::default();
        p.observe(&close(0, 1, Opener::Active, "10.0.0.1:1", "10.0.0.2:2"));
        p.observe(&end(60 * S, 1));
        p.tick(100 * S);
        assert_eq!(p.rows()[0].history.len(), 101);
        p.tick(10_000 * S);
        assert!(p.rows().is_empty(), "five idle minutes: forgotten");
        p.observe(&close(
            10_001 * S,
            2,
            Opener::Active,
            "10.0.0.1:1",
            "10.0.0.2:2",
        ));
        p.tick(20_000 * S);
        assert_eq!(p.rows()[0].history.len(), HISTORY_SECS);
        assert_eq!(p.rows()[0].history[0], 1);
    }

    #[test]
    fn sockets_waiting_at_start_are_placed_by_their_ports() {
        let mut p = Population::default();
        let known = |sock, state, local: &str, remote: &str| {
            Record::Existing(
                Known {
                    sock: SockId(sock),
                    netns: 1,
                    state,
                    local: local.parse().unwrap(),
                    remote: remote.parse().unwrap(),
                    owner: Owner::UNKNOWN,
                },
                S,
            )
        };
        for r in [
            known(1, TcpState::Listen, "0.0.0.0:8080", "0.0.0.0:0"),
            known(2, TcpState::TimeWait, "10.0.0.1:8080", "10.0.0.7:40000"),
            known(3, TcpState::TimeWait, "10.0.0.1:40001", "10.0.0.8:5432"),
            // Its listener is gone: the lower port is the service.
            known(4, TcpState::TimeWait, "10.0.0.1:8443", "10.0.0.7:50000"),
            // Listening, though the higher port.
            known(5, TcpState::Listen, "0.0.0.0:40100", "0.0.0.0:0"),
            known(6, TcpState::TimeWait, "10.0.0.1:40100", "10.0.0.9:40000"),
        ] {
            p.observe(&r);
        }
        let places: Vec<Place> = p.rows().iter().map(|r| r.place).collect();
        assert_eq!(
            places,
            [
                Place::Port(8080),
                Place::Port(8443),
                Place::Port(40100),
                Place::To("10.0.0.8:5432".parse().unwrap())
            ]
        );
    }
}
