//! The ABI between socktrace's kernel programs and its loader.
//!
//! Every ring-buffer record is a fixed-size `#[repr(C)]` struct that starts
//! with a [`Header`]; `Header::kind` says which struct follows. Addresses are
//! in network byte order (IPv4 in the first four bytes), ports in host order.
//! Nothing here holds an `Option`, an enum or a pointer: userspace decodes raw
//! integers and validates them itself.
#![no_std]

mod errno;
mod kind;
mod layout;
mod tcp;

pub use errno::*;
pub use kind::*;
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

/// Where a field lives inside a tracepoint record or a kernel struct.
///
/// `size` is in bytes. For a bitfield (`struct sock::sk_protocol` before
/// Linux 5.6) `offset`/`size` name the aligned word holding it and `shift`/
/// `bits` pick the field out of it; for ordinary fields `bits` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: u8,
    pub shift: u8,
    pub bits: u8,
    pub _pad: [u8; 3],
}

impl Field {
    pub const fn new(offset: u16, size: u8) -> Self {
        Field {
            offset,
            size,
            shift: 0,
            bits: 0,
            _pad: [0; 3],
        }
    }

    /// Extracts this field's value from the little- or big-endian-decoded
    /// word it was read from (`raw` holds `size` bytes).
    pub const fn extract(&self, raw: u64) -> u64 {
        if self.bits == 0 {
            raw
        } else {
            (raw >> self.shift) & ((1u64 << self.bits) - 1)
        }
    }
}

/// Argument layout of the syscall tracepoints we use, from their `format`
/// files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallTpLayout {
    pub bind_fd: Field,
    pub bind_addr: Field,
    pub bind_addrlen: Field,
    pub bind_ret: Field,
    pub listen_fd: Field,
    pub listen_backlog: Field,
    pub listen_ret: Field,
    /// `sys_exit_accept` and `sys_exit_accept4` share one layout.
    pub accept_ret: Field,
}

/// Kernel struct member offsets, from the running kernel's BTF: from the
/// current task to the `struct sock` behind a file descriptor, and what a
/// `struct sock` / `struct tcp_sock` says about the connection. A field
/// with `size` 0 is missing from this kernel; the programs leave it zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub task_files: Field,
    pub files_fdt: Field,
    pub fdtable_max_fds: Field,
    pub fdtable_fd: Field,
    pub file_private_data: Field,
    pub socket_file: Field,
    pub socket_sk: Field,
    pub sk_family: Field,
    pub sk_state: Field,
    /// `inet_sock::inet_sport` (network order), as the tracepoint reports
    /// it: `skc_num` is already cleared when a failed connect closes.
    pub sk_sport: Field,
    pub sk_dport: Field,
    pub sk_rcv_saddr: Field,
    pub sk_daddr: Field,
    pub sk_v6_rcv_saddr: Field,
    pub sk_v6_daddr: Field,
    pub sk_protocol: Field,
    pub sk_cookie: Field,
    pub sk_net: Field,
    pub net_inum: Field,
    pub sk_err: Field,
    /// `sock.sk_flags` (`sock_common.skc_flags`), where bit
    /// `Config::sock_done` is `SOCK_DONE`.
    pub sk_flags: Field,
    /// `net.ipv4.tcp_death_row`: TIME_WAIT sockets (+1) and their limit.
    pub net_tw_count: Field,
    pub net_tw_max: Field,
    pub tcp_bytes_acked: Field,
    pub tcp_bytes_received: Field,
}

/// Everything the kernel programs learn from userspace at load time. It is
/// one read-only global (`CONFIG`), filled with `EbpfLoader::override_global`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub syscall_tp: SyscallTpLayout,
    pub kernel: KernelLayout,
    /// Wake the reader only once this many bytes wait in the ring; below it
    /// the reader's timer collects them. 0 wakes it for every record.
    pub wakeup_bytes: u64,
    /// `MODE_*` bits: what the programs do with what they see.
    pub mode: u32,
    /// `FEATURE_*` bits: what this kernel lets the BTF tracepoints call,
    /// probed at start. A route the kernel lacks is never taken, so the
    /// verifier (which knows this read-only value) never sees its call.
    pub features: u32,
    /// A connection shorter than this counts as short in `Tally::short`.
    pub short_ns: u64,
    /// What the user filtered out, decided before any record is built.
    pub filter: KernelFilter,
    /// What `KernelLayout::net_tw_count` counts beyond the TIME_WAIT
    /// sockets: 1 for `tw_refcount` (Linux 5.17+), 0 for `tw_count`.
    pub tw_count_bias: u32,
    /// `SOCK_DONE` of the kernel's `enum sock_flags`: the bit of
    /// `KernelLayout::sk_flags` that says the peer's FIN arrived.
    pub sock_done: u32,
}

/// The user's filters the kernel programs check before building a record
/// (AND across fields; a set matches any of its values; an empty set or a
/// zero mask checks nothing). Socket fields (ports, family, protocol) are
/// checked first thing; owner fields (pid, uid) once the socket's owner is
/// known, and an unknown owner passes (userspace may still learn it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// The local or the remote port is one of these.
    pub ports: PortSet,
    /// The local port is one of these.
    pub sports: PortSet,
    /// The remote port is one of these (0 for a socket without a peer:
    /// bind, listen, release).
    pub dports: PortSet,
    /// The owner's pid (thread-group id) is one of these.
    pub pids: IdSet,
    /// The owner's uid is one of these.
    pub uids: IdSet,
    /// `FAMILY_*` bits.
    pub families: u32,
    /// `PROTO_*` bits.
    pub protocols: u32,
}

/// Up to `N` values, of which the first `len` count.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSet<T, const N: usize> {
    pub values: [T; N],
    pub len: u32,
}

/// Ports in host order.
pub type PortSet = ValueSet<u16, MAX_FILTER_PORTS>;
/// Pids or uids.
pub type IdSet = ValueSet<u32, MAX_FILTER_IDS>;

impl<T: Copy + Default, const N: usize> Default for ValueSet<T, N> {
    fn default() -> Self {
        ValueSet {
            values: [T::default(); N],
            len: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> ValueSet<T, N> {
    /// `values`, or `None` when there are more than `N`.
    pub fn from_slice(values: &[T]) -> Option<Self> {
        let mut set = Self::default();
        set.values.get_mut(..values.len())?.copy_from_slice(values);
        set.len = values.len() as u32;
        Some(set)
    }
}

/// `KernelFilter::families` bits.
pub const FAMILY_IPV4: u32 = 1;
pub const FAMILY_IPV6: u32 = 2;
/// `KernelFilter::protocols` bits.
pub const PROTO_TCP: u32 = 1;
pub const PROTO_UDP: u32 = 2;

/// `Config::mode`: stream every TCP transition (`watch`).
pub const MODE_STREAM: u32 = 1;
/// Stream only transitions into and out of LISTEN (`listeners`).
pub const MODE_LISTENERS: u32 = 2;
/// Count connection ends in `TALLIES` (`timewait`).
pub const MODE_TALLY: u32 = 4;
/// `cgroup/sock_release` runs: keep bound sockets in `BOUND` until it
/// reports their end.
pub const MODE_RELEASE: u32 = 8;
/// With `MODE_TALLY`: send each count as a [`TallyRecord`] instead of
/// adding it to `TALLIES`, for kernels (before 6.5) that refuse every
/// bpf(2) command, map reads included, to an unprivileged caller while
/// `kernel.unprivileged_bpf_disabled` is set (socktrace drops its
/// privileges after attaching).
pub const MODE_TALLY_RING: u32 = 16;

/// `Config::features`: BTF tracepoints may call `bpf_get_socket_cookie`
/// (Linux 5.12+). Without it they read `sock_common::skc_cookie`, which
/// holds the cookie once anything asked for it (our `cgroup/sock_create`
/// hook asks at creation; sock_diag dumps ask too).
pub const FEATURE_COOKIE: u32 = 1;
/// BTF tracepoints may call `bpf_sk_storage_get` (Linux 5.11+). Without it
/// owners live in the `OWNERS` hash map, by socket address, removed when
/// the socket closes; a full map is counted (`COUNTER_OWNER_FAILED`).
pub const FEATURE_SK_STORAGE: u32 = 2;

/// Sockets whose owner `OWNERS` can hold at once (without socket storage).
pub const OWNERS_CAPACITY: u32 = 1 << 18;
/// Listeners whose owner `LISTENING` can hold at once (without socket
/// storage: new connections inherit their listener's owner from it).
pub const LISTENING_CAPACITY: u32 = 1 << 14;

/// Keys `TALLIES` holds before counting in its overflow row (the all-zero
/// key); userspace bounds its sums of `TallyRecord`s the same.
pub const TALLIES_CAPACITY: u32 = 1 << 14;

/// First transitions `PENDING` can hold back at once.
pub const PENDING_CAPACITY: u32 = 1 << 13;

/// How many ports of one kind (`--port`, `--sport`, `--dport`) the kernel
/// can check.
pub const MAX_FILTER_PORTS: usize = 8;
/// How many pids or uids the kernel can check.
pub const MAX_FILTER_IDS: usize = 8;

impl Config {
    /// The all-zero value the kernel object is built with; the loader
    /// overrides it before load.
    // SAFETY: integers and arrays of integers only; zero is valid for each.
    pub const ZERO: Config = unsafe { core::mem::zeroed() };
}

/// Index of the per-CPU counters in the `COUNTERS` map.
pub const COUNTER_RING_DROPS: u32 = 0;
/// Bind/listen exits whose entry was never seen (started mid-syscall) or
/// whose argument stash was full.
pub const COUNTER_UNPAIRED: u32 = 1;
/// Sockets whose owner record could not be stored (allocation failed, or
/// `OWNERS` full).
pub const COUNTER_OWNER_FAILED: u32 = 2;
/// Tallies that went to the overflow row because `TALLIES` was full.
pub const COUNTER_TALLY_OVERFLOW: u32 = 3;
/// Records the programs tried to put in the ring (delivered or dropped):
/// what passed the kernel's filters.
pub const COUNTER_EMITTED: u32 = 4;
/// Bound sockets whose end cannot be followed: `BOUND` was full.
pub const COUNTER_BOUND_FULL: u32 = 5;
/// Transitions the state program's catcher handled: each interrupted the
/// state program on its CPU, so the kernel counted it among the state
/// program's recursion misses, yet it was not lost.
pub const COUNTER_CAUGHT: u32 = 6;
/// Transitions nested deeper than the state program has scratch slots for
/// (`NEST_SLOTS`): lost. Only where the kernel lets a BTF tracepoint
/// program interrupt itself.
pub const COUNTER_TOO_DEEP: u32 = 7;
pub const COUNTERS: u32 = 8;

/// How deep the state program's runs may nest on one CPU: a task's, and a
/// softirq's that interrupted it (softirqs do not nest, and no TCP state
/// changes in a hard interrupt).
pub const NEST_SLOTS: u32 = 2;

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
