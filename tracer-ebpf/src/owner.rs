//! Who owns a socket: recorded where it is certain (a task calling into the
//! socket), kept in the socket's own storage, read by every event.
use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, generated::bpf_sk_storage_get,
    },
};
use tracer_common::{COUNTER_OWNER_FAILED, OWNER_INHERITED, OWNER_SYSCALL, Owner};

use crate::maps::{ACCEPTED, SOCKS, SockInfo, bump};

/// The current task, as the owner of whatever it is calling into.
#[inline(always)]
pub fn current() -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    Owner {
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        source: OWNER_SYSCALL,
        // SAFETY: helper without preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// The storage of `sk` (a BTF `struct sock *`), created empty if needed.
#[inline(always)]
pub fn info(sk: *mut c_void) -> Option<&'static mut SockInfo> {
    // SAFETY: `sk` is a trusted BTF socket pointer from a tracing program;
    // the helper returns null or a pointer into the socket's storage.
    let p = unsafe {
        bpf_sk_storage_get(
            SOCKS.as_ptr(),
            sk,
            ptr::null_mut(),
            BPF_SK_STORAGE_GET_F_CREATE.into(),
        )
    } as *mut SockInfo;
    // SAFETY: null-checked; the storage lives as long as the socket.
    let info = unsafe { p.as_mut() };
    if info.is_none() {
        bump(COUNTER_OWNER_FAILED);
    }
    info
}

/// Records the current task as `sk`'s owner (we are in its system call).
#[inline(always)]
pub fn claim(info: &mut SockInfo, sk: *mut c_void) {
    info.owner = current();
    info.sk = sk as u64;
}

/// Like [`claim`], but only if the current process is not the owner
/// already (threads of one process share their sockets; the first thread
/// seen stays the `tid`).
#[inline(always)]
pub fn claim_if_new(info: &mut SockInfo, sk: *mut c_void) {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if info.sk != sk as u64 || info.owner.pid != pid {
        claim(info, sk);
    }
}

/// The owner to stamp on an event of `sk`: a pending `accept` hand-over
/// first (if `handover`: the accept hooks run), then the stored owner,
/// marked inherited if it was the listener's.
#[inline(always)]
pub fn resolve(info: &mut SockInfo, sk: *mut c_void, handover: bool) -> Owner {
    let key = sk as u64;
    // SAFETY: the value is copied before the entry is removed.
    if handover && let Some(accepted) = unsafe { ACCEPTED.get(key) } {
        info.owner = *accepted;
        info.sk = key;
        let _ = ACCEPTED.remove(key);
    }
    let mut owner = info.owner;
    if info.sk != key && owner.source == OWNER_SYSCALL {
        owner.source = OWNER_INHERITED;
    }
    owner
}
