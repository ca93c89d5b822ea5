//! What this kernel lets BTF tracepoints call, asked of its verifier the
//! way bpftool and libbpf probe helpers: a program that only calls the
//! helper fails with "unknown func" (or "invalid func") where the helper is
//! not offered to tracing programs, and for another reason (its arguments)
//! where it is. Never decided by version numbers: distributions backport.
//!
//! Written here, not taken from aya: `aya::sys::is_helper_supported`
//! refuses tracing programs, which need a BTF attach target to load.
use std::{ffi::CStr, os::fd::FromRawFd as _};

use aya_obj::generated::{
    BPF_CALL, BPF_EXIT, BPF_JMP, bpf_attach_type::BPF_TRACE_RAW_TP, bpf_attr, bpf_cmd, bpf_func_id,
    bpf_insn, bpf_prog_type::BPF_PROG_TYPE_TRACING,
};
use tracer_common::{FEATURE_COOKIE, FEATURE_SK_STORAGE};

/// The routes the programs take where the kernel offers them, with what
/// the fallback costs (said in a `degraded:` line where it is taken).
const PROBED: [(u32, bpf_func_id, &str); 2] = [
    (
        FEATURE_COOKIE,
        bpf_func_id::BPF_FUNC_get_socket_cookie,
        "socket ids are read from the socket, not assigned (bpf_get_socket_cookie from BTF \
         tracepoints needs Linux 5.12+): cgroup hooks give them to new sockets and to \
         accepted connections at the end of their handshake; a connection's first \
         transition (LISTEN -> SYN_RECV) is sent with its next one",
    ),
    (
        FEATURE_SK_STORAGE,
        bpf_func_id::BPF_FUNC_sk_storage_get,
        "owners are kept in a table of sockets, not in the sockets themselves: beyond \
         its size owners are unknown, counted (bpf_sk_storage_get from BTF tracepoints \
         needs Linux 5.11+)",
    ),
];

/// `Config::features` for this kernel, and a line for each route it lacks
/// that matters to a mode that `streams` (socket ids are only streamed).
/// `attach_btf_id`: the kernel's `btf_trace_inet_sock_set_state`, a BTF
/// tracepoint the probe programs are verified against.
pub fn probe(attach_btf_id: u32, streams: bool) -> (u32, Vec<String>) {
    let mut features = 0;
    let mut degraded = Vec::new();
    for (bit, helper, lost) in PROBED {
        match tracing_may_call(attach_btf_id, helper) {
            Ok(true) => features |= bit,
            Ok(false) if bit == FEATURE_COOKIE && !streams => {}
            Ok(false) => degraded.push(lost.to_string()),
            // Could not tell: the route that works on every kernel.
            Err(err) => degraded.push(format!("{lost}; the kernel did not say ({err})")),
        }
    }
    (features, degraded)
}

/// Whether a BTF tracepoint may call `helper` on this kernel.
fn tracing_may_call(attach_btf_id: u32, helper: bpf_func_id) -> std::io::Result<bool> {
    let insns = [
        insn((BPF_JMP | BPF_CALL) as u8, helper as i32),
        insn((BPF_JMP | BPF_EXIT) as u8, 0),
    ];
    let mut log = [0u8; 4096];
    // SAFETY: an all-zero `bpf_attr` is valid: every field is an integer.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = BPF_PROG_TYPE_TRACING as u32;
    load.expected_attach_type = BPF_TRACE_RAW_TP as u32;
    load.attach_btf_id = attach_btf_id;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = c"GPL".as_ptr() as u64;
    load.log_level = 1;
    load.log_size = log.len() as u32;
    load.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: the kernel reads `attr` and what it points to (alive here) and
    // writes at most `log_size` bytes of log.
    let err = match unsafe { super::sys::bpf(bpf_cmd::BPF_PROG_LOAD, &attr) } {
        Ok(fd) => {
            // SAFETY: a new descriptor we own; dropping it unloads the program.
            drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
            return Ok(true);
        }
        Err(err) => err,
    };
    let log = CStr::from_bytes_until_nul(&log).map_or(&log[..], CStr::to_bytes);
    if log.is_empty() {
        return Err(err);
    }
    Ok(!unknown_helper(log))
}

/// Whether a verifier log says the helper called is not offered.
fn unknown_helper(log: &[u8]) -> bool {
    [&b"unknown func "[..], b"invalid func "]
        .iter()
        .any(|needle| log.windows(needle.len()).any(|w| w == *needle))
}

fn insn(code: u8, imm: i32) -> bpf_insn {
    // SAFETY: an all-zero instruction is valid plain data.
    let mut insn: bpf_insn = unsafe { std::mem::zeroed() };
    insn.code = code;
    insn.imm = imm;
    insn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_an_unknown_helper_from_a_bad_argument() {
        // 5.10's answer to bpf_get_socket_cookie from a BTF tracepoint.
        assert!(unknown_helper(
            b"0: (85) call unknown#46\nunknown func bpf_get_socket_cookie#46\n"
        ));
        assert!(unknown_helper(b"invalid func unknown#107\n"));
        // Where the helper exists, the probe fails on its arguments.
        assert!(!unknown_helper(
            b"0: (85) call bpf_get_socket_cookie#46\nR1 !read_ok\n"
        ));
    }
}
