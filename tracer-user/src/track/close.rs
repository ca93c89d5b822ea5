//! The record of a finished connection (tcplife's line, and more).
use std::{net::SocketAddr, sync::Arc};

use crate::event::{Errno, Owner, Proto, SockId, StateInfo, TcpState, TcpStats};

/// How a connection started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// We connected (CLOSE -> SYN_SENT).
    Active,
    /// A listener accepted it (LISTEN -> SYN_RECV).
    Passive,
    /// A listening socket, not a connection.
    Listener,
    /// It was already open when we started.
    Unknown,
}

/// One end of a connection, seen from the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn name(&self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

impl Opener {
    /// The opener of a connection whose first transition we see leaves
    /// `old`.
    pub fn first(old: TcpState) -> Opener {
        match old {
            TcpState::Close => Opener::Active,
            TcpState::Listen => Opener::Passive,
            _ => Opener::Unknown,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Opener::Active => "active",
            Opener::Passive => "passive",
            Opener::Listener | Opener::Unknown => "unknown",
        }
    }
}

/// Why a connection never got established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The peer answered with a RST (nothing listening).
    Refused,
    /// No answer: SYN retries exhausted.
    TimedOut,
    /// An ICMP error: no route, host or network unreachable.
    Unreachable,
    /// Reset after the peer's SYN-ACK or during the handshake.
    Reset,
    /// The caller gave up (closed the socket while connecting).
    Aborted,
    /// Something else; see `errno`.
    Other,
}

impl Reason {
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::TimedOut => "timed_out",
            Reason::Unreachable => "unreachable",
            Reason::Reset => "reset",
            Reason::Aborted => "aborted",
            Reason::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    /// The socket's error at the end (ECONNREFUSED, ETIMEDOUT, ...).
    pub errno: Errno,
}

impl Failure {
    /// Classifies a connection that ended in `old` without ever being
    /// established.
    pub fn from(old: TcpState, info: StateInfo) -> Failure {
        const ECONNREFUSED: i32 = 111;
        const ETIMEDOUT: i32 = 110;
        const ECONNRESET: i32 = 104;
        const UNREACHABLE: [i32; 4] = [113, 101, 112, 100]; // EHOSTUNREACH ENETUNREACH EHOSTDOWN ENETDOWN
        let errno = info.sk_err;
        let reason = match errno.0 {
            ECONNREFUSED => Reason::Refused,
            ETIMEDOUT => Reason::TimedOut,
            e if UNREACHABLE.contains(&e) => Reason::Unreachable,
            ECONNRESET => Reason::Reset,
            _ if info.rst_received => Reason::Reset,
            0 if old == TcpState::SynSent => Reason::Aborted,
            _ => Reason::Other,
        };
        Failure { reason, errno }
    }
}

/// A finished connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Close {
    /// When it ended (its last transition).
    pub mono_ns: u64,
    pub sock: SockId,
    pub owner: Owner,
    pub proto: Proto,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub opener: Opener,
    /// Who sent the first FIN: that side ends in TIME_WAIT.
    pub closed_first: Option<Side>,
    /// A RST ended it, sent by this side.
    pub reset_by: Option<Side>,
    /// Why this side sent its RST, in the kernel's words (`enum
    /// sk_rst_reason`, lowercase, without `SK_RST_REASON_`); `None` when
    /// it sent none or the kernel gives no reason.
    pub reset_reason: Option<Arc<str>>,
    /// Set when it was never established.
    pub failure: Option<Failure>,
    /// From its first transition we saw to its last.
    pub duration_ns: u64,
    /// Nanoseconds in each state, in order of first visit.
    pub spent: Vec<(TcpState, u64)>,
    /// Bytes sent and acknowledged by the peer.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// How long the handshake took: active, connect() to ESTABLISHED;
    /// passive, the SYN-ACK's round trip. `None` when we did not see it, or
    /// (passive) when the SYN-ACK was sent again.
    pub connect_ns: Option<u64>,
    /// SYNs (active) or SYN-ACKs (passive) sent again; `None` when we did
    /// not see the handshake end or the kernel keeps no count.
    pub syn_retransmits: Option<u32>,
    /// At its end: segments retransmitted over its whole life (SYNs
    /// included) and its RTT; `None` where the kernel has no such fields.
    pub tcp: Option<TcpStats>,
    /// It ended by entering TIME_WAIT (this side closed first).
    pub time_wait: bool,
    /// It was already open when socktrace started (durations start then).
    pub predates_us: bool,
}

#[cfg(test)]
impl Close {
    /// A connection of `owner` for renderer tests; adjust fields as needed.
    pub fn sample(mono_ns: u64, owner: Owner, local: &str, remote: &str) -> Close {
        Close {
            mono_ns,
            sock: SockId(0x10),
            owner,
            proto: Proto::Tcp,
            netns: 1,
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
            opener: Opener::Active,
            closed_first: None,
            reset_by: None,
            reset_reason: None,
            failure: None,
            duration_ns: 0,
            spent: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            connect_ns: None,
            syn_retransmits: None,
            tcp: None,
            time_wait: false,
            predates_us: false,
        }
    }
}
