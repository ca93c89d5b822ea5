//! Events that tell us who uses a socket, or how it ends: a task sending or
//! receiving on it owns it; a reset sent or received (and the kernel's
//! reason for one sent) explains its close.
use core::ffi::c_void;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    IPPROTO_TCP, KIND_RESET, MODE_STREAM, ResetRecord, SOCK_RST_RECEIVED, SOCK_RST_SENT, TCP_CLOSE,
    TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT,
};

use crate::{
    emit::{emit, header},
    field::{cfg, uint},
    filter::sock_wanted,
    maps::CONFIG,
    owner::{claim_if_new, info},
    sock::cookie,
};

/// Whether `sk` is a full TCP socket that has not closed: send/recv fire
/// for every family, and a reset may be sent on behalf of a timewait or
/// request mini-socket, or after the close (`tcp_close` with unread data
/// closes, then resets). A closed socket's record is out already; marking
/// it would, without socket storage, leave an `OWNERS` entry behind at its
/// address for the next socket there.
#[inline(always)]
fn is_tcp(sk: *mut c_void) -> bool {
    let k = &CONFIG.kernel;
    let base = sk as *const u8;
    !sk.is_null()
        && sock_wanted(base)
        // Mini-sockets without the full `struct sock`, and the end.
        && uint(base, cfg(&k.sk_state)).is_ok_and(|state| {
            !matches!(
                u8::try_from(state),
                Ok(TCP_TIME_WAIT | TCP_CLOSE | TCP_NEW_SYN_RECV)
            )
        })
        && uint(base, cfg(&k.sk_protocol)) == Ok(IPPROTO_TCP as u64)
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> u32 {
    claim_user(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> u32 {
    claim_user(ctx.arg(0));
    0
}

#[inline(always)]
fn claim_user(sk: *mut c_void) {
    if is_tcp(sk)
        && let Some(info) = info(sk)
    {
        claim_if_new(info, sk);
    }
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> u32 {
    mark(ctx.arg(0), SOCK_RST_RECEIVED);
    0
}

/// Where the kernel gives no reason (before Linux 6.10): the loader loads
/// this one or [`tcp_send_reset_reason`], by the tracepoint's arguments.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> u32 {
    // sk is NULL for a reset answering a segment no socket wanted.
    mark(ctx.arg(0), SOCK_RST_SENT);
    0
}

/// Where the kernel says why it resets (a third argument, `enum
/// sk_rst_reason`): the reason goes to userspace in a record of its own,
/// since most resets follow the socket's close, whose record is out.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset_reason(ctx: BtfTracePointContext) -> u32 {
    let sk: *mut c_void = ctx.arg(0);
    mark(sk, SOCK_RST_SENT);
    let reason: u64 = ctx.arg(2);
    if cfg(&CONFIG.mode) & MODE_STREAM != 0 {
        report_reset(sk, reason as u32);
    }
    0
}

/// Sends the reason of a reset `sk` sent, if `sk` is a connection the
/// filters want (not a listener, timewait or request mini-socket:
/// userspace follows none of theirs).
#[inline(always)]
fn report_reset(sk: *mut c_void, reason: u32) {
    let k = &CONFIG.kernel;
    let base = sk as *const u8;
    if sk.is_null() || !sock_wanted(base) {
        return;
    }
    let Ok(Ok(state)) = uint(base, cfg(&k.sk_state)).map(u8::try_from) else {
        return;
    };
    if matches!(state, TCP_LISTEN | TCP_TIME_WAIT | TCP_NEW_SYN_RECV)
        || uint(base, cfg(&k.sk_protocol)) != Ok(IPPROTO_TCP as u64)
    {
        return;
    }
    emit(&ResetRecord {
        header: header(KIND_RESET),
        cookie: cookie(sk),
        reason,
        state,
        _pad: [0; 3],
    });
}

#[inline(always)]
fn mark(sk: *mut c_void, flag: u8) {
    if is_tcp(sk)
        && let Some(info) = info(sk)
    {
        info.flags |= flag;
    }
}
