//! The connections pane's numbers (pure: records in, rows out): every TCP
//! connection open now, its owner, its state and since when, and how its
//! handshake went once it is established. Listeners and TIME_WAIT sockets
//! have panes of their own.
use std::net::SocketAddr;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    event::{Comm, Detail, Owner, SockId, StateInfo, TcpState},
    track::{Handshake, Opener, Record},
};

/// The most connections shown; beyond it new ones are counted, not shown.
const MAX_CONNS: usize = 1 << 18;

/// One connection as the pane shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    pub sock: SockId,
    /// `None` when the owner is unknown.
    pub pid: Option<u32>,
    pub comm: Comm,
    pub state: TcpState,
    /// Time in this state; at least this when `before_start`.
    pub age_ns: u64,
    /// In this state since before socktrace started.
    pub before_start: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Known once we saw it become ESTABLISHED.
    pub handshake: Handshake,
    /// Too long in CLOSE_WAIT, FIN_WAIT2 or SYN_SENT.
    pub stuck: bool,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    pid: Option<u32>,
    comm: Comm,
    state: TcpState,
    since_ns: u64,
    before_start: bool,
    local: SocketAddr,
    remote: SocketAddr,
    opener: Opener,
    handshake: Handshake,
}

#[derive(Default)]
pub struct Conns {
    open: FxHashMap<SockId, Open>,
    /// Connections not shown: the table was full.
    pub untracked: u64,
}

impl Conns {
    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Existing(k, at) if is_connection(k.state) => {
                let opener = Opener::Unknown;
                self.set(k.sock, &k.owner, (opener, k.state), *at, k.local, k.remote);
                if let Some(open) = self.open.get_mut(&k.sock) {
                    open.before_start = true;
                }
            }
            Record::Event(e) => {
                let (
                    Some(sock),
                    Detail::State {
                        local,
                        remote,
                        old,
                        new,
                        info,
                    },
                ) = (e.sock, e.detail)
                else {
                    return;
                };
                if is_connection(new) {
                    if new == TcpState::Established {
                        self.established(sock, old, e.mono_ns, &info);
                    }
                    let opener = Opener::first(old);
                    self.set(sock, &e.owner, (opener, new), e.mono_ns, local, remote);
                } else {
                    self.open.remove(&sock);
                }
            }
            _ => {}
        }
    }

    /// Every connection open now, in no particular order; those of
    /// `stuck` marked so.
    pub fn rows(&self, now_ns: u64, stuck: &FxHashSet<SockId>) -> Vec<Conn> {
        self.open
            .iter()
            .map(|(sock, o)| Conn {
                sock: *sock,
                pid: o.pid,
                comm: o.comm,
                state: o.state,
                age_ns: now_ns.saturating_sub(o.since_ns),
                before_start: o.before_start,
                local: o.local,
                remote: o.remote,
                handshake: o.handshake,
                stuck: stuck.contains(sock),
            })
            .collect()
    }

    /// `sock` became ESTABLISHED from `old` at `at_ns`, as `info` says:
    /// its handshake (before [`Conns::set`] forgets when it entered `old`).
    fn established(&mut self, sock: SockId, old: TcpState, at_ns: u64, info: &StateInfo) {
        if let Some(open) = self.open.get_mut(&sock) {
            let waited_ns = at_ns.saturating_sub(open.since_ns);
            open.handshake = Handshake::at_established(open.opener, old, waited_ns, info.tcp);
        }
    }

    /// `sock` of `owner` is in `state` since `at_ns`; `opener`: who opened
    /// it, if this is the first we see of it.
    fn set(
        &mut self,
        sock: SockId,
        owner: &Owner,
        (opener, state): (Opener, TcpState),
        at_ns: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let known = owner.is_known();
        if let Some(open) = self.open.get_mut(&sock) {
            if known {
                (open.pid, open.comm) = (Some(owner.pid), owner.comm);
            }
            if open.state != state {
                (open.state, open.since_ns, open.before_start) = (state, at_ns, false);
            }
            (open.local, open.remote) = (local, remote);
            return;
        }
        if self.open.len() >= MAX_CONNS {
            self.untracked += 1;
            return;
        }
        self.open.insert(
            sock,
            Open {
                pid: known.then_some(owner.pid),
                comm: owner.comm,
                state,
                since_ns: at_ns,
                before_start: false,
                local,
                remote,
                opener,
                handshake: Handshake::default(),
            },
        );
    }
}

/// States of a connection in use (not a listener, not closed, not waiting).
fn is_connection(state: TcpState) -> bool {
    !matches!(
        state,
        TcpState::Listen | TcpState::Close | TcpState::TimeWait
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Event, Proto},
        track::Known,
    };

    fn state(at: u64, sock: u64, local: &str, old: TcpState, new: TcpState) -> Record {
        let mut e = Event::sample(
            at,
            42,
            "curl",
            Proto::Tcp,
            Detail::transition(local, "10.0.0.2:443", old, new),
        );
        e.sock = Some(SockId(sock));
        Record::Event(e)
    }

    #[test]
    fn follows_a_connection_until_it_ends() {
        let mut c = Conns::default();
        c.observe(&state(
            10,
            1,
            "10.0.0.1:0",
            TcpState::Close,
            TcpState::SynSent,
        ));
        c.observe(&state(
            30,
            1,
            "10.0.0.1:5000",
            TcpState::SynSent,
            TcpState::Established,
        ));
        let rows = c.rows(100, &FxHashSet::default());
        assert_eq!(rows.len(), 1);
        let row = rows[0];
        assert_eq!((row.pid, row.comm.to_string()), (Some(42), "curl".into()));
        assert_eq!((row.state, row.age_ns), (TcpState::Established, 70));
        assert_eq!(
            row.local.to_string(),
            "10.0.0.1:5000",
            "the port, once known"
        );
        c.observe(&state(
            200,
            1,
            "10.0.0.1:5000",
            TcpState::FinWait2,
            TcpState::TimeWait,
        ));
        assert!(c.rows(300, &FxHashSet::default()).is_empty());
    }

    #[test]
    fn connections_from_before_start_keep_their_owner_until_told() {
        let mut c = Conns::default();
        let known = Known {
            sock: SockId(7),
            netns: 1,
            state: TcpState::Established,
            local: "10.0.0.1:22".parse().unwrap(),
            remote: "10.0.0.3:50000".parse().unwrap(),
            owner: Owner::UNKNOWN,
        };
        c.observe(&Record::Existing(known.clone(), 5));
        c.observe(&Record::Existing(
            Known {
                sock: SockId(8),
                state: TcpState::Listen,
                ..known
            },
            5,
        ));
        let rows = c.rows(15, &FxHashSet::default());
        assert_eq!(rows.len(), 1, "listeners are not connections");
        assert_eq!((rows[0].pid, rows[0].age_ns), (None, 10));
        assert!(rows[0].before_start);
        c.observe(&state(
            20,
            7,
            "10.0.0.1:22",
            TcpState::Established,
            TcpState::CloseWait,
        ));
        let row = c.rows(25, &FxHashSet::default())[0];
        assert_eq!(
            (row.pid, row.state, row.age_ns),
            (Some(42), TcpState::CloseWait, 5)
        );
        assert!(!row.before_start);
    }
}
