//! What the programs and the reader share through memory: `COUNTERS`,
//! an mmap-able array with one row of `tracer_common::COUNTERS` slots per
//! CPU, and `DOZE`, the reader's word that it sleeps. Each is mapped once
//! at attach. Using them is no system call, so they keep working after
//! socktrace gives up its capabilities, also on kernels (before 6.5) that
//! refuse every bpf(2) command to an unprivileged caller while
//! `kernel.unprivileged_bpf_disabled` is set, as distributions set it.
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;
use tracer_common::COUNTERS;

/// A `BPF_F_MMAPABLE` array of u64 slots, mapped shared.
struct Mapped {
    /// Keeps the map alive while it is mapped.
    _map: MapData,
    base: NonNull<u64>,
    slots: usize,
    bytes: usize,
}

// SAFETY: a shared mapping of kernel memory; every access is a volatile,
// aligned u64 read or write, which the kernel's side makes atomically too.
unsafe impl Send for Mapped {}

impl Mapped {
    /// Maps the first `slots` slots of `map`, for writing too if `write`.
    fn new(map: MapData, slots: usize, write: bool) -> io::Result<Mapped> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (slots * size_of::<u64>()).div_ceil(page) * page;
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of the map's fd; the kernel checks
        // the length against the map.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapped {
            _map: map,
            base,
            slots,
            bytes,
        })
    }

    fn read(&self, slot: usize) -> u64 {
        assert!(slot < self.slots);
        // SAFETY: in bounds of the mapping (checked); aligned u64 reads do
        // not tear.
        unsafe { self.base.as_ptr().add(slot).read_volatile() }
    }

    fn write(&self, slot: usize, value: u64) {
        assert!(slot < self.slots);
        // SAFETY: in bounds of a mapping made writable (`Doze` only).
        unsafe { self.base.as_ptr().add(slot).write_volatile(value) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

pub struct Counters(Mapped);

impl Counters {
    /// Maps `map`, an array of `cpus` x `COUNTERS` u64 slots made with
    /// `BPF_F_MMAPABLE`.
    pub fn map(map: MapData, cpus: usize) -> io::Result<Counters> {
        Ok(Counters(Mapped::new(map, cpus * COUNTERS as usize, false)?))
    }

    /// Counter `index` (`tracer_common::COUNTER_*`), summed over CPUs.
    pub fn sum(&self, index: u32) -> u64 {
        (index as usize..self.0.slots)
            .step_by(COUNTERS as usize)
            .map(|slot| self.0.read(slot))
            .sum()
    }
}

/// The reader's word to the programs that it sleeps with the ring empty:
/// while it is set, every record wakes it (see `emit` in tracer-ebpf).
pub struct Doze(Mapped);

impl Doze {
    /// Maps `map`, `DOZE`: one u64 slot made with `BPF_F_MMAPABLE`.
    pub fn map(map: MapData) -> io::Result<Doze> {
        Ok(Doze(Mapped::new(map, 1, true)?))
    }

    pub fn set(&self, asleep: bool) {
        self.0.write(0, asleep.into());
    }
}
