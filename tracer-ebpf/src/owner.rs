//! Who owns a socket: recorded where it is certain (a task calling into the
//! socket), kept in the socket's own storage, read by every event.
use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, generated::bpf_sk_storage_get,
    },
};
use tracer_common::{
    COUNTER_OWNER_FAILED, FEATURE_SK_STORAGE, OWNER_INHERITED, OWNER_SYSCALL, Owner,
};

use crate::{
    field::cfg,
    maps::{ACCEPTED, CONFIG, EMPTY_INFO, LISTENING, OWNERS, SOCKS, SockInfo, bump},
};

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

/// Whether owners live in socket storage (else in `OWNERS`).
#[inline(always)]
fn in_storage() -> bool {
    cfg(&CONFIG.features) & FEATURE_SK_STORAGE != 0
}

/// What we keep on `sk` (a BTF `struct sock *`), created empty if needed:
/// in the socket's own storage, or where the kernel cannot give tracing
/// programs that, in `OWNERS`.
#[inline(always)]
pub fn info(sk: *mut c_void) -> Option<&'static mut SockInfo> {
    let p = if in_storage() {
        // SAFETY: `sk` is a trusted BTF socket pointer from a tracing
        // program; the helper returns null or a pointer into its storage.
        unsafe {
            bpf_sk_storage_get(
                SOCKS.as_ptr(),
                sk,
                ptr::null_mut(),
                BPF_SK_STORAGE_GET_F_CREATE.into(),
            )
        }
        .cast::<SockInfo>()
    } else {
        let key = sk as u64;
        match OWNERS.get_ptr_mut(key) {
            Some(p) => p,
            None => {
                // Another CPU may insert first (EEXIST): the lookup finds it.
                // By reference on purpose: copied from the static, not the stack.
                #[allow(clippy::needless_borrows_for_generic_args)]
                let _ = OWNERS.insert(key, &EMPTY_INFO, BPF_NOEXIST.into());
                OWNERS.get_ptr_mut(key).unwrap_or_default()
            }
        }
    };
    // SAFETY: null-checked; the entry lives until the socket closes.
    let info = unsafe { p.as_mut() };
    if info.is_none() {
        bump(COUNTER_OWNER_FAILED);
    }
    info
}

/// `sk` starts a life (see `state::first_of_a_life`): without socket
/// storage, whatever `OWNERS` holds at its address is a freed socket's
/// (its close we were not run for) and must not pass for this one's.
/// With storage, a new socket's is new, or cloned from its listener's on
/// purpose.
#[inline(always)]
pub fn born(sk: *mut c_void) {
    if !in_storage() {
        // By reference on purpose: copied from the static, not the stack.
        #[allow(clippy::needless_borrows_for_generic_args)]
        let _ = OWNERS.insert(sk as u64, &EMPTY_INFO, 0);
    }
}

/// `sk` closed: without socket storage its entry goes now, so nothing
/// outlives the socket (with storage the kernel frees it with the socket).
#[inline(always)]
pub fn forget(sk: *mut c_void) {
    if !in_storage() {
        let _ = OWNERS.remove(sk as u64);
    }
}

/// `sk` starts listening (`key` gives its `maps::listening_key`, read
/// only where needed), owned by `owner`. With socket storage its
/// connections inherit that by `BPF_F_CLONE`; without, they find it in
/// `LISTENING`.
#[inline(always)]
pub fn listening(key: impl FnOnce() -> u64, owner: &Owner) {
    if !in_storage() {
        let _ = LISTENING.insert(key(), owner, 0);
    }
}

/// The listener at `key` closed.
#[inline(always)]
pub fn not_listening(key: impl FnOnce() -> u64) {
    if !in_storage() {
        let _ = LISTENING.remove(key());
    }
}

/// A connection the kernel just cloned from the listener at `key` (its
/// first event, LISTEN -> SYN_RECV) starts with the listener's owner, as
/// `BPF_F_CLONE` gives it where socket storage works.
#[inline(always)]
pub fn inherit(info: &mut SockInfo, key: impl FnOnce() -> u64) {
    if in_storage() {
        return;
    }
    // SAFETY: the value is copied out.
    if let Some(owner) = unsafe { LISTENING.get(key()) } {
        info.owner = *owner;
        info.sk = 0; // not this socket's own: `resolve` says inherited
    }
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
