//! What the kernel programs learn from the loader at load time ([`Config`]:
//! kernel layouts, mode, features, filters), and the maps' capacities and
//! counters both sides size and read.

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
    /// `tcp_sock::srtt_us` (8 × the smoothed RTT), `mdev_us` (4 × its
    /// mean deviation) and `total_retrans`.
    pub tcp_srtt_us: Field,
    pub tcp_mdev_us: Field,
    pub tcp_total_retrans: Field,
    /// What the start-up iterator reads of a task holding sockets: its
    /// thread group, name, real uid and cgroup v2 id
    /// (`cgroups->dfl_cgrp->kn->id`, what `bpf_get_current_cgroup_id`
    /// returns for the current task).
    pub task_tgid: Field,
    pub task_comm: Field,
    pub task_cred: Field,
    pub cred_uid: Field,
    pub task_cgroups: Field,
    pub css_set_dfl_cgrp: Field,
    pub cgroup_kn: Field,
    pub kernfs_node_id: Field,
    /// And of a descriptor: `file->f_inode`, whose `i_mode` says whether
    /// it is a socket and `i_ino` which.
    pub file_inode: Field,
    pub inode_mode: Field,
    pub inode_ino: Field,
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
/// With `MODE_TALLY`: send each count as a [`TallyRecord`](crate::TallyRecord) instead of
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
