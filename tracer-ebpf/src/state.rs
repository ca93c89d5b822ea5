//! `inet_sock_set_state` as a BTF tracepoint: every TCP state transition,
//! IPv4 and IPv6, stamped with the socket's owner rather than whatever task
//! the CPU was running (often a softirq serving someone else's packet).
use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    COUNTER_CAUGHT, COUNTER_TOO_DEEP, FEATURE_COOKIE, IPPROTO_TCP, KIND_STATE, MODE_LISTENERS,
    MODE_STREAM, MODE_TALLY, OWNER_UNKNOWN, ROLE_CLIENT, ROLE_SERVER, SOCK_PEER_FIN,
    SOCK_TCP_STATS, SOCK_TW_FULL, StateRecord, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED,
    TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, closes_towards_time_wait,
    enters_time_wait,
};

use crate::{
    emit::{emit, header},
    field::cfg,
    field::uint,
    filter::{owner_wanted, sock_wanted},
    maps::{CONFIG, NESTING, Nesting, PENDING, SCRATCH, SockInfo, bump, listening_key},
    owner::{born, claim, forget, info, inherit, listening, not_listening, resolve},
    release::forget_bound,
    sock::{cookie, local_end, netns, optional, remote_end, tw_table_full},
    tally::count_close,
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let Some(nesting) = nesting() else {
        return 0;
    };
    let depth = nesting.depth;
    let Some(done) = nesting.done.get_mut(depth as usize) else {
        bump(COUNTER_TOO_DEEP);
        return 0;
    };
    *done = 0;
    nesting.depth = depth + 1;
    transition(&ctx, depth);
    // Marked before `depth` is put back, so that a transition interrupting
    // in between finds the depth it would have found during the run.
    *done = 1;
    nesting.depth = depth;
    0
}

/// The state program's catcher, attached after it to the same tracepoint.
/// The kernel skips a BTF tracepoint program that is already running on
/// the CPU, and counts it as a recursion miss: a transition in a
/// softirq that interrupted the state program (a task's connect, close,
/// listen) would be lost. The catcher is a program of its own, so it
/// runs then, and it does the state program's work for that transition;
/// the rest of the time it finds the state program not running and does
/// nothing. Where the kernel lets the state program interrupt itself, the
/// state program marks that it ran at that depth and the catcher leaves
/// the transition to it.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_catcher(ctx: BtfTracePointContext) -> u32 {
    let Some(nesting) = nesting() else {
        return 0;
    };
    let depth = nesting.depth;
    if depth == 0 {
        return 0;
    }
    let Some(done) = nesting.done.get_mut(depth as usize) else {
        return 0; // counted by the state program
    };
    if *done != 0 {
        *done = 0;
        return 0;
    }
    bump(COUNTER_CAUGHT);
    transition(&ctx, depth);
    0
}

/// This CPU's [`Nesting`].
#[inline(always)]
fn nesting() -> Option<&'static mut Nesting> {
    let p = NESTING.get_ptr_mut(0)?;
    // SAFETY: this CPU's value. Programs that interrupt each other on it
    // finish before the one they interrupted resumes, and each leaves
    // `depth` as it found it.
    Some(unsafe { &mut *p })
}

/// One transition, its record built in scratch slot `depth`.
#[inline(always)]
fn transition(ctx: &BtfTracePointContext, depth: u32) {
    let sk: *mut c_void = ctx.arg(0);
    // `int` states (`TCP_*`, all below 256).
    let old = ctx.arg::<i32>(1) as u8;
    let new = ctx.arg::<i32>(2) as u8;
    if first_of_a_life(old, new) {
        born(sk);
    }
    let _ = try_inet_sock_set_state(sk, old, new, depth);
    if new == TCP_CLOSE {
        if old == TCP_LISTEN {
            not_listening(|| listener_key(sk));
        }
        forget(sk);
    }
}

/// Where `sk` (a listener, or a connection cloned from one) is found in
/// `LISTENING`: namespace, family, local port.
#[inline(always)]
fn listener_key(sk: *mut c_void) -> u64 {
    let k = &CONFIG.kernel;
    let base = sk as *const u8;
    let read = |field| uint(base, cfg(field)).unwrap_or(0);
    listening_key(
        netns(base),
        read(&k.sk_family) as u16,
        u16::from_be(read(&k.sk_sport) as u16),
    )
}

/// What every transition teaches about `sk`'s owner: the caller of a
/// system call owns it; a listener's owner is kept for the connections it
/// accepts, which start with it.
#[inline(always)]
fn learn_owner(info: &mut SockInfo, sk: *mut c_void, old: u8, new: u8) {
    if made_by_a_syscall(old, new) {
        claim(info, sk);
        if old == TCP_CLOSE && new == TCP_LISTEN {
            listening(|| listener_key(sk), &info.owner);
        }
    } else if cloned(old, new) || (old == TCP_SYN_RECV && info.owner.source == OWNER_UNKNOWN) {
        // A new connection, seen from its first event, or from its second
        // where a port filter could not judge the first (5.10 sets the
        // peer's port only after it).
        inherit(info, || listener_key(sk));
    }
}

/// A socket's first transition: it connects or listens, or it is a
/// connection cloned from its listener.
#[inline(always)]
fn first_of_a_life(old: u8, new: u8) -> bool {
    opens(old, new) || cloned(old, new)
}

/// A connect or listen from CLOSE.
#[inline(always)]
fn opens(old: u8, new: u8) -> bool {
    old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN)
}

/// A connection's first event, cloned from its listener.
#[inline(always)]
fn cloned(old: u8, new: u8) -> bool {
    old == TCP_LISTEN && new == TCP_SYN_RECV
}

/// Transitions only a system call on the socket makes: connect, listen,
/// close/shutdown. The current task is then certainly the owner.
#[inline(always)]
fn made_by_a_syscall(old: u8, new: u8) -> bool {
    opens(old, new)
        || new == TCP_FIN_WAIT1
        || (old == TCP_CLOSE_WAIT && new == TCP_LAST_ACK)
        || (old == TCP_LISTEN && new == TCP_CLOSE)
}

fn try_inet_sock_set_state(sk: *mut c_void, old: u8, new: u8, depth: u32) -> Result<(), i64> {
    let base = sk as *const u8;
    let mode = cfg(&CONFIG.mode);
    if mode & (MODE_STREAM | MODE_LISTENERS) != 0 && (new == TCP_LISTEN || new == TCP_SYN_SENT) {
        forget_bound(sk);
    }
    let wants = Wants::of(mode, old, new);
    if !(wants.stream || wants.tally) {
        return Ok(());
    }
    if !sock_wanted(base) {
        keep_listener_owner(sk, old, new);
        return Ok(());
    }
    if !wants.stream && new != TCP_CLOSE {
        mark_for_tally(sk, old, new);
        return Ok(());
    }
    let Some(rec) = record(sk, old, new, depth, wants.stream)? else {
        return Ok(());
    };
    let mut storage = info(sk);
    let seen = stamp_owner(rec, storage.as_deref_mut(), sk, old, new, mode);
    // Owner filters once the owner is known (the storage is up to date).
    // A socket reported before is reported at its end whoever owns it by
    // then (after an accept or a fork), so userspace stops following it;
    // its own filter leaves the record out.
    if !owner_wanted(&rec.owner) && !(seen.reported && new == TCP_CLOSE) {
        return Ok(());
    }
    if new == TCP_CLOSE {
        close_details(rec, base, old, wants.stream);
        if wants.tally && old != TCP_LISTEN {
            tally_close(rec, &seen, old);
        }
    }
    if wants.stream {
        if new == TCP_ESTABLISHED || (new == TCP_CLOSE && old != TCP_LISTEN) {
            tcp_stats(rec, base);
        }
        report(sk, rec, storage, old, new);
    }
    Ok(())
}

/// What the mode (`MODE_*`) wants of one transition.
struct Wants {
    /// Its record, streamed to userspace.
    stream: bool,
    /// It counted in the tallies.
    tally: bool,
}

impl Wants {
    #[inline(always)]
    fn of(mode: u32, old: u8, new: u8) -> Wants {
        Wants {
            // Listeners: their start and their end, not the connections
            // they spawn (LISTEN -> SYN_RECV happens on each new one).
            stream: mode & MODE_STREAM != 0
                || (mode & MODE_LISTENERS != 0
                    && (new == TCP_LISTEN || (old == TCP_LISTEN && new == TCP_CLOSE))),
            // Tallies need the starts (and the listener's owner, which
            // accepted connections inherit), the calls that close (the
            // process holding the socket then owns its TIME_WAIT) and the
            // ends.
            tally: mode & MODE_TALLY != 0
                && (new == TCP_SYN_SENT
                    || new == TCP_SYN_RECV
                    || made_by_a_syscall(old, new)
                    || (new == TCP_CLOSE && old != TCP_LISTEN)),
        }
    }
}

/// A socket the filters leave out: a listener's owner is kept all the
/// same, since the connections it accepts inherit it, and they may pass.
#[inline(always)]
fn keep_listener_owner(sk: *mut c_void, old: u8, new: u8) {
    if old == TCP_CLOSE
        && new == TCP_LISTEN
        && let Some(info) = info(sk)
    {
        learn_owner(info, sk, old, new);
    }
}

/// Tallies only, a start or a closing call: marked on the socket, nothing
/// is read. An accept's hand-over comes first, so a later close by another
/// process counts for that one.
#[inline(always)]
fn mark_for_tally(sk: *mut c_void, old: u8, new: u8) {
    if let Some(info) = info(sk) {
        resolve(info, sk, true);
        learn_owner(info, sk, old, new);
        // SAFETY: helper without preconditions.
        mark_start(info, new, unsafe { bpf_ktime_get_ns() });
    }
}

/// The record of this transition of `sk`, with the socket's identity,
/// built in scratch slot `depth`; `None` for a socket that is not TCP.
/// The cookie only for a record that is streamed.
#[inline(always)]
fn record(
    sk: *mut c_void,
    old: u8,
    new: u8,
    depth: u32,
    stream: bool,
) -> Result<Option<&'static mut StateRecord>, i64> {
    let base = sk as *const u8;
    let local = local_end(base)?;
    if local.protocol != IPPROTO_TCP {
        return Ok(None);
    }
    // Built in a per-CPU scratch slot, not on the stack: the verifier
    // allows 512 bytes for all frames, and kernels before 6.12 count more
    // of them than the code uses.
    let rec = SCRATCH.get_ptr_mut(depth).ok_or(0)?;
    // SAFETY: this CPU's slot at this depth: no other run uses it.
    let rec = unsafe { &mut *rec };
    *rec = StateRecord::default();
    rec.header = header(KIND_STATE);
    rec.netns = netns(base);
    rec.saddr = local.addr;
    rec.sport = local.port;
    rec.family = local.family;
    rec.protocol = IPPROTO_TCP;
    rec.old_state = old;
    rec.new_state = new;
    rec.dport = remote_end(base, local.family, &mut rec.daddr)?;
    if stream {
        rec.cookie = cookie(sk);
    }
    Ok(Some(rec))
}

/// What a socket's storage says of its connection, for the close.
struct Seen {
    /// `SockInfo::opened_ns`.
    opened_ns: u64,
    /// `SockInfo::role`.
    role: u8,
    /// An event of the socket went to userspace before.
    reported: bool,
}

/// Stamps `rec`, `sk`'s transition `old` -> `new`, with the owner and the
/// marks `info` (`sk`'s storage, if it has any) holds, after what this
/// transition teaches.
#[inline(always)]
fn stamp_owner(
    rec: &mut StateRecord,
    info: Option<&mut SockInfo>,
    sk: *mut c_void,
    old: u8,
    new: u8,
    mode: u32,
) -> Seen {
    let Some(info) = info else {
        return Seen {
            opened_ns: 0,
            role: 0,
            reported: false,
        };
    };
    learn_owner(info, sk, old, new);
    mark_start(info, new, rec.header.ts_ns);
    // Accepts hand owners over where their hooks run (not listeners).
    rec.owner = resolve(info, sk, mode & (MODE_STREAM | MODE_TALLY) != 0);
    rec.flags = info.flags;
    Seen {
        opened_ns: info.opened_ns,
        role: info.role,
        reported: info.reported != 0,
    }
}

/// How a connection ended, into its close record `rec` (from `old`; `base`
/// is its socket): userspace reads these at the close only, the tallies only
/// whether a timewait socket took over.
#[inline(always)]
fn close_details(rec: &mut StateRecord, base: *const u8, old: u8, stream: bool) {
    let k = &CONFIG.kernel;
    if closes_towards_time_wait(old) && tw_table_full(base) {
        rec.flags |= SOCK_TW_FULL;
    }
    if stream {
        rec.sk_err = optional(base, cfg(&k.sk_err)) as i32;
        if (optional(base, cfg(&k.sk_flags)) >> cfg(&CONFIG.sock_done)) & 1 != 0 {
            rec.flags |= SOCK_PEER_FIN;
        }
        rec.bytes_acked = optional(base, cfg(&k.tcp_bytes_acked));
        rec.bytes_received = optional(base, cfg(&k.tcp_bytes_received));
    }
}

/// The connection's RTT and retransmits so far, into `rec` (`base` is its
/// socket), where this kernel has them. At ESTABLISHED they are the
/// handshake's: a passive open's RTT is then its SYN-ACK's round trip.
#[inline(always)]
fn tcp_stats(rec: &mut StateRecord, base: *const u8) {
    let k = &CONFIG.kernel;
    let (srtt, mdev, retrans) = (
        cfg(&k.tcp_srtt_us),
        cfg(&k.tcp_mdev_us),
        cfg(&k.tcp_total_retrans),
    );
    if srtt.size == 0 || mdev.size == 0 || retrans.size == 0 {
        return;
    }
    // `srtt_us` holds 8 times the smoothed RTT, `mdev_us` 4 times its
    // deviation (`tcp_get_info` shifts them so for `ss`).
    rec.srtt_us = (optional(base, srtt) >> 3) as u32;
    rec.rttvar_us = (optional(base, mdev) >> 2) as u32;
    rec.total_retrans = optional(base, retrans) as u32;
    rec.flags |= SOCK_TCP_STATS;
}

/// Counts the connection that the close `rec` (from `old`) ends in the
/// tallies.
#[inline(always)]
fn tally_close(rec: &StateRecord, seen: &Seen, old: u8) {
    let short = seen.opened_ns != 0 && rec.header.ts_ns - seen.opened_ns < cfg(&CONFIG.short_ns);
    count_close(rec, seen.role, enters_time_wait(old, rec.flags), short);
}

/// Streams `rec`, `sk`'s transition `old` -> `new` (`info` is `sk`'s
/// storage, if it has any), after `sk`'s held-back first transition if
/// there is one. A new connection's first transition is held back itself
/// where it does not show the connection yet.
#[inline(always)]
fn report(sk: *mut c_void, rec: &StateRecord, info: Option<&mut SockInfo>, old: u8, new: u8) {
    if let Some(info) = info {
        info.reported = 1;
        if info.pending != 0 {
            info.pending = 0;
            send_pending(sk, rec);
        }
        if cloned(old, new) && incomplete(rec) && hold(sk, rec) {
            info.pending = 1;
            return;
        }
    }
    emit(rec);
}

/// Whether a new connection's first transition does not show the
/// connection yet: no cookie of its own can be had (the socket still holds
/// its listener's), or the kernel has not set its peer yet.
#[inline(always)]
fn incomplete(rec: &StateRecord) -> bool {
    cfg(&CONFIG.features) & FEATURE_COOKIE == 0 || rec.dport == 0
}

/// Holds `rec` back in `PENDING` until `sk`'s next event; false if full.
#[inline(always)]
fn hold(sk: *mut c_void, rec: &StateRecord) -> bool {
    PENDING.insert(sk as u64, rec, 0).is_ok()
}

/// Sends `sk`'s held-back first transition, with the identity its next
/// event `now` shows.
#[inline(always)]
fn send_pending(sk: *mut c_void, now: &StateRecord) {
    let key = sk as u64;
    let Some(held) = PENDING.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a value of the map, ours until removed below.
    let held = unsafe { &mut *held };
    held.cookie = now.cookie;
    held.netns = now.netns;
    held.saddr = now.saddr;
    held.daddr = now.daddr;
    held.sport = now.sport;
    held.dport = now.dport;
    held.family = now.family;
    emit(held);
    let _ = PENDING.remove(key);
}

/// Notes when and on which side a connection starts.
#[inline(always)]
fn mark_start(info: &mut SockInfo, new: u8, now_ns: u64) {
    if new == TCP_SYN_SENT || new == TCP_SYN_RECV {
        info.opened_ns = now_ns;
        info.role = if new == TCP_SYN_SENT {
            ROLE_CLIENT
        } else {
            ROLE_SERVER
        };
    }
}
