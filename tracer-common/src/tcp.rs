//! TCP facts both sides decide by: the kernel's state numbers, and what a
//! close means for TIME_WAIT.
use crate::{SOCK_RST_RECEIVED, SOCK_RST_SENT, SOCK_TW_FULL};

// `include/net/tcp_states.h`: the numbering is UAPI-stable (`ss`, the
// `inet_sock_set_state` tracepoint and sock_diag all report it).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
/// A timewait mini-socket (`struct inet_timewait_sock`), not a full socket.
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;
/// A request mini-socket (`struct request_sock`) of a connection still in
/// its handshake, not a full socket.
pub const TCP_NEW_SYN_RECV: u8 = 12;
/// Bound, neither listening nor connected: only sock_diag reports it,
/// never a transition.
pub const TCP_BOUND_INACTIVE: u8 = 13;
/// One past the last state.
pub const TCP_MAX_STATES: u8 = 14;

/// How long a TIME_WAIT socket lives: `TCP_TIMEWAIT_LEN`, 60 s in every
/// kernel (not a sysctl).
pub const TW_LEN_NS: u64 = 60_000_000_000;

/// Whether a close (a transition to `TCP_CLOSE`) from state `old`, with the
/// `SOCK_*` bits `flags`, hands the connection to a timewait socket: from
/// FIN_WAIT2 or CLOSING, without a RST and with room in the kernel's table.
/// The timewait socket may start in its FIN_WAIT2 substate (we were
/// orphaned before the peer's FIN) and turns TIME_WAIT when that FIN comes;
/// it holds the port all the same.
#[inline(always)]
pub const fn enters_time_wait(old: u8, flags: u8) -> bool {
    closes_towards_time_wait(old) && flags & (SOCK_RST_RECEIVED | SOCK_RST_SENT | SOCK_TW_FULL) == 0
}

/// Whether a close from state `old` hands the connection to a timewait
/// socket unless a RST or a full table stops it (see [`enters_time_wait`]):
/// only then is the table worth reading.
#[inline(always)]
pub const fn closes_towards_time_wait(old: u8) -> bool {
    old == TCP_FIN_WAIT2 || old == TCP_CLOSING
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SOCK_PEER_FIN;

    #[test]
    fn only_a_clean_close_from_fin_wait2_or_closing_enters_time_wait() {
        for old in 0..=TCP_MAX_STATES {
            let expected = old == TCP_FIN_WAIT2 || old == TCP_CLOSING;
            assert_eq!(enters_time_wait(old, 0), expected, "from {old}");
            // The peer's FIN says nothing about who closed first.
            assert_eq!(enters_time_wait(old, SOCK_PEER_FIN), expected, "from {old}");
            for flag in [SOCK_RST_RECEIVED, SOCK_RST_SENT, SOCK_TW_FULL] {
                assert!(!enters_time_wait(old, flag), "from {old} with {flag}");
            }
        }
    }
}
