//! Every map and global the programs share, declared once.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{COUNTERS as N_COUNTERS, Config};

/// Layouts and tuning from the loader (`EbpfLoader::override_global`).
/// Read it only through [`crate::field::cfg`], which stops the compiler from
/// folding the placeholder zeros into the code.
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::ZERO;

/// Every record goes through this one ring. The loader may resize it.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU counters indexed by `tracer_common::COUNTER_*`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(N_COUNTERS, 0);

/// Arguments of a bind/listen in flight, by thread id, kept from syscall
/// entry to exit. LRU so a thread that never returns cannot fill it.
#[map]
pub static SYSCALL_ARGS: LruHashMap<u32, SyscallArgs> = LruHashMap::with_max_entries(16384, 0);

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

/// Adds one to counter `index` on this CPU.
#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no other writer runs on this CPU meanwhile.
        unsafe { *slot += 1 };
    }
}
