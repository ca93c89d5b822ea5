//! The kinds of things an event names, and their names: protocols,
//! socket ids, TCP states, errnos.
use std::fmt;

use tracer_common::{
    IPPROTO_TCP, IPPROTO_UDP, TCP_BOUND_INACTIVE, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING,
    TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_LISTEN, TCP_MAX_STATES,
    TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Other(u16),
}

impl Proto {
    pub(super) fn from_raw(raw: u16) -> Proto {
        match raw {
            IPPROTO_TCP => Proto::Tcp,
            IPPROTO_UDP => Proto::Udp,
            n => Proto::Other(n),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.pad("tcp"),
            Proto::Udp => f.pad("udp"),
            Proto::Other(n) => f.pad(&format!("proto{n}")),
        }
    }
}

/// A socket's cookie: unique while the system runs, never a kernel pointer,
/// and what `ss -e` prints after `sk:` (in the same hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockId(pub u64);

impl SockId {
    pub(super) fn from_cookie(cookie: u64) -> Option<SockId> {
        (cookie != 0).then_some(SockId(cookie))
    }
}

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// TCP states as `include/net/tcp_states.h` numbers them, named as the
/// kernel names them without `TCP_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    Unknown(u8),
}

impl TcpState {
    pub fn from_raw(raw: u8) -> TcpState {
        use TcpState::*;
        match raw {
            TCP_ESTABLISHED => Established,
            TCP_SYN_SENT => SynSent,
            TCP_SYN_RECV => SynRecv,
            TCP_FIN_WAIT1 => FinWait1,
            TCP_FIN_WAIT2 => FinWait2,
            TCP_TIME_WAIT => TimeWait,
            TCP_CLOSE => Close,
            TCP_CLOSE_WAIT => CloseWait,
            TCP_LAST_ACK => LastAck,
            TCP_LISTEN => Listen,
            TCP_CLOSING => Closing,
            TCP_NEW_SYN_RECV => NewSynRecv,
            TCP_BOUND_INACTIVE => BoundInactive,
            n => Unknown(n),
        }
    }

    /// The kernel's number; the inverse of [`TcpState::from_raw`].
    pub fn raw(&self) -> u8 {
        use TcpState::*;
        match self {
            Established => TCP_ESTABLISHED,
            SynSent => TCP_SYN_SENT,
            SynRecv => TCP_SYN_RECV,
            FinWait1 => TCP_FIN_WAIT1,
            FinWait2 => TCP_FIN_WAIT2,
            TimeWait => TCP_TIME_WAIT,
            Close => TCP_CLOSE,
            CloseWait => TCP_CLOSE_WAIT,
            LastAck => TCP_LAST_ACK,
            Listen => TCP_LISTEN,
            Closing => TCP_CLOSING,
            NewSynRecv => TCP_NEW_SYN_RECV,
            BoundInactive => TCP_BOUND_INACTIVE,
            Unknown(n) => *n,
        }
    }

    pub fn name(&self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            BoundInactive => "BOUND_INACTIVE",
            Unknown(_) => "UNKNOWN",
        }
    }

    /// The inverse of [`TcpState::name`]. `"UNKNOWN"` names a state this
    /// build does not know, without its number: it reads as `Unknown(0)`.
    pub fn from_name(name: &str) -> Option<TcpState> {
        match name {
            "UNKNOWN" => Some(TcpState::Unknown(0)),
            // The states `from_raw` names.
            _ => (1..TCP_MAX_STATES)
                .map(TcpState::from_raw)
                .find(|s| s.name() == name),
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpState::Unknown(n) => f.pad(&format!("STATE_{n}")),
            s => f.pad(s.name()),
        }
    }
}

/// A positive errno, 0 for success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// From a syscall return value (0 or `-errno`; a record claiming
    /// `i32::MIN` must not overflow: found by `cargo xtask fuzz`).
    pub(super) fn from_ret(ret: i32) -> Errno {
        Errno(if ret < 0 { ret.saturating_neg() } else { 0 })
    }

    /// `"EADDRINUSE"`, or `None` for success.
    pub fn name(&self) -> Option<String> {
        match self.0 {
            0 => None,
            n => Some(match nix::errno::Errno::from_raw(n) {
                nix::errno::Errno::UnknownErrno => format!("E{n}"),
                known => format!("{known:?}"),
            }),
        }
    }
}
