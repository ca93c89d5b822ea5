//! The ABI between socktrace's kernel programs and its loader.
//!
//! Every ring-buffer record is a fixed-size `#[repr(C)]` struct that starts
//! with a [`Header`]; `Header::kind` says which struct follows. Addresses are
//! in network byte order (IPv4 in the first four bytes), ports in host order.
//! Nothing here holds an `Option`, an enum or a pointer: userspace decodes raw
//! integers and validates them itself.
#![no_std]

/// `Header::kind` of a [`StateRecord`].
pub const KIND_STATE: u32 = 1;
/// `Header::kind` of a [`BindRecord`].
pub const KIND_BIND: u32 = 2;
/// `Header::kind` of a [`ListenRecord`].
pub const KIND_LISTEN: u32 = 3;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

pub const COMM_LEN: usize = 16;

/// The task that was running when the event fired, and when it fired.
///
/// For bind/listen records that task made the call. For state records it
/// is whatever ran on the CPU: the socket's owner when a syscall drove the
/// transition, an unrelated task when an incoming packet did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub _pad0: u32,
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// Thread-group id, what userspace calls the pid.
    pub pid: u32,
    /// Kernel task id, what userspace calls the tid.
    pub tid: u32,
    pub uid: u32,
    pub _pad1: u32,
    pub comm: [u8; COMM_LEN],
}

/// One `sock:inet_sock_set_state` transition.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    pub header: Header,
    /// Kernel address of the `struct sock`; userspace turns it into an opaque id.
    pub sock: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    /// `TCP_*` state numbers as in `include/net/tcp_states.h`.
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: [u8; 6],
}

/// One `bind(2)` on an IPv4/IPv6 socket, seen at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindRecord {
    pub header: Header,
    pub sock: u64,
    /// The address the caller asked for (from its `sockaddr`).
    pub addr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    /// The port the caller asked for (0: let the kernel pick).
    pub requested_port: u16,
    /// The socket's local port after the call (the kernel's pick for 0).
    pub bound_port: u16,
    /// Syscall return value: 0 or `-errno`.
    pub ret: i32,
    pub _pad: u32,
}

/// One `listen(2)` on an IPv4/IPv6 socket, seen at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenRecord {
    pub header: Header,
    pub sock: u64,
    /// The socket's local address and port after the call.
    pub addr: [u8; 16],
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub _pad: u16,
    pub backlog: i32,
    /// Syscall return value: 0 or `-errno`.
    pub ret: i32,
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

/// `sock:inet_sock_set_state` record layout, from its tracefs `format` file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTpLayout {
    pub skaddr: Field,
    pub oldstate: Field,
    pub newstate: Field,
    pub sport: Field,
    pub dport: Field,
    pub family: Field,
    pub protocol: Field,
    pub saddr: Field,
    pub daddr: Field,
    pub saddr_v6: Field,
    pub daddr_v6: Field,
}

/// Argument layout of the bind/listen syscall tracepoints, from their
/// `format` files.
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
}

/// Kernel struct member offsets, from the running kernel's BTF. They take us
/// from the current task to the `struct sock` behind a file descriptor.
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
    pub sk_num: Field,
    pub sk_rcv_saddr: Field,
    pub sk_v6_rcv_saddr: Field,
    pub sk_protocol: Field,
}

/// Everything the kernel programs learn from userspace at load time. It is
/// one read-only global (`CONFIG`), filled with `EbpfLoader::override_global`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub state_tp: StateTpLayout,
    pub syscall_tp: SyscallTpLayout,
    pub kernel: KernelLayout,
    /// Wake the reader only once this many bytes wait in the ring; below it
    /// the reader's timer collects them. 0 wakes it for every record.
    pub wakeup_bytes: u64,
}

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
pub const COUNTERS: u32 = 2;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: `#[repr(C)]`, integers and arrays only, and
    // every bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
}
