//! The bpf(2) system call, for the few commands aya does not offer the way
//! we need them (probes of what the kernel accepts).
use aya_obj::generated::{bpf_attr, bpf_cmd};

/// `bpf(cmd, attr)`: its non-negative result, or the error it set.
///
/// # Safety
/// Every pointer in `attr` must be valid for what `cmd` reads and writes.
pub unsafe fn bpf(cmd: bpf_cmd, attr: &bpf_attr) -> std::io::Result<i64> {
    // SAFETY: the caller vouches for the pointers in `attr`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_ref(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
