//! Reading a `struct sock`, and finding the one behind a file descriptor.
//! Every offset comes from BTF through `CONFIG.kernel`.
use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, generated::bpf_get_socket_cookie,
};
use tracer_common::{AF_INET, AF_INET6, EAFNOSUPPORT, EBADF, ENOTSOCK, FEATURE_COOKIE, Field};

use crate::{
    field::{addr, cfg, ptr, uint},
    maps::CONFIG,
};

/// The local end of an IPv4/IPv6 socket.
pub struct Local {
    pub sock: u64,
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub addr: [u8; 16],
}

/// `current->files->fdt->fd[fd]->private_data->sk`, checked on the way:
/// the `struct socket` must point back at the file, so a descriptor that
/// is not a socket (or was swapped meanwhile) yields `Err`.
#[inline(always)]
pub fn sock_of_fd(fd: u32) -> Result<*const u8, i64> {
    let k = &CONFIG.kernel;
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = ptr(task, cfg(&k.task_files))?;
    let fdt = ptr(files, cfg(&k.files_fdt))?;
    if fd as u64 >= uint(fdt, cfg(&k.fdtable_max_fds))? {
        return Err(-i64::from(EBADF));
    }
    let fds = ptr(fdt, cfg(&k.fdtable_fd))? as *const u64;
    // SAFETY: bpf_probe_read_kernel checks the address.
    let file = unsafe { bpf_probe_read_kernel(fds.add(fd as usize)) }.map_err(|e| e as i64)?;
    let socket = ptr(file as *const u8, cfg(&k.file_private_data))?;
    if uint(socket, cfg(&k.socket_file))? != file {
        return Err(-i64::from(ENOTSOCK));
    }
    ptr(socket, cfg(&k.socket_sk))
}

/// Family, protocol and bound address of `sk`; `Err` for non-inet sockets.
#[inline(always)]
pub fn local_end(sk: *const u8) -> Result<Local, i64> {
    let k = &CONFIG.kernel;
    let family = uint(sk, cfg(&k.sk_family))? as u16;
    let mut local = Local {
        sock: sk as u64,
        family,
        protocol: uint(sk, cfg(&k.sk_protocol))? as u16,
        port: u16::from_be(uint(sk, cfg(&k.sk_sport))? as u16),
        addr: [0; 16],
    };
    match family {
        AF_INET => addr(sk, cfg(&k.sk_rcv_saddr), &mut local.addr)?,
        AF_INET6 => addr(sk, cfg(&k.sk_v6_rcv_saddr), &mut local.addr)?,
        _ => return Err(-i64::from(EAFNOSUPPORT)),
    }
    Ok(local)
}

/// The remote address of `sk` (whose family is `family`) into `out`, and
/// its port in host order.
#[inline(always)]
pub fn remote_end(sk: *const u8, family: u16, out: &mut [u8; 16]) -> Result<u16, i64> {
    let k = &CONFIG.kernel;
    if family == AF_INET {
        addr(sk, cfg(&k.sk_daddr), out)?;
    } else {
        addr(sk, cfg(&k.sk_v6_daddr), out)?;
    }
    Ok(u16::from_be(uint(sk, cfg(&k.sk_dport))? as u16))
}

/// The cookie of `sk` (a BTF `struct sock *`): assigned now if it had
/// none, where the kernel lets tracing programs ask; else the one it has
/// (0 if nothing asked yet).
#[inline(always)]
pub fn cookie(sk: *mut c_void) -> u64 {
    if cfg(&CONFIG.features) & FEATURE_COOKIE != 0 {
        // SAFETY: `sk` is a trusted BTF socket pointer.
        unsafe { bpf_get_socket_cookie(sk) }
    } else {
        optional(sk as *const u8, cfg(&CONFIG.kernel.sk_cookie))
    }
}

/// A field that may be missing on this kernel (`size` 0): zero then.
#[inline(always)]
pub fn optional(base: *const u8, field: Field) -> u64 {
    if field.size == 0 {
        return 0;
    }
    uint(base, field).unwrap_or(0)
}

/// Whether the TIME_WAIT bucket table of `sk`'s namespace is full, as
/// `inet_twsk_alloc` judges it (false if unknown on this kernel).
#[inline(always)]
pub fn tw_table_full(sk: *const u8) -> bool {
    let k = &CONFIG.kernel;
    let (count, max) = (cfg(&k.net_tw_count), cfg(&k.net_tw_max));
    if count.size == 0 || max.size == 0 {
        return false;
    }
    let Ok(net) = ptr(sk, cfg(&k.sk_net)) else {
        return false;
    };
    let count = optional(net, count) as i64 - i64::from(cfg(&CONFIG.tw_count_bias));
    let max = optional(net, max) as u32 as i32 as i64;
    // inet_twsk_alloc refuses when tw_refcount - 1 (or tw_count) >= max.
    count >= max
}

/// Inode of the network namespace `sk` lives in (0 if unknown).
#[inline(always)]
pub fn netns(sk: *const u8) -> u32 {
    let k = &CONFIG.kernel;
    match ptr(sk, cfg(&k.sk_net)) {
        Ok(net) => optional(net, cfg(&k.net_inum)) as u32,
        Err(_) => 0,
    }
}
