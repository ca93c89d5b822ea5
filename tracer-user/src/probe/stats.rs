//! Run-time statistics the kernel keeps about our programs: how often a
//! program did not run because another BPF program was running on that CPU
//! (`recursion_misses`). Each miss is an event we never saw, unless the
//! state program's catcher caught it.
//!
//! Read from `/proc/self/fdinfo` of each program's descriptor, not with
//! `BPF_OBJ_GET_INFO_BY_FD`: reading our own fdinfo needs no privilege, so
//! it keeps working once socktrace has dropped its capabilities, also on
//! kernels (before 6.5) that refuse every bpf(2) command to an unprivileged
//! caller.
use std::os::fd::{AsFd, AsRawFd};

use aya::Ebpf;

/// What the kernel says of one program there: its `recursion_misses`,
/// `None` where the kernel does not count them (before Linux 5.12).
fn recursion_misses(fd: impl AsFd) -> Option<u64> {
    let info =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    parse(&info)
}

fn parse(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("recursion_misses:"))?
        .trim()
        .parse()
        .ok()
}

/// The sum over every loaded program of `programs` but the state
/// program's catcher. It runs on every transition, mostly to find it has
/// nothing to do; a run of it the kernel skips is one where the state
/// program ran (or was skipped too, and counted that). Of the state
/// program's misses, those the catcher caught are no loss: the caller
/// subtracts them, reading that counter after this (a transition is
/// counted here first, there a few instructions later). Where the mode
/// has no use for the catcher (`catcher_wanted` false), it wants no
/// transition the state program can miss (see `Mode::wants`): those
/// misses are left out too. Decided by the mode, not by what loaded: a
/// catcher the kernel refused leaves the state program's misses counted.
pub fn recursion_misses_but_caught(programs: &Ebpf, catcher_wanted: bool) -> u64 {
    programs
        .programs()
        .filter(|(name, _)| {
            *name != super::STATE_CATCHER && (catcher_wanted || *name != super::STATE_PROGRAM)
        })
        .filter_map(|(_, p)| p.fd().ok())
        .filter_map(recursion_misses)
        .sum()
}

/// Whether this kernel counts recursion misses (asked of one program).
pub fn counts_recursion_misses(programs: &Ebpf) -> bool {
    programs
        .programs()
        .filter_map(|(_, p)| p.fd().ok())
        .find_map(recursion_misses)
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_s_count_and_tells_when_it_has_none() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nlink:\t\
                    prog_type:\t26\nprog_jited:\t1\nprog_tag:\t39dbe8b3c3a8f1a2\n\
                    memlock:\t4096\nprog_id:\t43\nrun_time_ns:\t0\nrun_cnt:\t0\n\
                    recursion_misses:\t7\nverified_insns:\t843\n";
        assert_eq!(parse(info), Some(7));
        // 5.10 shows the rest, not this line.
        assert_eq!(parse("prog_type:\t26\nrun_cnt:\t0\n"), None);
    }
}
