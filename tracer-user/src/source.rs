//! The ring buffer as a stream of raw records, and the kernel's loss
//! counters. The kernel wakes us only for large batches (see `emit` in
//! tracer-ebpf), so callers also drain on a short timer.
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{
    COUNTER_BOUND_FULL, COUNTER_CAUGHT, COUNTER_EMITTED, COUNTER_OWNER_FAILED, COUNTER_RING_DROPS,
    COUNTER_TALLY_OVERFLOW, COUNTER_TOO_DEEP, COUNTER_UNPAIRED,
};

use crate::probe::{self, Counters, Doze};

pub struct Source {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: Counters,
    doze: Doze,
    /// `Probe::catcher_wanted`.
    catcher_wanted: bool,
}

/// Totals of the kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Records the kernel tried to put in the ring (delivered, or dropped
    /// and counted in `ring_drops`): what passed its filters.
    pub emitted: u64,
    /// Records the kernel could not put in the ring (it was full).
    pub ring_drops: u64,
    /// bind/listen exits whose entry was not seen (in flight at start).
    pub unpaired: u64,
    /// Sockets whose owner storage could not be allocated.
    pub owner_failed: u64,
    /// `timewait` counts that went to the overflow row (its map was full).
    pub tally_overflow: u64,
    /// Bound sockets whose end could not be followed (`BOUND` was full).
    pub bound_full: u64,
    /// Times a program of ours did not run because another BPF program was
    /// running on that CPU (from the kernel's program statistics).
    pub recursion_misses: u64,
}

impl Source {
    pub fn new(
        ring: RingBuf<MapData>,
        counters: Counters,
        doze: Doze,
        catcher_wanted: bool,
    ) -> io::Result<Source> {
        // SAFETY: the RingBuf owns its map fd, keeps it open until it is
        // dropped and never swaps it, as `register` requires.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Source {
            ring,
            counters,
            doze,
            catcher_wanted,
        })
    }

    /// Tells the programs that we sleep until woken (`true`: every record
    /// wakes us then) or that we drain on a timer again (`false`).
    pub fn doze(&self, asleep: bool) {
        self.doze.set(asleep);
    }

    /// Resolves when the kernel has woken us.
    pub async fn woken(&mut self) -> io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Hands every waiting record to `f`; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Events lost to runs of `programs` (whose counters these are) that
    /// the kernel skipped: `KernelCounters::recursion_misses`.
    pub fn skipped_runs(&self, programs: &aya::Ebpf) -> u64 {
        let misses = probe::recursion_misses_but_caught(programs, self.catcher_wanted);
        let caught = self.counters.sum(COUNTER_CAUGHT);
        misses.saturating_sub(caught) + self.counters.sum(COUNTER_TOO_DEEP)
    }

    /// Our counters; `recursion_misses` is left for the caller to fill.
    pub fn counters(&self) -> KernelCounters {
        let sum = |index| self.counters.sum(index);
        KernelCounters {
            emitted: sum(COUNTER_EMITTED),
            ring_drops: sum(COUNTER_RING_DROPS),
            unpaired: sum(COUNTER_UNPAIRED),
            owner_failed: sum(COUNTER_OWNER_FAILED),
            tally_overflow: sum(COUNTER_TALLY_OVERFLOW),
            bound_full: sum(COUNTER_BOUND_FULL),
            recursion_misses: 0,
        }
    }
}
