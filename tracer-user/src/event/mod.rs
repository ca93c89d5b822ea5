//! Decoded events: owned, validated, ready to render. Split by concern:
//! [`owner`] (who holds a socket: task, command name, cgroup), [`kinds`]
//! (protocols, socket ids, TCP states, errnos and their names) and
//! [`decode`] (ring bytes to events, one exhaustive match over the record
//! kinds).
mod decode;
mod kinds;
mod owner;

use std::net::SocketAddr;

use tracer_common::{
    SOCK_PEER_FIN, SOCK_RST_RECEIVED, SOCK_RST_SENT, SOCK_TCP_STATS, SOCK_TW_FULL,
};

pub use self::{
    decode::{DecodeError, Decoded, decode, kind_of, read},
    kinds::{Errno, Proto, SockId, TcpState},
    owner::{Cgroup, Comm, Owner, OwnerSource},
};

/// A listener's accept queue, as sock_diag shows it (`ss -ltm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSample {
    pub sock: SockId,
    /// Connections waiting to be accepted.
    pub depth: u32,
    /// The most that may wait: the listen() backlog, as the kernel capped
    /// it.
    pub backlog: u32,
    /// SYNs and connections dropped since the socket was made.
    pub drops: u32,
}

/// One thing that happened to a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub mono_ns: u64,
    /// Who owns the socket (bind/listen: who called).
    pub owner: Owner,
    pub proto: Proto,
    /// The socket cookie; `None` when the kernel had not assigned one.
    pub sock: Option<SockId>,
    /// Inode of the socket's network namespace (0: unknown).
    pub netns: u32,
    pub detail: Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    State {
        local: SocketAddr,
        remote: SocketAddr,
        old: TcpState,
        new: TcpState,
        /// What the socket said about itself at this transition.
        info: StateInfo,
    },
    Bind {
        /// Requested address with the port the socket ended up with (the
        /// requested one when the call failed).
        addr: SocketAddr,
        requested_port: u16,
        errno: Errno,
    },
    Listen {
        addr: SocketAddr,
        backlog: i32,
        errno: Errno,
    },
    /// The last close of a socket that was bound but never listened nor
    /// connected (a UDP server, a TCP bind without listen).
    Release { addr: SocketAddr },
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self.detail {
            Detail::State { .. } => "state",
            Detail::Bind { .. } => "bind",
            Detail::Listen { .. } => "listen",
            Detail::Release { .. } => "release",
        }
    }

    /// The socket's own address: the local end of a transition, the
    /// address of a bind or listen.
    pub fn local(&self) -> &SocketAddr {
        match &self.detail {
            Detail::State { local, .. } => local,
            Detail::Bind { addr, .. } | Detail::Listen { addr, .. } | Detail::Release { addr } => {
                addr
            }
        }
    }
}

/// `"ipv4"` or `"ipv6"`, as the output names an address's family.
pub fn family_name(addr: &SocketAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// Extra facts read from the socket at a state transition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateInfo {
    /// The socket's pending error (why a connection failed); on a
    /// transition to CLOSE.
    pub sk_err: Errno,
    pub rst_received: bool,
    pub rst_sent: bool,
    /// The peer's FIN had arrived; on a transition to CLOSE.
    pub peer_fin: bool,
    /// The TIME_WAIT bucket table was full: no timewait socket took over;
    /// on a transition to CLOSE.
    pub tw_table_full: bool,
    /// Bytes sent and acknowledged / received; on a transition to CLOSE.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// RTT and retransmits; on a transition to ESTABLISHED or CLOSE, where
    /// the kernel has them.
    pub tcp: Option<TcpStats>,
    /// For `TIME_WAIT -> CLOSE` only: how its end was learnt.
    pub tw_end: Option<TwEnd>,
}

/// A connection's RTT and retransmits as the kernel keeps them (`ss -ti`'s
/// `rtt:` and `retrans:`): at ESTABLISHED, the handshake's; at CLOSE, its
/// whole life's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Segments retransmitted, SYN or SYN-ACK included.
    pub retransmits: u32,
    /// Smoothed RTT and its mean deviation, microseconds.
    pub srtt_us: u32,
    pub rttvar_us: u32,
}

impl StateInfo {
    /// The kernel's `SOCK_*` bits these stand for (the record's `flags`).
    pub fn kernel_flags(&self) -> u8 {
        [
            (self.rst_received, SOCK_RST_RECEIVED),
            (self.rst_sent, SOCK_RST_SENT),
            (self.peer_fin, SOCK_PEER_FIN),
            (self.tw_table_full, SOCK_TW_FULL),
            (self.tcp.is_some(), SOCK_TCP_STATS),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit)
    }
}

/// How the end of a TIME_WAIT was learnt (the kernel reports no event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwEnd {
    /// A sock_diag poll no longer found it: it ended at most one polling
    /// period before `time` (expiry, reuse by a new connection, or a RST).
    Observed,
    /// Computed: entry time plus the kernel's TIME_WAIT length (60 s).
    Timeout,
}

impl TwEnd {
    pub fn name(&self) -> &'static str {
        match self {
            TwEnd::Observed => "observed",
            TwEnd::Timeout => "timeout",
        }
    }
}

/// The bytes of ring record `record`, as the kernel writes them: what
/// decoder and pipeline tests feed in.
#[cfg(test)]
pub fn record_bytes<T>(record: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-old-data record.
    unsafe { std::slice::from_raw_parts((record as *const T).cast(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
impl Event {
    /// An event for renderer tests, owned by `comm` `pid` (tid = pid, uid 0).
    pub fn sample(mono_ns: u64, pid: u32, comm: &str, proto: Proto, detail: Detail) -> Event {
        Event {
            mono_ns,
            owner: Owner {
                pid,
                tid: pid,
                uid: 0,
                comm: Comm::from_bytes(comm.as_bytes()).expect("a short name"),
                cgroup_id: 1,
                cgroup: None,
                source: OwnerSource::Syscall,
            },
            proto,
            sock: Some(SockId(0xabc)),
            netns: 4026531840,
            detail,
        }
    }
}

#[cfg(test)]
impl Detail {
    /// A transition between addresses written as text, for tests.
    pub fn transition(local: &str, remote: &str, old: TcpState, new: TcpState) -> Detail {
        Detail::State {
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
            old,
            new,
            info: StateInfo::default(),
        }
    }
}
