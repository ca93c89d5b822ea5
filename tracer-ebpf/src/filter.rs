//! Filters decided in the kernel, first thing in every program: an event
//! the user filtered out costs a couple of loads.
use tracer_common::MAX_FILTER_PORTS;

use crate::{
    field::{cfg, uint},
    maps::CONFIG,
};

/// Whether a socket with these ports (host order) is to be reported.
#[inline(always)]
pub fn ports_wanted(local: u16, remote: u16) -> bool {
    let n = cfg(&CONFIG.filter_ports_len) as usize;
    if n == 0 {
        return true;
    }
    for i in 0..MAX_FILTER_PORTS {
        if i >= n {
            break;
        }
        let port = cfg(&CONFIG.filter_ports[i]);
        if port == local || port == remote {
            return true;
        }
    }
    false
}

/// Whether socket `sk` is to be reported; reads nothing without a filter.
#[inline(always)]
pub fn sock_wanted(sk: *const u8) -> bool {
    if cfg(&CONFIG.filter_ports_len) == 0 {
        return true;
    }
    let k = &CONFIG.kernel;
    let port = |field| u16::from_be(uint(sk, cfg(field)).unwrap_or(0) as u16);
    ports_wanted(port(&k.sk_sport), port(&k.sk_dport))
}
