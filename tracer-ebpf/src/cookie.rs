//! Gives sockets their cookie early: the kernel assigns one lazily, on
//! first request, and plain tracepoints cannot ask (nor can BTF ones before
//! Linux 5.12). Every new IPv4/IPv6 socket asks at creation; where the BTF
//! tracepoints cannot ask, a connection a listener accepts asks at the end
//! of its handshake (`sock_ops`, which sees it before its transition to
//! ESTABLISHED). Then every record of a socket carries the id `ss -e`
//! shows.
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_sock, sock_ops},
    programs::{SockContext, SockOpsContext},
};

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: a cgroup/sock program's context is the socket.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    1 // allow the socket: we only watch
}

#[sock_ops]
pub fn accepted_cookie(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        // SAFETY: a sock_ops program's context is the socket's.
        unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    }
    1
}
