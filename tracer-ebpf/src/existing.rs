//! Who holds the sockets that predate us: a task_file iterator, read once
//! at start. The kernel walks every process's descriptor table for us and
//! the program writes one [`SocketFile`] per socket, so finding
//! the owners of 500,000 sockets costs no 500,000 readlinks of
//! `/proc/PID/fd/N`, and needs no CAP_SYS_PTRACE.
use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_seq_write},
};
use tracer_common::{Field, OWNER_SYSCALL, Owner, SocketFile};

use crate::{
    field::{cfg, ptr, uint},
    maps::{CONFIG, LAST_TASK},
    sock::optional,
};

/// `bpf_iter__task_file`: a tracing program's context is its target's
/// arguments, one 8-byte slot each (meta, task, fd, file).
#[repr(C)]
struct TaskFile {
    meta: *const IterMeta,
    task: *const u8,
    fd: u64,
    file: *const u8,
}

/// `bpf_iter_meta`, whose first member is the output.
#[repr(C)]
struct IterMeta {
    seq: *mut seq_file,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub extern "C" fn socket_files(ctx: *mut c_void) -> i32 {
    // SAFETY: the iterator's context, as above; `task` and `file` are null
    // once, when the walk is over.
    let ctx = unsafe { &*(ctx as *const TaskFile) };
    if ctx.task.is_null() || ctx.file.is_null() {
        return 0;
    }
    if let Some(record) = socket_file(ctx.task, ctx.file) {
        // SAFETY: `meta` and its `seq` are the kernel's, valid for this run.
        unsafe {
            bpf_seq_write(
                (*ctx.meta).seq,
                (&raw const record).cast(),
                size_of::<SocketFile>() as u32,
            )
        };
    }
    0
}

/// `file`'s socket inode (if it is a socket: sock_diag tells which are
/// TCP) and `task` as its owner. `file` and its inode are read with plain
/// loads, which the verifier checks against their BTF types and the JIT
/// makes fault-safe: a fraction of a probe read's cost, for every
/// descriptor of every process.
#[inline(always)]
fn socket_file(task: *const u8, file: *const u8) -> Option<SocketFile> {
    let k = &CONFIG.kernel;
    // SAFETY: `file` is a BTF `struct file *`, `f_inode` its member.
    let inode: *const u8 = unsafe { member(file, cfg(&k.file_inode)) };
    if inode.is_null() {
        return None;
    }
    // SAFETY: `inode` is a BTF `struct inode *`, these its members.
    let mode: u16 = unsafe { member(inode, cfg(&k.inode_mode)) };
    if u32::from(mode) & S_IFMT != S_IFSOCK {
        return None;
    }
    let inode: u64 = unsafe { member(inode, cfg(&k.inode_ino)) };
    let last = LAST_TASK.get_ptr_mut(0)?;
    // SAFETY: a map value, only this program's (and one read runs it at a time).
    let last = unsafe { &mut *last };
    if last.task != task as u64 {
        last.owner = owner(task)?;
        last.task = task as u64;
    }
    Some(SocketFile {
        owner: last.owner,
        inode,
    })
}

/// `S_IFMT` and `S_IFSOCK` of `inode.i_mode` (include/uapi/linux/stat.h).
const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;

/// Member `field` of the BTF object at `base`, loaded directly.
///
/// # Safety
/// `base` must be a pointer the verifier knows the BTF type of, and
/// `field` a member of that type of `T`'s size.
#[inline(always)]
unsafe fn member<T>(base: *const u8, field: Field) -> T {
    unsafe { core::ptr::read_volatile(base.add(field.offset as usize).cast::<T>()) }
}

#[inline(always)]
fn owner(task: *const u8) -> Option<Owner> {
    let pid = uint(task, cfg(&CONFIG.kernel.task_tgid)).ok()? as u32;
    Some(Owner {
        pid,
        tid: pid,
        uid: uid(task),
        source: OWNER_SYSCALL,
        cgroup_id: cgroup_id(task),
        comm: comm(task),
    })
}

/// `task->cred->uid`, the real uid (what `bpf_get_current_uid_gid` gives).
#[inline(always)]
fn uid(task: *const u8) -> u32 {
    let k = &CONFIG.kernel;
    ptr(task, cfg(&k.task_cred)).map_or(0, |cred| optional(cred, cfg(&k.cred_uid)) as u32)
}

/// `task->cgroups->dfl_cgrp->kn->id` (what `bpf_get_current_cgroup_id`
/// gives the current task).
#[inline(always)]
fn cgroup_id(task: *const u8) -> u64 {
    let k = &CONFIG.kernel;
    let node = ptr(task, cfg(&k.task_cgroups))
        .and_then(|set| ptr(set, cfg(&k.css_set_dfl_cgrp)))
        .and_then(|cgroup| ptr(cgroup, cfg(&k.cgroup_kn)));
    node.map_or(0, |kn| optional(kn, cfg(&k.kernfs_node_id)))
}

#[inline(always)]
fn comm(task: *const u8) -> [u8; 16] {
    let field = cfg(&CONFIG.kernel.task_comm);
    let mut comm = [0u8; 16];
    if field.size as usize == comm.len() {
        // SAFETY: bpf_probe_read_kernel_buf checks the address.
        let at = unsafe { task.add(field.offset as usize) };
        if unsafe { bpf_probe_read_kernel_buf(at, &mut comm) }.is_err() {
            comm = [0; 16];
        }
    }
    comm
}
