//! The user's filters, decided in the kernel before any record is built:
//! an event filtered out costs a few loads. Socket filters (ports, family,
//! protocol) come first in every program; owner filters (pid, uid) once
//! the socket's owner is known. An unknown owner passes: userspace may
//! still learn it (from its start-up snapshot) and decides then.
use tracer_common::{
    AF_INET, AF_INET6, FAMILY_IPV4, FAMILY_IPV6, IPPROTO_TCP, IPPROTO_UDP, OWNER_UNKNOWN, Owner,
    PROTO_TCP, PROTO_UDP, ValueSet,
};

use crate::{
    field::{cfg, uint},
    maps::CONFIG,
};

/// Whether `value` is in `set`; an empty set holds every value.
#[inline(always)]
fn has<T: Copy + PartialEq, const N: usize>(set: &ValueSet<T, N>, value: T) -> bool {
    let n = cfg(&set.len) as usize;
    if n == 0 {
        return true;
    }
    for i in 0..N {
        if i >= n {
            break;
        }
        if cfg(&set.values[i]) == value {
            return true;
        }
    }
    false
}

/// Whether `bit` is in `mask`; a zero mask holds everything.
#[inline(always)]
fn bit_in(mask: u32, bit: u32) -> bool {
    mask == 0 || mask & bit != 0
}

/// Whether a socket of `family` and `protocol` with these ports (host
/// order; `remote` 0 for a socket without a peer) is to be reported.
#[inline(always)]
pub fn wanted(family: u16, protocol: u16, local: u16, remote: u16) -> bool {
    let f = &CONFIG.filter;
    let family_bit = match family {
        AF_INET => FAMILY_IPV4,
        AF_INET6 => FAMILY_IPV6,
        _ => 0,
    };
    let protocol_bit = match protocol {
        IPPROTO_TCP => PROTO_TCP,
        IPPROTO_UDP => PROTO_UDP,
        _ => 0,
    };
    bit_in(cfg(&f.families), family_bit)
        && bit_in(cfg(&f.protocols), protocol_bit)
        && (has(&f.ports, local) || has(&f.ports, remote))
        && has(&f.sports, local)
        && has(&f.dports, remote)
}

/// Whether socket `sk` is to be reported; reads only what the socket
/// filters look at (nothing without one).
#[inline(always)]
pub fn sock_wanted(sk: *const u8) -> bool {
    let f = &CONFIG.filter;
    let by_port = cfg(&f.ports.len) | cfg(&f.sports.len) | cfg(&f.dports.len) != 0;
    let by_kind = cfg(&f.families) | cfg(&f.protocols) != 0;
    if !by_port && !by_kind {
        return true;
    }
    let k = &CONFIG.kernel;
    // A filter that is not set holds every value: 0 will do for what it
    // would have read.
    let read = |wanted: bool, field| {
        if wanted {
            uint(sk, cfg(field)).unwrap_or(0)
        } else {
            0
        }
    };
    wanted(
        read(by_kind, &k.sk_family) as u16,
        read(by_kind, &k.sk_protocol) as u16,
        u16::from_be(read(by_port, &k.sk_sport) as u16),
        u16::from_be(read(by_port, &k.sk_dport) as u16),
    )
}

/// Whether a socket owned by `owner` is to be reported.
#[inline(always)]
pub fn owner_wanted(owner: &Owner) -> bool {
    let f = &CONFIG.filter;
    owner.source == OWNER_UNKNOWN || (has(&f.pids, owner.pid) && has(&f.uids, owner.uid))
}
