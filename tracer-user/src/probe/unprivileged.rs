//! Whether this kernel answers bpf(2) at all once socktrace has dropped
//! its capabilities. Before Linux 6.5, while `kernel.unprivileged_bpf_disabled`
//! is set (distributions set it), every bpf(2) command of a caller without
//! CAP_BPF fails with EPERM, map reads included; newer kernels check only
//! what creates programs and maps. Asked of the kernel, not of its version:
//! a thread of ours drops its own capabilities (they are per thread) and
//! makes a harmless call, on no map at all.
use aya_obj::generated::{bpf_attr, bpf_cmd};

/// True when bpf(2) refuses callers without capabilities here.
pub fn bpf_refused_without_caps() -> bool {
    std::thread::spawn(|| {
        if !drop_this_threads_capabilities() {
            return false; // cannot tell; the primary route it is
        }
        // SAFETY: an all-zero `bpf_attr` is valid: every field is an integer.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.__bindgen_anon_2.map_fd = u32::MAX;
        // SAFETY: `attr` holds no pointer, and names no valid descriptor.
        let ret = unsafe { super::sys::bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &attr) };
        // EBADF: the kernel got as far as the descriptor.
        ret.is_err_and(|err| err.raw_os_error() == Some(libc::EPERM))
    })
    .join()
    .unwrap_or(false)
}

/// Clears this thread's effective, permitted and inheritable sets (the
/// `caps` crate acts on the calling thread).
fn drop_this_threads_capabilities() -> bool {
    use caps::CapSet;
    [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable]
        .into_iter()
        .all(|set| caps::clear(None, set).is_ok())
}
