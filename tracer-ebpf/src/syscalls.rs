//! bind(2), listen(2) and accept(2)/accept4(2). bind and listen keep their
//! arguments per thread at entry and report at exit, with the result and
//! what the socket looks like then (the port the kernel picked, the
//! protocol). accept hands the new socket to the accepting task.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use tracer_common::{
    AF_INET, AF_INET6, BindRecord, COUNTER_BOUND_FULL, COUNTER_UNPAIRED, EBADF, ENOTSOCK, Field,
    IPPROTO_TCP, KIND_BIND, KIND_LISTEN, ListenRecord, MODE_RELEASE,
};

use crate::{
    emit::{emit, header},
    field::{cfg, uint},
    filter::{owner_wanted, sock_wanted, wanted},
    maps::{ACCEPTED, BOUND, Bound, CONFIG, SYSCALL_ARGS, SyscallArgs, bump, count_bound},
    owner::current,
    sock::{Local, local_end, netns, optional, sock_of_fd},
};

// Where bind's `struct sockaddr_in` / `sockaddr_in6` (uapi linux/in.h,
// linux/in6.h) hold what the caller asked for; byte offsets.
/// `sin_family` / `sin6_family`.
const SA_FAMILY: usize = 0;
/// `sin_port` / `sin6_port`, network order.
const SA_PORT: usize = 2;
/// `sin_addr`.
const SIN_ADDR: usize = 4;
/// `sin6_addr`, after `sin6_flowinfo`.
const SIN6_ADDR: usize = 8;
/// `sizeof(struct sockaddr_in)`: the shortest address `inet_bind` takes.
const SOCKADDR_IN_LEN: i32 = 16;
/// `SIN6_LEN_RFC2133` (a `sockaddr_in6` without `sin6_scope_id`): the
/// shortest address `inet6_bind` takes.
const SIN6_LEN_RFC2133: i32 = 24;

#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    let tp = &CONFIG.syscall_tp;
    let addr = Some(cfg(&tp.bind_addr));
    let _ = stash(
        &ctx,
        KIND_BIND,
        cfg(&tp.bind_fd),
        cfg(&tp.bind_addrlen),
        addr,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    let tp = &CONFIG.syscall_tp;
    let _ = stash(
        &ctx,
        KIND_LISTEN,
        cfg(&tp.listen_fd),
        cfg(&tp.listen_backlog),
        None,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_bind")]
pub fn sys_exit_bind(ctx: TracePointContext) -> u32 {
    if let Some((args, ret)) = unstash(&ctx, KIND_BIND, cfg(&CONFIG.syscall_tp.bind_ret)) {
        bind_exit(&ctx, &args, ret);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_listen")]
pub fn sys_exit_listen(ctx: TracePointContext) -> u32 {
    if let Some((args, ret)) = unstash(&ctx, KIND_LISTEN, cfg(&CONFIG.syscall_tp.listen_ret)) {
        listen_exit(&ctx, &args, ret);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx);
    0
}

#[inline(always)]
fn stash(
    ctx: &TracePointContext,
    kind: u32,
    fd: Field,
    len_or_backlog: Field,
    addr: Option<Field>,
) -> Result<(), i64> {
    let base = ctx.as_ptr() as *const u8;
    let args = SyscallArgs {
        kind,
        fd: uint(base, fd)? as u32,
        addr: match addr {
            Some(field) => uint(base, field)?,
            None => 0,
        },
        len_or_backlog: uint(base, len_or_backlog)? as i32,
        _pad: 0,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if SYSCALL_ARGS.insert(tid, args, 0).is_err() {
        bump(COUNTER_UNPAIRED);
    }
    Ok(())
}

/// Takes this thread's stashed arguments of a `kind` call and its result.
#[inline(always)]
fn unstash(ctx: &TracePointContext, kind: u32, ret: Field) -> Option<(SyscallArgs, i32)> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let args = match unsafe { SYSCALL_ARGS.get(tid) } {
        Some(args) if args.kind == kind => *args,
        _ => {
            bump(COUNTER_UNPAIRED);
            return None;
        }
    };
    let _ = SYSCALL_ARGS.remove(tid);
    let ret = uint(ctx.as_ptr() as *const u8, ret).ok()? as i64 as i32;
    Some((args, ret))
}

/// The socket behind `fd` after a call that returned `ret`. `None` when the
/// descriptor is not an IPv4/IPv6 socket (then there is nothing to report);
/// after `EBADF` or `ENOTSOCK` it is known not to be a socket.
fn socket_after(ctx: &TracePointContext, fd: u32, ret: i32) -> Option<Local> {
    if ret == -EBADF || ret == -ENOTSOCK {
        return None;
    }
    match sock_of_fd(fd) {
        Ok(sk) => local_end(sk).ok(),
        Err(_) => {
            // The call got past the socket lookup, so the walk should have
            // worked: the kernel layout we were given may be wrong.
            warn!(ctx, "socktrace: fd {} of a socket call did not resolve", fd);
            None
        }
    }
}

/// The socket's cookie as the kernel has it (0 until someone asked for it).
#[inline(always)]
fn cookie(local: &Local) -> u64 {
    optional(local.sock as *const u8, cfg(&CONFIG.kernel.sk_cookie))
}

fn bind_exit(ctx: &TracePointContext, args: &SyscallArgs, ret: i32) {
    let Some(local) = socket_after(ctx, args.fd, ret) else {
        return;
    };
    let sa = args.addr as *const u8;
    // SAFETY: bpf_probe_read_user checks the address.
    let requested =
        u16::from_be(unsafe { bpf_probe_read_user(sa.add(SA_PORT).cast()) }.unwrap_or(0));
    // The port userspace shows: the requested one when the call failed.
    let port = if ret == 0 { local.port } else { requested };
    let owner = current();
    if !wanted(local.family, local.protocol, port, 0) || !owner_wanted(&owner) {
        return;
    }
    let mut rec = BindRecord {
        header: header(KIND_BIND),
        owner,
        cookie: cookie(&local),
        netns: netns(local.sock as *const u8),
        family: local.family,
        protocol: local.protocol,
        requested_port: requested,
        bound_port: local.port,
        ret,
        ..BindRecord::default()
    };
    requested_addr(sa, args.len_or_backlog, local.family, &mut rec.addr);
    if ret == 0 && rec.cookie != 0 && cfg(&CONFIG.mode) & MODE_RELEASE != 0 {
        keep_bound(&rec);
    }
    emit(&rec);
}

/// The address the caller of bind asked for, from its `sockaddr` at `sa`
/// of `len` bytes, into `out` if it is of the socket's `family`. The
/// kernel has copied it already, so the page is present; if it was not
/// readable (EFAULT) the record still goes out, address zero.
#[inline(always)]
fn requested_addr(sa: *const u8, len: i32, family: u16, out: &mut [u8; 16]) {
    // SAFETY: bpf_probe_read_user* check the address.
    unsafe {
        let asked: u16 = bpf_probe_read_user(sa.add(SA_FAMILY).cast()).unwrap_or(0);
        let _ = match asked {
            AF_INET if family == AF_INET && len >= SOCKADDR_IN_LEN => {
                bpf_probe_read_user_buf(sa.add(SIN_ADDR), &mut out[..4])
            }
            AF_INET6 if family == AF_INET6 && len >= SIN6_LEN_RFC2133 => {
                bpf_probe_read_user_buf(sa.add(SIN6_ADDR), out)
            }
            _ => Ok(()),
        };
    }
}

/// Keeps where the socket of the successful bind `rec` is bound in
/// `BOUND`, for `sock_release` to report its end.
#[inline(always)]
fn keep_bound(rec: &BindRecord) {
    let bound = Bound {
        netns: rec.netns,
        family: rec.family,
        protocol: rec.protocol,
        addr: rec.addr,
        port: rec.bound_port,
        _pad: [0; 6],
    };
    // Counted first, so that no release finds it there uncounted.
    count_bound(1);
    if BOUND.insert(rec.cookie, bound, 0).is_err() {
        count_bound(-1);
        bump(COUNTER_BOUND_FULL);
    }
}

fn listen_exit(ctx: &TracePointContext, args: &SyscallArgs, ret: i32) {
    let Some(local) = socket_after(ctx, args.fd, ret) else {
        return;
    };
    let owner = current();
    if !wanted(local.family, local.protocol, local.port, 0) || !owner_wanted(&owner) {
        return;
    }
    emit(&ListenRecord {
        header: header(KIND_LISTEN),
        owner,
        cookie: cookie(&local),
        netns: netns(local.sock as *const u8),
        ret,
        addr: local.addr,
        family: local.family,
        protocol: local.protocol,
        port: local.port,
        backlog: args.len_or_backlog,
        ..ListenRecord::default()
    });
}

/// The accepting task owns the new socket from now on. Its next event moves
/// this into the socket's storage (see `owner::resolve`).
fn accept_exit(ctx: &TracePointContext) {
    let Ok(fd) = uint(
        ctx.as_ptr() as *const u8,
        cfg(&CONFIG.syscall_tp.accept_ret),
    ) else {
        return;
    };
    let fd = fd as i64;
    if !(0..=i32::MAX as i64).contains(&fd) {
        return;
    }
    let Ok(sk) = sock_of_fd(fd as u32) else {
        return;
    };
    let tcp = uint(sk, cfg(&CONFIG.kernel.sk_protocol)) == Ok(IPPROTO_TCP as u64);
    if tcp && sock_wanted(sk) {
        let _ = ACCEPTED.insert(sk as u64, current(), 0);
    }
}
