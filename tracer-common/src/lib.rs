//! The ABI between socktrace's kernel programs and its loader.
//!
//! Every ring-buffer record is a fixed-size `#[repr(C)]` struct that starts
//! with a [`Header`]; `Header::kind` says which struct follows. Addresses are
//! in network byte order (IPv4 in the first four bytes), ports in host order.
//! Nothing here holds an `Option`, an enum or a pointer: userspace decodes raw
//! integers and validates them itself.
#![no_std]

mod config;
mod errno;
mod kind;
mod layout;
mod procfs;
mod tcp;

pub use config::*;
pub use errno::*;
pub use kind::*;
pub use procfs::*;
pub use tcp::*;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

pub const COMM_LEN: usize = 16;

/// Common start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
}

/// `Owner::source` values: how the owner of a socket was learnt.
/// Nothing is known about this socket's owner (it predates us and has not
/// been touched since).
pub const OWNER_UNKNOWN: u32 = 0;
/// Seen in process context: the task made a call on this socket (connect,
/// listen, bind, accept, send, recv, close, shutdown).
pub const OWNER_SYSCALL: u32 = 1;
/// Copied from the listener when the kernel cloned it for a new connection
/// (not yet accepted).
pub const OWNER_INHERITED: u32 = 2;

/// The task that owns a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Thread-group id, what userspace calls the pid.
    pub pid: u32,
    /// Kernel task id, what userspace calls the tid.
    pub tid: u32,
    pub uid: u32,
    /// One of the `OWNER_*` values.
    pub source: u32,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// `StateRecord::flags` bits.
/// The socket received a RST (`tcp:tcp_receive_reset`).
pub const SOCK_RST_RECEIVED: u8 = 1;
/// The socket sent a RST (`tcp:tcp_send_reset`).
pub const SOCK_RST_SENT: u8 = 2;
/// The peer's FIN had arrived (`SOCK_DONE` in `sk_flags`, which only
/// `tcp_fin` sets: `close()` sets `RCV_SHUTDOWN` too); checked on a
/// transition to CLOSE only.
pub const SOCK_PEER_FIN: u8 = 4;
/// The network namespace's TIME_WAIT bucket table was full at a close: no
/// timewait socket could take over (`TcpExtTCPTimeWaitOverflow`).
pub const SOCK_TW_FULL: u8 = 8;
/// `srtt_us`, `rttvar_us` and `total_retrans` were read (this kernel has
/// them); on a transition to ESTABLISHED or CLOSE only.
pub const SOCK_TCP_STATS: u8 = 16;

/// One TCP state transition (`tp_btf/inet_sock_set_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    pub header: Header,
    /// Owner of the socket, not the task that happened to run.
    pub owner: Owner,
    /// The socket cookie (`ss -e` shows it as `sk:`), our socket id.
    pub cookie: u64,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// `sk_err` (why a connection failed); filled on a transition to CLOSE
    /// only.
    pub sk_err: i32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    /// `TCP_*` state numbers as in `include/net/tcp_states.h`.
    pub old_state: u8,
    pub new_state: u8,
    /// `SOCK_*` bits.
    pub flags: u8,
    pub _pad: [u8; 5],
    /// `tcp_sock::bytes_acked` / `bytes_received`; filled on a transition
    /// to CLOSE only.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Segments retransmitted so far (`tcp_sock::total_retrans`, what
    /// `ss -ti` shows as `retrans:…/N`); at ESTABLISHED, the handshake's
    /// (SYN or SYN-ACK) retransmits.
    pub total_retrans: u32,
    /// Smoothed RTT and its mean deviation, microseconds (`ss -ti`'s
    /// `rtt:SRTT/RTTVAR`); at ESTABLISHED from the handshake alone.
    pub srtt_us: u32,
    pub rttvar_us: u32,
    pub _pad2: u32,
}

/// One `bind(2)` on an IPv4/IPv6 socket, seen at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindRecord {
    pub header: Header,
    /// The caller.
    pub owner: Owner,
    /// Socket cookie; 0 when the kernel had not assigned one yet.
    pub cookie: u64,
    pub netns: u32,
    /// Syscall return value: 0 or `-errno`.
    pub ret: i32,
    /// The address the caller asked for (from its `sockaddr`).
    pub addr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    /// The port the caller asked for (0: let the kernel pick).
    pub requested_port: u16,
    /// The socket's local port after the call (the kernel's pick for 0).
    pub bound_port: u16,
}

/// One `listen(2)` on an IPv4/IPv6 socket, seen at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenRecord {
    pub header: Header,
    /// The caller.
    pub owner: Owner,
    pub cookie: u64,
    pub netns: u32,
    /// Syscall return value: 0 or `-errno`.
    pub ret: i32,
    /// The socket's local address and port after the call.
    pub addr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub _pad: u16,
    pub backlog: i32,
    pub _pad2: u32,
}

/// The last close of an explicitly bound socket that never listened nor
/// connected (a UDP server, or a TCP bind never followed by `listen`), seen
/// by `cgroup/sock_release` in the closing task's context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub header: Header,
    /// The closing task.
    pub owner: Owner,
    pub cookie: u64,
    pub netns: u32,
    pub _pad: u32,
    /// The socket's local address and port at its close.
    pub addr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub _pad2: u16,
}

/// A RST a followed TCP socket sent, and the kernel's reason for it
/// (`tcp:tcp_send_reset` where it has `enum sk_rst_reason`, Linux 6.10+).
/// Most come just after the socket's transition to CLOSE (a close with
/// unread data, or with `SO_LINGER` 0): userspace joins the two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetRecord {
    pub header: Header,
    pub cookie: u64,
    /// The kernel's `enum sk_rst_reason` value; userspace names it from
    /// the running kernel's BTF.
    pub reason: u32,
    /// The socket's state as it sent the RST.
    pub state: u8,
    pub _pad: [u8; 3],
}

/// `TallyKey::role`: which end of the connection this socket was.
/// It connected (CLOSE -> SYN_SENT).
pub const ROLE_CLIENT: u8 = 1;
/// A listener accepted it (-> SYN_RECV).
pub const ROLE_SERVER: u8 = 2;

/// `TallyKey::port` of a socket of `role` (`ROLE_*`, 0 if unknown) with
/// these ports (host order): the service's port, the local one of a
/// server socket and the remote one of any other, so that a client's
/// ephemeral ports do not multiply keys.
#[inline(always)]
pub const fn service_port(role: u8, local_port: u16, remote_port: u16) -> u16 {
    if role == ROLE_SERVER {
        local_port
    } else {
        remote_port
    }
}

/// What `socktrace timewait` counts in the kernel, by owner and
/// destination, instead of streaming every transition (`TALLIES` map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TallyKey {
    pub netns: u32,
    /// Owner's pid (0: unknown, or the overflow row when everything is 0).
    pub pid: u32,
    pub family: u16,
    /// `ROLE_*`; 0 when the start of the connection was not seen.
    pub role: u8,
    pub _pad: u8,
    /// The service port ([`service_port`]).
    pub port: u16,
    pub _pad2: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

/// Totals for one [`TallyKey`] since the programs were loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Connections that ended by entering TIME_WAIT (this side closed first).
    pub time_waits: u64,
    /// Connections that ended (any way).
    pub closes: u64,
    /// Of `closes`, those that lived less than `Config::short_ns`.
    pub short: u64,
    /// The owner's name at the last update.
    pub comm: [u8; COMM_LEN],
}

/// One connection end as `socktrace timewait` counts it, sent through the
/// ring (`MODE_TALLY_RING`) where userspace cannot read `TALLIES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TallyRecord {
    pub header: Header,
    pub key: TallyKey,
    pub comm: [u8; COMM_LEN],
    /// It entered TIME_WAIT.
    pub time_wait: u8,
    /// It lived less than `Config::short_ns`.
    pub short: u8,
    pub _pad: [u8; 6],
}

/// One socket descriptor some process holds, written by the start-up
/// iterator (`iter/task_file`) for each process (its thread-group leader,
/// or each thread with a table of its own) and each socket in its
/// descriptor table. Userspace joins `inode` with sock_diag's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFile {
    /// `source` is `OWNER_SYSCALL`: the task holds the descriptor.
    pub owner: Owner,
    /// The socket's inode number, what sock_diag and `/proc/PID/fd` show.
    pub inode: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: `#[repr(C)]`, integers and arrays only, and
    // every bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TallyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Tally {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_keyed_by_the_service_port() {
        assert_eq!(service_port(ROLE_SERVER, 8080, 41000), 8080);
        assert_eq!(service_port(ROLE_CLIENT, 41000, 443), 443);
        // The start was not seen: the remote port, as for a client.
        assert_eq!(service_port(0, 41000, 443), 443);
    }
}
