//! Record headers and the one way records leave the kernel.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
    },
};
use tracer_common::{COUNTER_RING_DROPS, Header};

use crate::{
    field::cfg,
    maps::{CONFIG, EVENTS, bump},
};

/// The header for a record of `kind`, stamped with the current task.
#[inline(always)]
pub fn header(kind: u32) -> Header {
    let pid_tgid = bpf_get_current_pid_tgid();
    Header {
        kind,
        _pad0: 0,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        _pad1: 0,
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// Copies `record` into the ring, or counts it as dropped.
///
/// The reader is woken only when enough bytes wait (`wakeup_bytes`); its
/// timer collects smaller batches. One wakeup per record would cost more
/// than everything else the tracer does.
#[inline(always)]
pub fn emit<T>(record: &T) {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA.into()) + size_of::<T>() as u64;
    let flags = if pending >= cfg(&CONFIG.wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<T>(record, flags.into()).is_err() {
        bump(COUNTER_RING_DROPS);
    }
}
