//! TIME_WAIT sockets after their full socket is gone. The kernel reports
//! no event when a timewait mini-socket ends, so we learn it from sock_diag
//! dumps (what `ss -tan state time-wait` sees): an entry missing from a dump
//! has ended. Where we know when it started, its end by expiry is exact
//! (entry + 60 s); an earlier end (reuse, RST) is known to the poll period.
use std::{collections::BTreeMap, net::SocketAddr};

use rustc_hash::FxHashSet;

use crate::event::{Detail, Event, Owner, Proto, SockId, StateInfo, TcpState, TwEnd};

pub use tracer_common::TW_LEN_NS;

#[derive(Clone, Debug)]
struct Entry {
    local: SocketAddr,
    remote: SocketAddr,
    owner: Owner,
    netns: u32,
    /// When it entered TIME_WAIT; `None` if it already was at start.
    since_ns: Option<u64>,
}

#[derive(Default)]
pub struct TimeWaits {
    /// An ordered map, not a hash table: its memory follows the number of
    /// entries. The kernel allows 2^17 TIME_WAIT sockets by default; a hash
    /// table holding about that many doubles (by tens of MB) whenever its
    /// deleted slots run out while it is over half full, at any time.
    entries: BTreeMap<SockId, Entry>,
}

impl TimeWaits {
    pub fn enter(
        &mut self,
        sock: SockId,
        local: SocketAddr,
        remote: SocketAddr,
        owner: Owner,
        netns: u32,
        since_ns: Option<u64>,
    ) {
        self.entries.insert(
            sock,
            Entry {
                local,
                remote,
                owner,
                netns,
                since_ns,
            },
        );
    }

    /// Sockets in TIME_WAIT now, as far as we know.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A dump of network namespace `netns` that started at `dump_ns`
    /// listed `present`. Every entry of that namespace that was already in
    /// TIME_WAIT then and is missing has ended; one of another namespace
    /// (not in the dump) ends by expiry. Appends their `TIME_WAIT -> CLOSE`
    /// to `out`.
    pub fn reconcile(
        &mut self,
        present: &FxHashSet<SockId>,
        dump_ns: u64,
        netns: u32,
        out: &mut Vec<Event>,
    ) {
        let ended: Vec<SockId> = self
            .entries
            .iter()
            .filter(|(sock, e)| {
                if super::dumped(e.netns, netns) {
                    !present.contains(sock) && e.since_ns.is_none_or(|since| since < dump_ns)
                } else {
                    e.since_ns.is_some_and(|since| since + TW_LEN_NS <= dump_ns)
                }
            })
            .map(|(sock, _)| *sock)
            .collect();
        for sock in ended {
            let entry = self.entries.remove(&sock).expect("listed above");
            let (mono_ns, how) = match entry.since_ns {
                Some(since) if since + TW_LEN_NS <= dump_ns => (since + TW_LEN_NS, TwEnd::Timeout),
                _ => (dump_ns, TwEnd::Observed),
            };
            out.push(end_event(sock, entry, mono_ns, how));
        }
    }

    /// At exit: every entry still waiting ends by expiry, if we know when
    /// it began (computed, not observed).
    pub fn expire_all(&mut self, out: &mut Vec<Event>) {
        let mut known: Vec<(SockId, Entry)> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|(_, e)| e.since_ns.is_some())
            .collect();
        known.sort_by_key(|(sock, e)| (e.since_ns, *sock));
        for (sock, entry) in known {
            let at = entry.since_ns.unwrap_or_default() + TW_LEN_NS;
            out.push(end_event(sock, entry, at, TwEnd::Timeout));
        }
    }
}

fn end_event(sock: SockId, e: Entry, mono_ns: u64, how: TwEnd) -> Event {
    Event {
        mono_ns,
        owner: e.owner,
        proto: Proto::Tcp,
        sock: Some(sock),
        netns: e.netns,
        detail: Detail::State {
            local: e.local,
            remote: e.remote,
            old: TcpState::TimeWait,
            new: TcpState::Close,
            info: StateInfo {
                tw_end: Some(how),
                ..StateInfo::default()
            },
        },
    }
}
