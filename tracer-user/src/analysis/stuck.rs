//! Stuck sockets (pure): connections that stay too long in a state they
//! should pass through — CLOSE_WAIT (the peer closed and this process never
//! did: a descriptor leak), FIN_WAIT2 (we shut down and the peer never
//! closed) or SYN_SENT (no answer yet) — with owner and age. Fed the same
//! records live and from a recording.
use std::net::SocketAddr;

use rustc_hash::FxHashMap;

use crate::{
    event::{Detail, Owner, SockId, TcpState},
    track::Record,
};

/// Whether a connection in `state` may be stuck there: one it should pass
/// through.
pub fn may_stick(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::CloseWait | TcpState::FinWait2 | TcpState::SynSent
    )
}

/// A connection in a watched state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub state: TcpState,
    /// When it entered `state`; for one found so at start, the start.
    pub since_ns: u64,
    /// It was in `state` when we started: its age is at least what we say.
    pub predates: bool,
    pub owner: Owner,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// One stuck connection, as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckSocket<'a> {
    pub sock: SockId,
    pub waiting: &'a Waiting,
    pub age_ns: u64,
}

/// The stuck connections of one process and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByProcess {
    pub owner: Owner,
    pub state: TcpState,
    pub count: u64,
    pub oldest_ns: u64,
}

#[derive(Debug)]
pub struct Stuck {
    threshold_ns: u64,
    waiting: FxHashMap<SockId, Waiting>,
}

impl Stuck {
    /// Connections count as stuck after `threshold_ns` in a watched state.
    pub fn new(threshold_ns: u64) -> Stuck {
        Stuck {
            threshold_ns,
            waiting: FxHashMap::default(),
        }
    }

    pub fn threshold_ns(&self) -> u64 {
        self.threshold_ns
    }

    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Existing(k, at) if may_stick(k.state) => {
                self.waiting.insert(
                    k.sock,
                    Waiting {
                        state: k.state,
                        since_ns: *at,
                        predates: true,
                        owner: k.owner.clone(),
                        netns: k.netns,
                        local: k.local,
                        remote: k.remote,
                    },
                );
            }
            Record::Event(e) => {
                let (
                    Some(sock),
                    Detail::State {
                        local, remote, new, ..
                    },
                ) = (e.sock, &e.detail)
                else {
                    return;
                };
                if may_stick(*new) {
                    let waiting = Waiting {
                        state: *new,
                        since_ns: e.mono_ns,
                        predates: false,
                        owner: e.owner.clone(),
                        netns: e.netns,
                        local: *local,
                        remote: *remote,
                    };
                    self.waiting.insert(sock, waiting);
                } else {
                    self.waiting.remove(&sock);
                }
            }
            Record::Close(c) => {
                self.waiting.remove(&c.sock);
            }
            Record::Existing(..) | Record::Loss(..) | Record::Queues(..) => {}
        }
    }

    /// The connections stuck at `now_ns`, the oldest first.
    pub fn stuck(&self, now_ns: u64) -> Vec<StuckSocket<'_>> {
        let mut stuck: Vec<StuckSocket<'_>> = self
            .waiting
            .iter()
            .map(|(&sock, waiting)| StuckSocket {
                sock,
                waiting,
                age_ns: now_ns.saturating_sub(waiting.since_ns),
            })
            .filter(|s| s.age_ns >= self.threshold_ns)
            .collect();
        stuck.sort_by(|a, b| b.age_ns.cmp(&a.age_ns).then(a.sock.cmp(&b.sock)));
        stuck
    }

    /// The stuck connections at `now_ns` by process and state, the
    /// processes with most first.
    pub fn by_process(&self, now_ns: u64) -> Vec<ByProcess> {
        let mut rows: FxHashMap<(u32, TcpState), ByProcess> = FxHashMap::default();
        for s in self.stuck(now_ns) {
            let owner = &s.waiting.owner;
            let row = rows
                .entry((owner.pid, s.waiting.state))
                .or_insert_with(|| ByProcess {
                    owner: owner.clone(),
                    state: s.waiting.state,
                    count: 0,
                    oldest_ns: 0,
                });
            row.count += 1;
            row.oldest_ns = row.oldest_ns.max(s.age_ns);
        }
        let mut rows: Vec<ByProcess> = rows.into_values().collect();
        rows.sort_by(|a, b| {
            (b.count, a.owner.pid, a.state.raw()).cmp(&(a.count, b.owner.pid, b.state.raw()))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Event, Proto},
        track::{Close, Known},
    };

    const S: u64 = 1_000_000_000;

    fn transition(at: u64, sock: u64, pid: u32, old: TcpState, new: TcpState) -> Record {
        let mut e = Event::sample(
            at,
            pid,
            "server",
            Proto::Tcp,
            Detail::transition("127.0.0.1:8080", "127.0.0.1:40000", old, new),
        );
        e.sock = Some(SockId(sock));
        Record::Event(e)
    }

    #[test]
    fn a_close_wait_is_stuck_after_the_threshold_until_it_closes() {
        let mut s = Stuck::new(10 * S);
        s.observe(&transition(
            S,
            1,
            42,
            TcpState::Established,
            TcpState::CloseWait,
        ));
        assert!(s.stuck(10 * S).is_empty(), "9 s: not yet");
        let stuck = s.stuck(11 * S);
        assert_eq!(stuck.len(), 1);
        assert_eq!(
            (stuck[0].sock, stuck[0].age_ns, stuck[0].waiting.owner.pid),
            (SockId(1), 10 * S, 42)
        );
        s.observe(&transition(
            12 * S,
            1,
            42,
            TcpState::CloseWait,
            TcpState::LastAck,
        ));
        assert!(s.stuck(20 * S).is_empty(), "it closed");
    }

    #[test]
    fn sockets_found_at_start_count_from_the_start() {
        let mut s = Stuck::new(S);
        let owner = Event::sample(
            0,
            7,
            "leaky",
            Proto::Tcp,
            Detail::transition(
                "127.0.0.1:1",
                "127.0.0.1:2",
                TcpState::Close,
                TcpState::Close,
            ),
        )
        .owner;
        let known = |sock, state| Known {
            sock: SockId(sock),
            netns: 1,
            state,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
            owner: owner.clone(),
        };
        s.observe(&Record::Existing(known(1, TcpState::CloseWait), 5 * S));
        s.observe(&Record::Existing(known(2, TcpState::CloseWait), 5 * S));
        s.observe(&Record::Existing(known(3, TcpState::Established), 5 * S));
        s.observe(&Record::Existing(known(4, TcpState::FinWait2), 5 * S));
        let stuck = s.stuck(7 * S);
        assert_eq!(stuck.len(), 3);
        assert!(
            stuck
                .iter()
                .all(|s| s.waiting.predates && s.age_ns == 2 * S)
        );
        let mut close = Close::sample(8 * S, owner.clone(), "127.0.0.1:8080", "127.0.0.1:40000");
        close.sock = SockId(4);
        s.observe(&Record::Close(close));
        let rows = s.by_process(9 * S);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].owner.pid,
                rows[0].state,
                rows[0].count,
                rows[0].oldest_ns
            ),
            (7, TcpState::CloseWait, 2, 4 * S)
        );
    }
}
