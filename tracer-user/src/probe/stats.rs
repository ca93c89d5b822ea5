//! Run-time statistics the kernel keeps about our programs: how often a
//! program did not run because another BPF program was running on that CPU
//! (`recursion_misses`). Each miss is an event we never saw.
use std::os::fd::{AsFd, AsRawFd};

use aya::Ebpf;
use aya_obj::generated::{bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, bpf_prog_info};

/// `union bpf_attr`, as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Recursion misses of one program, from the kernel.
fn recursion_misses(fd: impl AsFd) -> std::io::Result<u64> {
    // SAFETY: bpf_prog_info is plain data; all zeroes is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoByFd {
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: &raw mut info as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw const attr,
            size_of::<InfoByFd>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}

/// The sum over every loaded program of `programs`.
pub fn total_recursion_misses(programs: &Ebpf) -> u64 {
    programs
        .programs()
        .filter_map(|(_, p)| p.fd().ok())
        .filter_map(|fd| recursion_misses(fd).ok())
        .sum()
}
