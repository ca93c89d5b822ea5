//! Gives every new IPv4/IPv6 socket its cookie at creation (the kernel
//! assigns one lazily, on first request). bind and listen records, read
//! from plain tracepoints that cannot ask, then find it in the socket, so
//! every record of a socket carries the same id as `ss -e` shows.
use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock,
    programs::SockContext,
};

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: a cgroup/sock program's context is the socket.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    1 // allow the socket: we only watch
}
