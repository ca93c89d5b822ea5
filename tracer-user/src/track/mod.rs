//! Following each TCP socket through its life (pure: events in, records
//! out). The tracker
//! - fills in owners the kernel did not know (sockets found by the start-up
//!   snapshot) and endpoints that were not set yet;
//! - reports TIME_WAIT as it really happens: the full socket shows
//!   `FIN_WAIT2 -> CLOSE` when its timewait mini-socket takes over, which
//!   the tracker turns into `FIN_WAIT2 -> TIME_WAIT` (and `timewait` later
//!   supplies `TIME_WAIT -> CLOSE`);
//! - emits one [`Close`] record when a connection ends, with the kernel's
//!   reason for a RST it sent ([`Resets`]).
mod close;
mod resets;
mod timewait;

use std::{net::SocketAddr, sync::Arc};

use rustc_hash::FxHashMap;

pub use close::{Close, Failure, Opener, Reason, Side};
pub use resets::{RESET_WAIT_NS, Resets};
pub use timewait::{TW_LEN_NS, TimeWaits};

use crate::event::{
    Detail, Event, Owner, OwnerSource, QueueSample, SockId, StateInfo, TcpState, TcpStats,
};

/// What the pipeline renders: events as the kernel saw them (corrected as
/// above) and the records the tracker derives.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A socket that existed at start (`--snapshot`).
    Existing(Known, u64),
    /// The kernel's loss counters changed (totals so far), at this time.
    Loss(crate::source::KernelCounters, u64),
    /// Every listener's accept queue, sampled at this time: what `record`
    /// writes for `analyze` (live views get theirs from the loop, see
    /// `Render::queues`).
    Queues(Vec<QueueSample>, u64),
    Event(Event),
    Close(Close),
}

impl Record {
    /// When it happened (`CLOCK_MONOTONIC` ns live, wall-clock offline).
    pub fn at(&self) -> u64 {
        match self {
            Record::Existing(_, at) | Record::Loss(_, at) | Record::Queues(_, at) => *at,
            Record::Event(e) => e.mono_ns,
            Record::Close(c) => c.mono_ns,
        }
    }
}

/// A socket known before its events arrive (from the start-up snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub sock: SockId,
    /// The network namespace the dump listed it in (0: unknown).
    pub netns: u32,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Owner,
}

/// One socket we follow.
#[derive(Clone, Debug)]
struct Conn {
    first_ns: u64,
    state: TcpState,
    state_since_ns: u64,
    /// Nanoseconds spent in each state left so far, in order of first visit.
    spent: Vec<(TcpState, u64)>,
    opener: Opener,
    closed_first: Option<Side>,
    local: SocketAddr,
    remote: SocketAddr,
    owner: Owner,
    /// Known from the snapshot, not from its first transition.
    predates_us: bool,
    /// Our FIN was acknowledged (FIN_WAIT1 -> FIN_WAIT2 seen).
    fin_acked: bool,
    /// Network namespace inode (0: ours, or unknown).
    netns: u32,
    /// How its handshake went, once ESTABLISHED is seen.
    handshake: Handshake,
    /// Why it sent a RST while open, where the kernel says.
    reset_reason: Option<Arc<str>>,
}

/// A connection's handshake, as its ESTABLISHED transition tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    /// See [`Close::connect_ns`].
    pub connect_ns: Option<u64>,
    /// See [`Close::syn_retransmits`].
    pub syn_retransmits: Option<u32>,
}

impl Handshake {
    /// The handshake of a connection opened by `opener` that became
    /// ESTABLISHED from `old` after `waited_ns` in that state, with the
    /// kernel's `tcp` figures then. An active open took the time it waited
    /// in SYN_SENT. A passive one exists as a socket only once its
    /// handshake is over: its time is the SYN-ACK's round trip, as the
    /// kernel measured it; unknown if the SYN-ACK was sent again (the
    /// time of its first send is gone by then).
    pub fn at_established(
        opener: Opener,
        old: TcpState,
        waited_ns: u64,
        tcp: Option<TcpStats>,
    ) -> Handshake {
        let connect_ns = match (opener, old) {
            (Opener::Active, TcpState::SynSent) => Some(waited_ns),
            (Opener::Passive, TcpState::SynRecv) => tcp
                .filter(|t| t.retransmits == 0)
                .map(|t| u64::from(t.srtt_us) * 1000),
            _ => None,
        };
        Handshake {
            connect_ns,
            syn_retransmits: tcp.map(|t| t.retransmits),
        }
    }
}

/// A socket missing from a dump is forgotten only after this long without
/// an event: one hashed just after its first transition may be missing
/// from a dump that raced with it.
pub const GONE_AFTER_NS: u64 = 1_000_000_000;

/// Whether a socket of network namespace `of` is in dumps of `ours` (0 is
/// unknown: the kernel could not tell us, so all look alike).
fn dumped(of: u32, ours: u32) -> bool {
    of == ours || of == 0 || ours == 0
}

pub struct Tracker {
    conns: FxHashMap<SockId, Conn>,
    /// Owners of listeners by local address, for connections they spawn
    /// when the kernel did not know the listener's owner.
    listeners: FxHashMap<SocketAddr, Owner>,
    capacity: usize,
    /// Sockets dropped from tracking (an arbitrary one each time) to stay
    /// within `capacity`.
    pub evicted: u64,
    /// Sockets dropped because the kernel no longer had them although we
    /// never saw them close (their last transition was missed).
    pub gone: u64,
    pub timewaits: TimeWaits,
    pub resets: Resets,
}

impl Tracker {
    pub fn new(capacity: usize) -> Tracker {
        Tracker {
            conns: FxHashMap::default(),
            listeners: FxHashMap::default(),
            capacity,
            evicted: 0,
            gone: 0,
            timewaits: TimeWaits::default(),
            resets: Resets::default(),
        }
    }

    /// Sockets that existed before we started, with their owners. Beyond
    /// the tracking limit connections are not followed (and counted so):
    /// evicting one for the next, hundreds of thousands of times at the
    /// start on a big host, would cost seconds.
    pub fn preload(&mut self, known: impl IntoIterator<Item = Known>, now_ns: u64) {
        for k in known {
            if k.state == TcpState::Listen {
                if k.owner.is_known() {
                    self.listeners.insert(k.local, k.owner.clone());
                }
                continue;
            }
            if k.state == TcpState::TimeWait {
                self.timewaits
                    .enter(k.sock, k.local, k.remote, k.owner, k.netns, None);
                continue;
            }
            if self.conns.len() >= self.capacity {
                self.evicted += 1;
                continue;
            }
            self.insert(
                k.sock,
                Conn {
                    first_ns: now_ns,
                    state: k.state,
                    state_since_ns: now_ns,
                    spent: Vec::new(),
                    opener: Opener::Unknown,
                    closed_first: None,
                    local: k.local,
                    remote: k.remote,
                    owner: k.owner,
                    predates_us: true,
                    fin_acked: false,
                    netns: k.netns,
                    handshake: Handshake::default(),
                    reset_reason: None,
                },
            );
        }
    }

    /// Feeds one event; appends what to render to `out`.
    pub fn observe(&mut self, mut event: Event, out: &mut Vec<Record>) {
        let (
            Some(sock),
            Detail::State {
                mut local,
                mut remote,
                old,
                new,
                info,
            },
        ) = (event.sock, event.detail)
        else {
            out.push(Record::Event(event));
            return;
        };
        if new == TcpState::Listen || old == TcpState::Listen && new == TcpState::Close {
            self.listener(local, old, new, &event.owner);
        }
        if !self.track(sock, &event, local, remote, old, new) {
            // A socket we never saw before ends now: report what we can.
            out.push(Record::Event(event));
            return;
        }
        self.follow(
            sock,
            &mut event,
            (&mut local, &mut remote),
            (old, new),
            info.tcp,
        );
        // A timewait socket took over: the rule the kernel's tallies use.
        let enters_time_wait = new == TcpState::Close
            && tracer_common::enters_time_wait(old.raw(), info.kernel_flags());
        event.detail = Detail::State {
            local,
            remote,
            old,
            new: if enters_time_wait {
                TcpState::TimeWait
            } else {
                new
            },
            info,
        };
        if new != TcpState::Close {
            out.push(Record::Event(event));
            return;
        }
        self.closed(sock, event, old, info, enters_time_wait, out);
    }

    /// Starts following `sock` unless it is known already; false when it
    /// is new and ends now (nothing to follow).
    fn track(
        &mut self,
        sock: SockId,
        event: &Event,
        local: SocketAddr,
        remote: SocketAddr,
        old: TcpState,
        new: TcpState,
    ) -> bool {
        let tracked = old != TcpState::Listen || new != TcpState::Close;
        if !self.conns.contains_key(&sock) {
            if !tracked || new == TcpState::Close {
                return false;
            }
            let conn = Conn::first(event, local, remote, old);
            self.insert(sock, conn);
        }
        true
    }

    /// Brings `sock`'s connection up to `event` (and `event` up to what
    /// the connection knows); a passive socket the kernel found no owner
    /// for takes its listener's.
    fn follow(
        &mut self,
        sock: SockId,
        event: &mut Event,
        (local, remote): (&mut SocketAddr, &mut SocketAddr),
        (old, new): (TcpState, TcpState),
        tcp: Option<TcpStats>,
    ) {
        let conn = self.conns.get_mut(&sock).expect("tracked above");
        if new == TcpState::Established {
            let waited_ns = event.mono_ns.saturating_sub(conn.state_since_ns);
            conn.handshake = Handshake::at_established(conn.opener, old, waited_ns, tcp);
        }
        conn.update(&mut event.owner, local, remote, event.mono_ns, old, new);
        if !event.owner.is_known()
            && conn.opener == Opener::Passive
            && let Some(owner) = self.listeners.get(&conn.local)
        {
            event.owner = cached(owner);
            conn.owner = event.owner.clone();
        }
    }

    /// `sock` has closed: it stops being followed, enters the timewait
    /// table if a timewait socket took over, and its close record follows
    /// the event (a listener's close is the event alone).
    fn closed(
        &mut self,
        sock: SockId,
        event: Event,
        old: TcpState,
        info: StateInfo,
        enters_time_wait: bool,
        out: &mut Vec<Record>,
    ) {
        let conn = self.conns.remove(&sock).expect("tracked above");
        if conn.opener == Opener::Listener {
            out.push(Record::Event(event));
            return;
        }
        if enters_time_wait {
            self.timewaits.enter(
                sock,
                conn.local,
                conn.remote,
                conn.owner.clone(),
                event.netns,
                Some(event.mono_ns),
            );
        }
        let close = conn.close(sock, &event, old, info, enters_time_wait);
        out.push(Record::Event(event));
        self.resets.close(close, out);
    }

    /// `sock` sent a RST for reason `code`: its close, if it waits for
    /// that, goes to `out`; an open connection keeps the reason until its
    /// end.
    pub fn reset(&mut self, sock: SockId, code: u32, out: &mut Vec<Record>) {
        if let Some(reason) = self.resets.reset(sock, code, out)
            && let Some(conn) = self.conns.get_mut(&sock)
        {
            conn.reset_reason = Some(reason);
        }
    }

    fn listener(&mut self, local: SocketAddr, old: TcpState, new: TcpState, owner: &Owner) {
        if new == TcpState::Close && old == TcpState::Listen {
            self.listeners.remove(&local);
        } else if owner.is_known() && local.port() != 0 {
            self.listeners.insert(local, owner.clone());
        }
    }

    fn insert(&mut self, sock: SockId, conn: Conn) {
        if self.conns.len() >= self.capacity
            && !self.conns.contains_key(&sock)
            && let Some(victim) = self.conns.keys().next().copied()
        {
            self.conns.remove(&victim);
            self.evicted += 1;
        }
        self.conns.insert(sock, conn);
    }

    /// Forgets the sockets the kernel no longer has: missing from a dump
    /// of network namespace `netns` that began at `dump_ns` (`present`,
    /// sorted), and without an event for a while. Their close was missed;
    /// kept, they would stay forever. Other namespaces' sockets are not in
    /// the dump.
    pub fn forget_gone(&mut self, present: &[SockId], dump_ns: u64, netns: u32) {
        let before = self.conns.len();
        self.conns.retain(|sock, conn| {
            present.binary_search(sock).is_ok()
                || !dumped(conn.netns, netns)
                || conn.state_since_ns + GONE_AFTER_NS > dump_ns
        });
        self.gone += (before - self.conns.len()) as u64;
    }

    /// Sockets followed right now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no socket is followed right now.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

fn cached(owner: &Owner) -> Owner {
    Owner {
        source: OwnerSource::Cached,
        ..owner.clone()
    }
}

impl Conn {
    fn first(event: &Event, local: SocketAddr, remote: SocketAddr, old: TcpState) -> Conn {
        let opener = Opener::first(old);
        Conn {
            first_ns: event.mono_ns,
            state: old,
            state_since_ns: event.mono_ns,
            spent: Vec::new(),
            opener,
            closed_first: None,
            local,
            remote,
            owner: event.owner.clone(),
            predates_us: false,
            fin_acked: false,
            netns: event.netns,
            handshake: Handshake::default(),
            reset_reason: None,
        }
    }

    /// Applies one transition; fills gaps in the event from what we know.
    fn update(
        &mut self,
        owner: &mut Owner,
        local: &mut SocketAddr,
        remote: &mut SocketAddr,
        now_ns: u64,
        old: TcpState,
        new: TcpState,
    ) {
        if new == TcpState::Listen {
            self.opener = Opener::Listener;
        }
        if self.state != TcpState::Close || !self.spent.is_empty() {
            self.spend(old, now_ns.saturating_sub(self.state_since_ns));
        }
        self.state = new;
        self.state_since_ns = now_ns;
        if old == TcpState::FinWait1 && new == TcpState::FinWait2 {
            self.fin_acked = true;
        }
        if self.closed_first.is_none() {
            self.closed_first = match new {
                TcpState::FinWait1 => Some(Side::Local),
                TcpState::CloseWait => Some(Side::Remote),
                _ => None,
            };
        }
        // Endpoints: keep the most complete, and backfill the event.
        fill(&mut self.local, local);
        fill(&mut self.remote, remote);
        if owner.is_known() {
            self.owner = owner.clone();
        } else if self.owner.is_known() {
            *owner = cached(&self.owner);
        }
    }

    fn spend(&mut self, state: TcpState, ns: u64) {
        // CLOSE before the first transition; LISTEN is the state a new
        // connection's socket inherits from its listener for an instant.
        if matches!(state, TcpState::Close | TcpState::Listen) {
            return;
        }
        match self.spent.iter_mut().find(|(s, _)| *s == state) {
            Some((_, total)) => *total += ns,
            None => self.spent.push((state, ns)),
        }
    }

    fn close(
        self,
        sock: SockId,
        event: &Event,
        old: TcpState,
        info: StateInfo,
        time_wait: bool,
    ) -> Close {
        let established =
            self.spent.iter().any(|(s, _)| *s == TcpState::Established) || self.predates_us;
        // The kernel counts sequence space: our SYN (when we opened; a
        // listener's SYN-ACK is acked before the socket exists), our FIN
        // once acknowledged, the peer's FIN once received. Data only, here.
        let syn = u64::from(self.opener == Opener::Active && established);
        let fin_acked = self.fin_acked
            || (!info.rst_received && matches!(old, TcpState::LastAck | TcpState::Closing));
        let bytes_sent = info.bytes_acked.saturating_sub(syn + u64::from(fin_acked));
        let bytes_received = info.bytes_received.saturating_sub(u64::from(info.peer_fin));
        // An established connection that ends without FIN handshake, RST
        // received or error was aborted here: the kernel sends the RST
        // just after this transition (close with SO_LINGER 0 or unread data).
        let aborted = !time_wait
            && info.sk_err.0 == 0
            && matches!(
                old,
                TcpState::Established
                    | TcpState::CloseWait
                    | TcpState::SynRecv
                    | TcpState::FinWait1
            );
        Close {
            mono_ns: event.mono_ns,
            sock,
            owner: event.owner.clone(),
            proto: event.proto,
            netns: event.netns,
            local: self.local,
            remote: self.remote,
            opener: self.opener,
            closed_first: if time_wait {
                Some(Side::Local)
            } else {
                self.closed_first
            },
            reset_by: if info.rst_received {
                Some(Side::Remote)
            } else if info.rst_sent || aborted {
                Some(Side::Local)
            } else {
                None
            },
            failure: (!established).then(|| Failure::from(old, info)),
            connect_ns: self.handshake.connect_ns,
            // A connection never established retransmitted its SYN only.
            syn_retransmits: if established {
                self.handshake.syn_retransmits
            } else {
                info.tcp.map(|t| t.retransmits)
            },
            tcp: info.tcp,
            duration_ns: event.mono_ns.saturating_sub(self.first_ns),
            spent: self.spent,
            bytes_sent,
            bytes_received,
            time_wait,
            predates_us: self.predates_us,
            reset_reason: self.reset_reason,
        }
    }
}

/// Replaces a zero address or port in `seen` with the one we know, or
/// learns the one the event brings.
fn fill(known: &mut SocketAddr, seen: &mut SocketAddr) {
    if seen.ip().is_unspecified() && !known.ip().is_unspecified() {
        seen.set_ip(known.ip());
    }
    if seen.port() == 0 && known.port() != 0 {
        seen.set_port(known.port());
    }
    *known = *seen;
}

#[cfg(test)]
mod tests;
