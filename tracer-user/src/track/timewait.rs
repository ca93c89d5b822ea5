//! TIME_WAIT sockets after their full socket is gone. The kernel reports
//! no event when a timewait mini-socket ends, so we learn it from sock_diag
//! dumps (what `ss -tan state time-wait` sees): an entry missing from a dump
//! has ended. Where we know when it started, its end by expiry is exact
//! (entry + 60 s); an earlier end (reuse, RST) is known to the poll period.
//!
//! A busy host holds 2^17 of them (the kernel's default limit), so each is
//! kept in 32 bytes (IPv4; 56 for IPv6): its cookie, when it began, its
//! ports and addresses, and an index into a table of the owners they share.
//! The queues keep entry order, which is also the order of their expiry.
use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    num::NonZeroU64,
};

use rustc_hash::FxHashMap;

use crate::event::{Detail, Event, Owner, Proto, SockId, StateInfo, TcpState, TwEnd};

pub use tracer_common::TW_LEN_NS;

/// One TIME_WAIT socket whose addresses are `N` bytes long.
#[derive(Clone, Copy)]
struct Entry<const N: usize> {
    sock: u64,
    /// When it entered TIME_WAIT; `None` if it already was at start.
    since_ns: Option<NonZeroU64>,
    /// Its owner and network namespace, in [`Owners`].
    owner: u32,
    /// Local, remote.
    ports: [u16; 2],
    /// Local, remote.
    addrs: [[u8; N]; 2],
}

const _: () = assert!(size_of::<Entry<4>>() == 32 && size_of::<Entry<16>>() == 56);

impl<const N: usize> Entry<N> {
    fn since(&self) -> Option<u64> {
        self.since_ns.map(NonZeroU64::get)
    }

    /// Whether it has ended, seen from a dump of network namespace `netns`
    /// (`entry_netns` is its own) that began at `dump_ns` and listed
    /// `present` (sorted): missing from a dump of its namespace that began
    /// after it entered; of another namespace (not in the dump), expired.
    fn ended(&self, entry_netns: u32, present: &[SockId], dump_ns: u64, netns: u32) -> bool {
        if super::dumped(entry_netns, netns) {
            present.binary_search(&SockId(self.sock)).is_err()
                && self.since().is_none_or(|since| since < dump_ns)
        } else {
            self.since()
                .is_some_and(|since| since + TW_LEN_NS <= dump_ns)
        }
    }
}

/// Addresses of `N` bytes, to and from [`IpAddr`].
trait Family<const N: usize> {
    fn octets(ip: IpAddr) -> [u8; N];
    fn ip(octets: [u8; N]) -> IpAddr;
}

struct V4;
struct V6;

impl Family<4> for V4 {
    fn octets(ip: IpAddr) -> [u8; 4] {
        match ip {
            IpAddr::V4(ip) => ip.octets(),
            IpAddr::V6(_) => [0; 4], // not queued here (see `enter`)
        }
    }
    fn ip(octets: [u8; 4]) -> IpAddr {
        Ipv4Addr::from(octets).into()
    }
}

impl Family<16> for V6 {
    fn octets(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            IpAddr::V6(ip) => ip.octets(),
        }
    }
    fn ip(octets: [u8; 16]) -> IpAddr {
        Ipv6Addr::from(octets).into()
    }
}

/// The owners (with network namespace) that entries share, each counted
/// by the entries that name it and freed with the last.
#[derive(Default)]
struct Owners {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: FxHashMap<(Owner, u32), u32>,
}

struct Slot {
    owner: Owner,
    netns: u32,
    refs: u32,
}

impl Owners {
    fn intern(&mut self, owner: Owner, netns: u32) -> u32 {
        let key = (owner, netns);
        if let Some(&id) = self.index.get(&key) {
            self.slots[id as usize].refs += 1;
            return id;
        }
        let slot = Slot {
            owner: key.0.clone(),
            netns,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    fn get(&self, id: u32) -> &Slot {
        &self.slots[id as usize]
    }

    /// One entry naming `id` has gone.
    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.refs -= 1;
        if slot.refs == 0 {
            let owner = std::mem::replace(&mut slot.owner, Owner::UNKNOWN);
            self.index.remove(&(owner, slot.netns));
            self.free.push(id);
        }
    }
}

#[derive(Default)]
pub struct TimeWaits {
    v4: VecDeque<Entry<4>>,
    v6: VecDeque<Entry<16>>,
    owners: Owners,
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
        let owner = self.owners.intern(owner, netns);
        let since_ns = since_ns.map(|ns| NonZeroU64::new(ns.max(1)).expect("at least 1"));
        let ports = [local.port(), remote.port()];
        if local.is_ipv4() && remote.is_ipv4() {
            self.v4
                .push_back(entry::<V4, 4>(sock, since_ns, owner, ports, local, remote));
        } else {
            self.v6
                .push_back(entry::<V6, 16>(sock, since_ns, owner, ports, local, remote));
        }
    }

    /// Sockets in TIME_WAIT now, as far as we know.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// A dump of network namespace `netns` that started at `dump_ns`
    /// listed `present` (sorted). Every entry of that namespace that was
    /// already in TIME_WAIT then and is missing has ended; one of another
    /// namespace (not in the dump) ends by expiry. Hands their
    /// `TIME_WAIT -> CLOSE`, in the order they began, to `out` one by one
    /// (a poll may end 100,000 at once: they need not all be held).
    pub fn reconcile(
        &mut self,
        present: &[SockId],
        dump_ns: u64,
        netns: u32,
        out: &mut impl Extend<Event>,
    ) {
        let owners = &mut self.owners;
        reconcile::<V4, 4>(&mut self.v4, owners, present, dump_ns, netns, out);
        reconcile::<V6, 16>(&mut self.v6, owners, present, dump_ns, netns, out);
    }

    /// At exit: every entry still waiting ends by expiry, if we know when
    /// it began (computed, not observed).
    pub fn expire_all(&mut self, out: &mut Vec<Event>) {
        let start = out.len();
        let owners = &mut self.owners;
        for e in std::mem::take(&mut self.v4) {
            expire::<V4, 4>(e, owners, out);
        }
        for e in std::mem::take(&mut self.v6) {
            expire::<V6, 16>(e, owners, out);
        }
        out[start..].sort_by_key(|e| (e.mono_ns, e.sock));
    }
}

fn entry<F: Family<N>, const N: usize>(
    sock: SockId,
    since_ns: Option<NonZeroU64>,
    owner: u32,
    ports: [u16; 2],
    local: SocketAddr,
    remote: SocketAddr,
) -> Entry<N> {
    Entry {
        sock: sock.0,
        since_ns,
        owner,
        ports,
        addrs: [F::octets(local.ip()), F::octets(remote.ip())],
    }
}

/// [`TimeWaits::reconcile`] of one queue.
fn reconcile<F: Family<N>, const N: usize>(
    queue: &mut VecDeque<Entry<N>>,
    owners: &mut Owners,
    present: &[SockId],
    dump_ns: u64,
    netns: u32,
    out: &mut impl Extend<Event>,
) {
    queue.retain(|e| {
        if !e.ended(owners.get(e.owner).netns, present, dump_ns, netns) {
            return true;
        }
        let (mono_ns, how) = match e.since() {
            Some(since) if since + TW_LEN_NS <= dump_ns => (since + TW_LEN_NS, TwEnd::Timeout),
            _ => (dump_ns, TwEnd::Observed),
        };
        out.extend([end_event::<F, N>(e, owners, mono_ns, how)]);
        false
    });
}

/// `e` at exit: its end by expiry if we know when it began.
fn expire<F: Family<N>, const N: usize>(e: Entry<N>, owners: &mut Owners, out: &mut Vec<Event>) {
    match e.since() {
        Some(since) => out.push(end_event::<F, N>(
            &e,
            owners,
            since + TW_LEN_NS,
            TwEnd::Timeout,
        )),
        None => owners.release(e.owner),
    }
}

/// `e`'s `TIME_WAIT -> CLOSE` at `mono_ns`; its owner is released.
fn end_event<F: Family<N>, const N: usize>(
    e: &Entry<N>,
    owners: &mut Owners,
    mono_ns: u64,
    how: TwEnd,
) -> Event {
    let slot = owners.get(e.owner);
    let event = Event {
        mono_ns,
        owner: slot.owner.clone(),
        proto: Proto::Tcp,
        sock: Some(SockId(e.sock)),
        netns: slot.netns,
        detail: Detail::State {
            local: SocketAddr::new(F::ip(e.addrs[0]), e.ports[0]),
            remote: SocketAddr::new(F::ip(e.addrs[1]), e.ports[1]),
            old: TcpState::TimeWait,
            new: TcpState::Close,
            info: StateInfo {
                tw_end: Some(how),
                ..StateInfo::default()
            },
        },
    };
    owners.release(e.owner);
    event
}
