//! Record headers and the one way records leave the kernel.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use tracer_common::{COUNTER_EMITTED, COUNTER_RING_DROPS, Header};

use crate::{
    field::cfg,
    maps::{CONFIG, DOZE, EVENTS, bump},
};

/// The header for a record of `kind`, stamped now.
#[inline(always)]
pub fn header(kind: u32) -> Header {
    Header {
        kind,
        _pad: 0,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Copies `record` into the ring, or counts it as dropped; either way it
/// counts as emitted (it passed the filters).
///
/// The reader is woken only when enough bytes wait (`wakeup_bytes`), or
/// when it said it sleeps (`DOZE`: nothing came for a while); while
/// records flow its timer collects smaller batches. One wakeup per record
/// would cost more than everything else the tracer does.
#[inline(always)]
pub fn emit<T>(record: &T) {
    bump(COUNTER_EMITTED);
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA.into()) + size_of::<T>() as u64;
    let dozing = DOZE.get(0).is_some_and(|&asleep| asleep != 0);
    let flags = if dozing || pending >= cfg(&CONFIG.wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<T>(record, flags.into()).is_err() {
        bump(COUNTER_RING_DROPS);
    }
}
