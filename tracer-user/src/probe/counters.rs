//! The programs' counters, read from memory: `COUNTERS` is an mmap-able
//! array with one row of `tracer_common::COUNTERS` slots per CPU, mapped
//! once at attach. Reading it is no system call, so it keeps working after
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

pub struct Counters {
    /// Keeps the map alive while it is mapped.
    _map: MapData,
    base: NonNull<u64>,
    /// Slots mapped: CPUs x `COUNTERS`.
    slots: usize,
    bytes: usize,
}

// SAFETY: a read-only shared mapping; the kernel writes it, we only read.
unsafe impl Send for Counters {}

impl Counters {
    /// Maps `map`, an array of `cpus` x `COUNTERS` u64 slots made with
    /// `BPF_F_MMAPABLE`.
    pub fn map(map: MapData, cpus: usize) -> io::Result<Counters> {
        let slots = cpus * COUNTERS as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (slots * size_of::<u64>()).div_ceil(page) * page;
        // SAFETY: a new shared read-only mapping of the map's fd; the
        // kernel checks the length against the map.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Counters {
            _map: map,
            base,
            slots,
            bytes,
        })
    }

    /// Counter `index` (`tracer_common::COUNTER_*`), summed over CPUs.
    pub fn sum(&self, index: u32) -> u64 {
        (index as usize..self.slots)
            .step_by(COUNTERS as usize)
            // SAFETY: in bounds of the mapping; the kernel updates slots
            // atomically, and aligned u64 reads do not tear.
            .map(|slot| unsafe { self.base.as_ptr().add(slot).read_volatile() })
            .sum()
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
