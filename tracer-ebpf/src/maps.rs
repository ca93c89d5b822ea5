//! Every map and global the programs share, declared once.
use core::ptr;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE},
    helpers::bpf_get_smp_processor_id,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    COUNTERS as N_COUNTERS, Config, LISTENING_CAPACITY, NEST_SLOTS, OWNERS_CAPACITY, Owner,
    PENDING_CAPACITY, StateRecord, TALLIES_CAPACITY, Tally, TallyKey,
};

/// Layouts and tuning from the loader (`EbpfLoader::override_global`).
/// Read it only through [`crate::field::cfg`], which stops the compiler from
/// folding the placeholder zeros into the code.
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::ZERO;

/// Every record goes through this one ring. The loader sizes it for the
/// mode (`Mode::ring_bytes` in tracer-user).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Counters indexed by CPU x `N_COUNTERS` + `tracer_common::COUNTER_*`
/// (the loader sizes it for every possible CPU). Mmap-able, so userspace
/// reads it as memory, needing no bpf(2) call (and no privilege) to do so.
#[map]
pub static COUNTERS: Array<u64> = Array::with_max_entries(N_COUNTERS, BPF_F_MMAPABLE);

/// Set by the reader when it goes to sleep with the ring empty (mapped
/// into its memory): the next record wakes it (see `emit`).
#[map]
pub static DOZE: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Arguments of a bind/listen in flight, by thread id, kept from syscall
/// entry to exit. LRU so a thread that never returns cannot fill it.
#[map]
pub static SYSCALL_ARGS: LruHashMap<u32, SyscallArgs> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallArgs {
    /// `tracer_common::KIND_BIND` or `KIND_LISTEN`.
    pub kind: u32,
    pub fd: u32,
    /// bind: user pointer to the `sockaddr`.
    pub addr: u64,
    /// bind: `addrlen`; listen: `backlog`.
    pub len_or_backlog: i32,
    pub _pad: u32,
}

/// What we keep on each TCP socket, in the socket itself (socket-local
/// storage): freed with the socket, so a reused address never inherits it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockInfo {
    pub owner: Owner,
    /// The socket `owner` was recorded on. Storage is cloned from a listener
    /// into each new connection (`BPF_F_CLONE`), so a different value here
    /// means the owner is the listener's, inherited.
    pub sk: u64,
    /// When the connection started (-> SYN_SENT or -> SYN_RECV), or 0.
    pub opened_ns: u64,
    /// `tracer_common::SOCK_RST_*` bits seen so far.
    pub flags: u8,
    /// `tracer_common::ROLE_*`, or 0 before the connection started.
    pub role: u8,
    /// 1 once an event of this socket went to userspace (see the owner
    /// filter in `state`).
    pub reported: u8,
    /// 1 while its first transition waits in `PENDING`.
    pub pending: u8,
    pub _pad: [u8; 4],
}

/// What a socket seen for the first time carries: nothing known. A static,
/// so inserting it copies from read-only data, not from the stack (the
/// state program's stack is near the verifier's 512-byte limit).
// SAFETY: integers and arrays of integers only; zero is valid for each.
pub static EMPTY_INFO: SockInfo = unsafe { core::mem::zeroed() };

/// Copy the storage into sockets the kernel clones (accepted connections).
const BPF_F_CLONE: usize = 1 << 9;

/// A BTF-defined socket storage map, written out by hand: aya-ebpf's
/// `SkStorage` takes neither `BPF_F_CLONE` nor a tracing context.
#[repr(C)]
pub struct SockStorage {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize | BPF_F_CLONE],
    key: *const i32,
    value: *const SockInfo,
}

// SAFETY: the fields are BTF placeholders the loader reads from the object;
// no code dereferences them.
unsafe impl Sync for SockStorage {}

impl SockStorage {
    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        ptr::from_ref(self).cast_mut().cast()
    }
}

#[btf_map]
pub static SOCKS: SockStorage = SockStorage {
    r#type: ptr::null(),
    map_flags: ptr::null(),
    key: ptr::null(),
    value: ptr::null(),
};

/// Where BTF tracepoints cannot use socket storage (before Linux 5.11,
/// `FEATURE_SK_STORAGE` unset): the same [`SockInfo`], by kernel socket
/// address. An entry is made at a socket's first event and removed at its
/// transition to CLOSE, so a reused address starts afresh. Not an LRU map,
/// which would forget owners silently: a full map is counted instead
/// (`COUNTER_OWNER_FAILED`). Empty, and costing nothing, where socket
/// storage works.
#[map]
pub static OWNERS: HashMap<u64, SockInfo> =
    HashMap::with_max_entries(OWNERS_CAPACITY, BPF_F_NO_PREALLOC);

/// Without socket storage there is no `BPF_F_CLONE` to hand a listener's
/// owner to the connections it accepts: this map holds it instead, by
/// [`listening_key`], from CLOSE -> LISTEN to LISTEN -> CLOSE.
#[map]
pub static LISTENING: HashMap<u64, Owner> =
    HashMap::with_max_entries(LISTENING_CAPACITY, BPF_F_NO_PREALLOC);

/// The [`LISTENING`] key of a socket of `family` in namespace `netns`
/// bound to local `port` (host order).
#[inline(always)]
pub fn listening_key(netns: u32, family: u16, port: u16) -> u64 {
    (u64::from(netns) << 32) | (u64::from(family) << 16) | u64::from(port)
}

/// A connection's first transition (LISTEN -> SYN_RECV), held back where
/// the kernel reports it before the connection has its own identity: where
/// BTF tracepoints cannot assign cookies (the new socket still shows its
/// listener's), or where the kernel sets its addresses only after (5.10
/// does). Sent with the connection's next event, completed from it: same
/// time, same owner. By socket address; a full map sends it at once.
#[map]
pub static PENDING: HashMap<u64, StateRecord> =
    HashMap::with_max_entries(PENDING_CAPACITY, BPF_F_NO_PREALLOC);

/// Where the state program builds its record, off the stack: per CPU, one
/// slot per nesting depth (see [`Nesting`]).
#[map]
pub static SCRATCH: PerCpuArray<StateRecord> = PerCpuArray::with_max_entries(NEST_SLOTS, 0);

/// How the state program and its catcher share a CPU (see `state`).
#[repr(C)]
pub struct Nesting {
    /// Runs of the state program in progress on this CPU.
    pub depth: u32,
    /// `done[d]`: the state program ran to its end at depth `d` since the
    /// catcher last looked there.
    pub done: [u32; NEST_SLOTS as usize],
}

#[map]
pub static NESTING: PerCpuArray<Nesting> = PerCpuArray::with_max_entries(1, 0);

/// The start-up iterator's last task and its owner as read: the kernel
/// walks one task's descriptors in a row, so each task is read once.
#[repr(C)]
pub struct LastTask {
    pub task: u64,
    pub owner: Owner,
}

#[map]
pub static LAST_TASK: Array<LastTask> = Array::with_max_entries(1, 0);

/// Owners of just-accepted sockets, by kernel socket address, from
/// `accept(2)`'s exit (a plain tracepoint, which cannot reach socket
/// storage). The next BTF event on the socket moves the owner into its
/// storage and deletes the entry.
#[map]
pub static ACCEPTED: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(8192, 0);

/// Explicitly bound sockets that have not listened or connected yet, by
/// cookie, with where they are bound: `sock_release` reports the end of
/// these (a listener's end is its LISTEN -> CLOSE transition). Its context
/// cannot show the address, hence the copy. Not an LRU map, which would
/// forget the oldest silently: when it is full, a bind is counted instead
/// (`COUNTER_BOUND_FULL`). Every entry goes at the socket's release, which
/// always runs, so none outlives its socket.
#[map]
pub static BOUND: HashMap<u64, Bound> = HashMap::with_max_entries(65536, 0);

/// How many entries `BOUND` holds (one more while one is being added):
/// while none, as nearly always under connection churn, the programs
/// that would look there do not.
#[map]
pub static BOUND_ENTRIES: Array<u64> = Array::with_max_entries(1, 0);

/// Whether `BOUND` may hold entries.
#[inline(always)]
pub fn any_bound() -> bool {
    BOUND_ENTRIES.get(0).is_none_or(|&n| n != 0)
}

/// Counts `BOUND`'s entries up (1) or down (-1).
#[inline(always)]
pub fn count_bound(n: i64) {
    if let Some(slot) = BOUND_ENTRIES.get_ptr_mut(0) {
        add(slot, n as u64);
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bound {
    pub netns: u32,
    pub family: u16,
    pub protocol: u16,
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}

/// `socktrace timewait`'s counters. When full, new keys count in the
/// all-zero key, which the loader inserts first.
#[map]
pub static TALLIES: PerCpuHashMap<TallyKey, Tally> =
    PerCpuHashMap::with_max_entries(TALLIES_CAPACITY, 0);

/// Adds one to counter `index` in this CPU's row.
#[inline(always)]
pub fn bump(index: u32) {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(slot) = COUNTERS.get_ptr_mut(cpu * N_COUNTERS + index) {
        add(slot, 1);
    }
}

/// Adds `n` to `*counter` atomically: a program interrupted on this CPU
/// (a syscall's by a softirq's, the state program by its catcher) may add
/// to it meanwhile. `lock +=` (BPF_XADD) exists on every kernel; core's
/// atomics are not offered on this target.
#[inline(always)]
pub fn add(counter: *mut u64, n: u64) {
    // SAFETY: callers pass a pointer into a map value.
    unsafe {
        core::arch::asm!("lock *(u64 *)({counter} + 0) += {n}", counter = in(reg) counter, n = in(reg) n);
    }
}
