//! The end of explicitly bound sockets that never listened nor connected
//! (UDP servers, TCP binds without `listen`): no TCP transition marks it,
//! so `cgroup/sock_release` does, in the closing task's context.
use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock,
    programs::SockContext,
};
use tracer_common::{KIND_RELEASE, ReleaseRecord};

use crate::{
    emit::{emit, header},
    filter::{owner_wanted, wanted},
    maps::{BOUND, any_bound, count_bound},
    owner::current,
    sock::cookie,
};

#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    if !any_bound() {
        return 1;
    }
    // SAFETY: a cgroup/sock program's context is the socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied before the entry is removed.
    let Some(bound) = (unsafe { BOUND.get(cookie) }).copied() else {
        return 1;
    };
    if BOUND.remove(cookie).is_ok() {
        count_bound(-1);
    }
    let owner = current();
    if !wanted(bound.family, bound.protocol, bound.port, 0) || !owner_wanted(&owner) {
        return 1;
    }
    let rec = ReleaseRecord {
        header: header(KIND_RELEASE),
        owner,
        cookie,
        netns: bound.netns,
        addr: bound.addr,
        family: bound.family,
        protocol: bound.protocol,
        port: bound.port,
        ..ReleaseRecord::default()
    };
    emit(&rec);
    1 // allow: we only watch
}

/// `sk` listens or connects from now on: its end is a TCP transition.
#[inline(always)]
pub fn forget_bound(sk: *mut c_void) {
    if any_bound() && BOUND.remove(cookie(sk)).is_ok() {
        count_bound(-1);
    }
}
