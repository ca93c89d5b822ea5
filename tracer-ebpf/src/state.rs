//! `inet_sock_set_state` as a BTF tracepoint: every TCP state transition,
//! IPv4 and IPv6, stamped with the socket's owner rather than whatever task
//! the CPU was running (often a softirq serving someone else's packet).
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_get_socket_cookie},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{
    IPPROTO_TCP, KIND_STATE, MODE_LISTENERS, MODE_STREAM, MODE_TALLY, ROLE_CLIENT, ROLE_SERVER,
    SOCK_PEER_FIN, SOCK_RST_RECEIVED, SOCK_RST_SENT, SOCK_TW_FULL, StateRecord,
};

use crate::{
    emit::{emit, header},
    field::cfg,
    filter::{owner_wanted, sock_wanted},
    maps::{CONFIG, SockInfo},
    owner::{claim, info, resolve},
    release::forget_bound,
    sock::{local_end, netns, optional, remote_end, tw_table_full},
    tally::count_close,
};

// include/net/tcp_states.h (UAPI-stable numbering)
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_FIN_WAIT2: i32 = 5;
const TCP_CLOSE: i32 = 7;
const TCP_CLOSE_WAIT: i32 = 8;
const TCP_LAST_ACK: i32 = 9;
const TCP_LISTEN: i32 = 10;
const TCP_CLOSING: i32 = 11;
// include/net/sock.h
const RCV_SHUTDOWN: u64 = 1;

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let sk: *mut c_void = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let _ = try_inet_sock_set_state(sk, old, new);
    0
}

/// Transitions only a system call on the socket makes: connect, listen,
/// close/shutdown. The current task is then certainly the owner.
#[inline(always)]
fn made_by_a_syscall(old: i32, new: i32) -> bool {
    (old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN))
        || new == TCP_FIN_WAIT1
        || (old == TCP_CLOSE_WAIT && new == TCP_LAST_ACK)
        || (old == TCP_LISTEN && new == TCP_CLOSE)
}

fn try_inet_sock_set_state(sk: *mut c_void, old: i32, new: i32) -> Result<(), i64> {
    let k = &CONFIG.kernel;
    let base = sk as *const u8;
    let mode = cfg(&CONFIG.mode);
    if mode & (MODE_STREAM | MODE_LISTENERS) != 0 && (new == TCP_LISTEN || new == TCP_SYN_SENT) {
        forget_bound(sk);
    }
    // Listeners: their start and their end, not the connections they
    // spawn (LISTEN -> SYN_RECV happens on each new connection).
    let stream = mode & MODE_STREAM != 0
        || (mode & MODE_LISTENERS != 0
            && (new == TCP_LISTEN || (old == TCP_LISTEN && new == TCP_CLOSE)));
    // Tallies need the starts (and the listener's owner, which accepted
    // connections inherit) and the ends.
    let tally = mode & MODE_TALLY != 0
        && (new == TCP_SYN_SENT
            || new == TCP_SYN_RECV
            || new == TCP_LISTEN
            || (new == TCP_CLOSE && old != TCP_LISTEN));
    if !(stream || tally) {
        return Ok(());
    }
    if !sock_wanted(base) {
        // A listener's owner is kept all the same: the connections it
        // accepts inherit it, and they may pass the filter.
        if old == TCP_CLOSE
            && new == TCP_LISTEN
            && let Some(info) = info(sk)
        {
            claim(info, sk);
        }
        return Ok(());
    }
    if !stream && new != TCP_CLOSE {
        // Tallies only: a start is marked on the socket, nothing is read.
        if let Some(info) = info(sk) {
            if made_by_a_syscall(old, new) {
                claim(info, sk);
            }
            // SAFETY: helper without preconditions.
            mark_start(info, new, unsafe { bpf_ktime_get_ns() });
        }
        return Ok(());
    }
    let local = local_end(base)?;
    if local.protocol != IPPROTO_TCP {
        return Ok(());
    }
    let mut daddr = [0u8; 16];
    let dport = remote_end(base, local.family, &mut daddr)?;
    let mut rec = StateRecord {
        header: header(KIND_STATE),
        netns: netns(base),
        saddr: local.addr,
        daddr,
        sport: local.port,
        dport,
        family: local.family,
        protocol: IPPROTO_TCP,
        old_state: old as u8,
        new_state: new as u8,
        ..StateRecord::default()
    };
    if stream {
        // SAFETY: `sk` is the tracepoint's trusted socket pointer.
        rec.cookie = unsafe { bpf_get_socket_cookie(sk) };
    }
    let (mut opened_ns, mut role, mut reported) = (0, 0, false);
    let mut storage = info(sk);
    if let Some(info) = storage.as_deref_mut() {
        if made_by_a_syscall(old, new) {
            claim(info, sk);
        }
        mark_start(info, new, rec.header.ts_ns);
        // Accepts hand owners over only where their hooks run (streaming).
        rec.owner = resolve(info, sk, mode & MODE_STREAM != 0);
        rec.flags = info.flags;
        (opened_ns, role, reported) = (info.opened_ns, info.role, info.reported != 0);
    }
    // Owner filters once the owner is known (the storage is up to date).
    // A socket reported before is reported at its end whoever owns it by
    // then (after an accept or a fork), so userspace stops following it;
    // its own filter leaves the record out.
    if !owner_wanted(&rec.owner) && !(reported && new == TCP_CLOSE) {
        return Ok(());
    }
    // How it ended: only a close needs these (userspace reads them there;
    // the tallies only whether a timewait socket took over).
    if new == TCP_CLOSE {
        if (old == TCP_FIN_WAIT2 || old == TCP_CLOSING) && tw_table_full(base) {
            rec.flags |= SOCK_TW_FULL;
        }
        if stream {
            rec.sk_err = optional(base, cfg(&k.sk_err)) as i32;
            if optional(base, cfg(&k.sk_shutdown)) & RCV_SHUTDOWN != 0 {
                rec.flags |= SOCK_PEER_FIN;
            }
            rec.bytes_acked = optional(base, cfg(&k.tcp_bytes_acked));
            rec.bytes_received = optional(base, cfg(&k.tcp_bytes_received));
        }
        if tally && old != TCP_LISTEN {
            let short = opened_ns != 0 && rec.header.ts_ns - opened_ns < cfg(&CONFIG.short_ns);
            count_close(&rec, role, enters_time_wait(old, rec.flags), short);
        }
    }
    if stream {
        if let Some(info) = storage {
            info.reported = 1;
        }
        emit(&rec);
    }
    Ok(())
}

/// Notes when and on which side a connection starts.
#[inline(always)]
fn mark_start(info: &mut SockInfo, new: i32, now_ns: u64) {
    if new == TCP_SYN_SENT || new == TCP_SYN_RECV {
        info.opened_ns = now_ns;
        info.role = if new == TCP_SYN_SENT {
            ROLE_CLIENT
        } else {
            ROLE_SERVER
        };
    }
}

/// Whether this close hands the connection to a timewait socket: from
/// FIN_WAIT2 or CLOSING, without a RST and with room in the kernel's table.
/// The timewait socket may start in its FIN_WAIT2 substate (we were
/// orphaned before the peer's FIN) and turns TIME_WAIT when that FIN comes.
/// Userspace's tracker decides the same from the same bits.
#[inline(always)]
fn enters_time_wait(old: i32, flags: u8) -> bool {
    (old == TCP_FIN_WAIT2 || old == TCP_CLOSING)
        && flags & (SOCK_RST_RECEIVED | SOCK_RST_SENT | SOCK_TW_FULL) == 0
}
