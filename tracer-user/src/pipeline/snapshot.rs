//! The start-up snapshot, taken after `attached` is said: sock_diag lists
//! what exists while the ring fills with what happens meanwhile. So the
//! sockets it found wait here until those records are in: a socket whose
//! first transition is among them was born after we attached (it is not
//! "existing"); one with a later transition takes its owner from the
//! snapshot before that transition is followed; the rest are learnt when
//! the pipeline settles.
use rustc_hash::FxHashMap;

use crate::{
    event::{Detail, Event, SockId, TcpState},
    track::Known,
};

/// The snapshot's sockets not yet learnt, found at `now`.
pub(super) struct Pending {
    by_sock: FxHashMap<SockId, Known>,
    pub now: u64,
    /// Print them (`--snapshot`).
    pub print: bool,
}

impl Pending {
    pub fn new(now: u64, print: bool) -> Pending {
        Pending {
            by_sock: FxHashMap::default(),
            now,
            print,
        }
    }

    pub fn add(&mut self, known: Known) {
        self.by_sock.insert(known.sock, known);
    }

    /// What `event` says of a socket still pending: the socket to learn
    /// before `event` is followed, if it existed before us, in the state
    /// it had until then (the snapshot may have seen a later one).
    pub fn meet(&mut self, event: &Event) -> Option<Known> {
        let (Some(sock), Detail::State { old, new, .. }) = (event.sock, &event.detail) else {
            return None;
        };
        let known = self.by_sock.remove(&sock)?;
        (!born(*old, *new)).then_some(Known {
            state: *old,
            ..known
        })
    }

    /// The rest, in no order.
    pub fn into_rest(self) -> impl Iterator<Item = Known> {
        self.by_sock.into_values()
    }
}

/// A socket's first transition: a new socket connecting or listening, or a
/// listener's child (cloned in LISTEN).
fn born(old: TcpState, new: TcpState) -> bool {
    old == TcpState::Close || old == TcpState::Listen && new != TcpState::Close
}
