//! `socktrace timewait`: connection ends counted in the kernel by owner and
//! destination, so a busy host streams nothing per connection.
use aya_ebpf::bindings::BPF_NOEXIST;
use tracer_common::{
    COUNTER_TALLY_OVERFLOW, EEXIST, KIND_TALLY, MODE_TALLY_RING, StateRecord, Tally, TallyKey,
    TallyRecord, service_port,
};

use crate::{
    emit::{emit, header},
    field::cfg,
    maps::{CONFIG, TALLIES, add, bump},
};

/// Counts the close `rec` of a connection whose side was `role`.
#[inline(always)]
pub fn count_close(rec: &StateRecord, role: u8, time_wait: bool, short: bool) {
    let key = TallyKey {
        netns: rec.netns,
        pid: rec.owner.pid,
        family: rec.family,
        role,
        port: service_port(role, rec.sport, rec.dport),
        laddr: rec.saddr,
        raddr: rec.daddr,
        ..TallyKey::default()
    };
    if cfg(&CONFIG.mode) & MODE_TALLY_RING != 0 {
        emit(&TallyRecord {
            header: header(KIND_TALLY),
            key,
            comm: rec.owner.comm,
            time_wait: time_wait.into(),
            short: short.into(),
            _pad: [0; 6],
        });
        return;
    }
    let Some(tally) = slot(&key, rec) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU map value. The state program's
    // catcher may count on it meanwhile (so atomic adds), and leave its
    // own owner's name (either is the key's process).
    let tally = unsafe { &mut *tally };
    add(&raw mut tally.closes, 1);
    add(&raw mut tally.time_waits, u64::from(time_wait));
    add(&raw mut tally.short, u64::from(short));
    tally.comm = rec.owner.comm;
}

/// The counters for `key`, created if new; the overflow row when the map
/// is full. Per CPU; userspace sums.
#[inline(always)]
fn slot(key: &TallyKey, rec: &StateRecord) -> Option<*mut Tally> {
    if let Some(p) = TALLIES.get_ptr_mut(key) {
        return Some(p);
    }
    let fresh = Tally {
        comm: rec.owner.comm,
        ..Tally::default()
    };
    match TALLIES.insert(key, fresh, BPF_NOEXIST.into()) {
        Ok(()) => TALLIES.get_ptr_mut(key),
        Err(e) if e == -EEXIST => TALLIES.get_ptr_mut(key), // another CPU was first
        Err(_) => {
            bump(COUNTER_TALLY_OVERFLOW);
            TALLIES.get_ptr_mut(TallyKey::default())
        }
    }
}
