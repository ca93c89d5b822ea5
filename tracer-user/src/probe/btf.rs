//! Kernel struct member offsets from the running kernel's BTF, so the
//! programs never carry one kernel's layout.
use std::collections::HashMap;

use btf_rs::{Backend, Btf, Type};
use thiserror::Error;
use tracer_common::{Field, KernelLayout};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("the kernel exposes no BTF at {VMLINUX} (needs CONFIG_DEBUG_INFO_BTF=y): {0}")]
    Missing(btf_rs::Error),
    #[error("kernel BTF: {0}")]
    Layout(String),
}

/// The running kernel's BTF (mapped, read on demand).
pub fn kernel() -> Result<Btf, BtfError> {
    open().map_err(BtfError::Missing)
}

/// Resolves every offset the programs need. Members that only optional
/// features use may be missing: those come back with size 0, and the
/// second value says what is lost.
pub fn kernel_layout(btf: &Btf) -> Result<Layout, BtfError> {
    let roots = structs(btf, &LAYOUT_STRUCTS);
    let f = |path: &str| member(btf, &roots, path);
    let mut degraded = Vec::new();
    let (net_tw_count, tw_count_bias) = tw_count(btf, &roots, &mut degraded);
    let (sk_flags, sock_done) = peer_fin(btf, &roots, &mut degraded);
    let mut optional = |path: &str, lost: &str| match member(btf, &roots, path) {
        Ok(field) => field,
        Err(err) => {
            degraded.push(format!("{lost}: {err}"));
            Field::default()
        }
    };
    let layout = KernelLayout {
        task_files: f("task_struct.files")?,
        files_fdt: f("files_struct.fdt")?,
        fdtable_max_fds: f("fdtable.max_fds")?,
        fdtable_fd: f("fdtable.fd")?,
        file_private_data: f("file.private_data")?,
        socket_file: f("socket.file")?,
        socket_sk: f("socket.sk")?,
        sk_family: f("sock.__sk_common.skc_family")?,
        sk_state: f("sock.__sk_common.skc_state")?,
        sk_sport: f("inet_sock.inet_sport")?,
        sk_dport: f("sock.__sk_common.skc_dport")?,
        sk_rcv_saddr: f("sock.__sk_common.skc_rcv_saddr")?,
        sk_daddr: f("sock.__sk_common.skc_daddr")?,
        sk_v6_rcv_saddr: f("sock.__sk_common.skc_v6_rcv_saddr")?,
        sk_v6_daddr: f("sock.__sk_common.skc_v6_daddr")?,
        sk_protocol: f("sock.sk_protocol")?,
        sk_cookie: optional(
            "sock.__sk_common.skc_cookie",
            "bind and listen events carry no socket id",
        ),
        sk_net: optional("sock.__sk_common.skc_net.net", "no network namespaces"),
        net_inum: optional("net.ns.inum", "no network namespaces"),
        sk_err: optional("sock.sk_err", "failed connections do not say why"),
        sk_flags,
        net_tw_count,
        net_tw_max: optional("net.ipv4.tcp_death_row.sysctl_max_tw_buckets", TW_FULL_LOST),
        tcp_bytes_acked: optional("tcp_sock.bytes_acked", "no byte counts"),
        tcp_bytes_received: optional("tcp_sock.bytes_received", "no byte counts"),
        tcp_srtt_us: optional("tcp_sock.srtt_us", NO_TCP_STATS),
        tcp_mdev_us: optional("tcp_sock.mdev_us", NO_TCP_STATS),
        tcp_total_retrans: optional("tcp_sock.total_retrans", NO_TCP_STATS),
        task_tgid: f("task_struct.tgid")?,
        task_comm: optional("task_struct.comm", OLD_OWNER_LOST),
        task_cred: optional("task_struct.cred", OLD_OWNER_LOST),
        cred_uid: optional("cred.uid", OLD_OWNER_LOST),
        task_cgroups: optional("task_struct.cgroups", OLD_OWNER_LOST),
        css_set_dfl_cgrp: optional("css_set.dfl_cgrp", OLD_OWNER_LOST),
        cgroup_kn: optional("cgroup.kn", OLD_OWNER_LOST),
        kernfs_node_id: optional("kernfs_node.id", OLD_OWNER_LOST),
        file_inode: f("file.f_inode")?,
        inode_mode: f("inode.i_mode")?,
        inode_ino: f("inode.i_ino")?,
    };
    degraded.dedup();
    Ok(Layout {
        kernel: layout,
        tw_count_bias,
        sock_done,
        degraded,
    })
}

/// The structs whose members `kernel_layout` resolves.
const LAYOUT_STRUCTS: [&str; 14] = [
    "task_struct",
    "files_struct",
    "fdtable",
    "file",
    "socket",
    "sock",
    "inet_sock",
    "tcp_sock",
    "net",
    "cred",
    "css_set",
    "cgroup",
    "kernfs_node",
    "inode",
];

/// What a kernel without the RTT or retransmit members of `tcp_sock` loses.
const NO_TCP_STATS: &str = "connections carry no RTT, retransmits or passive connect time";

/// What a kernel without one of the task members the start-up iterator
/// reads loses (that part of the owner is 0).
const OLD_OWNER_LOST: &str = "owners of sockets open before start lack their name, uid or cgroup";

/// The per-namespace TIME_WAIT count and `Config::tw_count_bias`: Linux
/// 5.17 made the count a refcount, one above the sockets.
fn tw_count(btf: &Btf, roots: &HashMap<String, Type>, degraded: &mut Vec<String>) -> (Field, u32) {
    match member(btf, roots, "net.ipv4.tcp_death_row.tw_refcount") {
        Ok(field) => (field, 1),
        Err(_) => match member(btf, roots, "net.ipv4.tcp_death_row.tw_count") {
            Ok(field) => (field, 0),
            Err(err) => {
                degraded.push(format!("{TW_FULL_LOST}: {err}"));
                (Field::default(), 0)
            }
        },
    }
}

/// `sk_flags` and its SOCK_DONE bit: the peer's FIN arrived (`tcp_fin`
/// sets it).
fn peer_fin(btf: &Btf, roots: &HashMap<String, Type>, degraded: &mut Vec<String>) -> (Field, u32) {
    match (
        member(btf, roots, "sock.__sk_common.skc_flags"),
        sock_done(btf),
    ) {
        (Ok(field), Some(bit)) => (field, bit),
        (Err(err), _) => {
            degraded.push(format!("{PEER_FIN_LOST}: {err}"));
            (Field::default(), 0)
        }
        (Ok(_), None) => {
            degraded.push(format!(
                "{PEER_FIN_LOST}: kernel BTF: no SOCK_DONE in enum sock_flags"
            ));
            (Field::default(), 0)
        }
    }
}

/// What a kernel without `SOCK_DONE` (or `sock_common.skc_flags`) in its
/// BTF costs.
const PEER_FIN_LOST: &str = "bytes received count the peer's FIN (one byte too many) where it came";

/// `SOCK_DONE` of the kernel's `enum sock_flags`.
fn sock_done(btf: &Btf) -> Option<u32> {
    enum_members(btf, "sock_flags")?
        .into_iter()
        .find_map(|(value, name)| (name == "SOCK_DONE").then_some(value))
}

/// The (value, name) of each member of the kernel's `enum name`.
fn enum_members(btf: &Btf, name: &str) -> Option<Vec<(u32, String)>> {
    named(btf, &[name])
        .into_iter()
        .find_map(|(_, ty)| match ty {
            Type::Enum(e) => Some(
                e.members
                    .iter()
                    .filter_map(|m| Some((m.val(), btf.resolve_name(m).ok()?)))
                    .collect(),
            ),
            _ => None,
        })
}

/// What [`kernel_layout`] found.
pub struct Layout {
    pub kernel: KernelLayout,
    /// `Config::tw_count_bias`.
    pub tw_count_bias: u32,
    /// `Config::sock_done`.
    pub sock_done: u32,
    /// What is lost with the members this kernel lacks.
    pub degraded: Vec<String>,
}

const TW_FULL_LOST: &str =
    "a TIME_WAIT the kernel could not create (bucket table full) is reported as entered";

/// A small BTF blob in which each `btf_trace_<event>` typedef, and each
/// `bpf_iter_<target>` function, has the type id the running kernel gives
/// it (the gaps are filled with `void *`). Loading a BTF tracepoint or an
/// iterator, aya only looks that id up by name; given this instead of all
/// of vmlinux it parses ~1 MB in a few ms instead of ~6 MB into ~40 MB.
/// Those this kernel lacks are left out (their load fails).
pub fn stand_in(btf: &Btf, events: &[&str], iterators: &[&str]) -> Vec<u8> {
    const KIND_PTR: u32 = 2;
    const KIND_TYPEDEF: u32 = 8;
    const KIND_FUNC: u32 = 12;
    let typedefs = events.iter().filter_map(|event| {
        let id = trace_typedef_id(btf, event)?;
        Some((id, format!("btf_trace_{event}"), KIND_TYPEDEF))
    });
    let funcs = iterators.iter().filter_map(|target| {
        let name = format!("bpf_iter_{target}");
        let id = btf
            .resolve_ids_by_name(&name)
            .ok()?
            .into_iter()
            .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(Type::Func(_))))?;
        Some((id, name, KIND_FUNC))
    });
    let mut wanted: Vec<(u32, String, u32)> = typedefs.chain(funcs).collect();
    wanted.sort();
    wanted.dedup(); // two programs may share a tracepoint
    let mut types = Vec::new();
    let mut strings = vec![0u8];
    let mut next_id = 1;
    let push = |types: &mut Vec<u8>, name_off: u32, kind: u32| {
        for word in [name_off, kind << 24, 0] {
            types.extend_from_slice(&word.to_ne_bytes());
        }
    };
    for (id, name, kind) in wanted {
        while next_id < id {
            push(&mut types, 0, KIND_PTR);
            next_id += 1;
        }
        push(&mut types, strings.len() as u32, kind);
        next_id += 1;
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
    }
    let mut blob = Vec::with_capacity(24 + types.len() + strings.len());
    blob.extend_from_slice(&0xeb9f_u16.to_ne_bytes()); // magic
    blob.extend_from_slice(&[1, 0]); // version, flags
    for word in [
        24,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        // hdr_len, type_off, type_len, str_off, str_len
        blob.extend_from_slice(&u32::to_ne_bytes(word));
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strings);
    blob
}

/// The kernel's type id of `btf_trace_<event>`, what a BTF tracepoint on
/// `event` is verified against; `None` where this kernel has no such event.
pub fn trace_typedef_id(btf: &Btf, event: &str) -> Option<u32> {
    btf.resolve_ids_by_name(&format!("btf_trace_{event}"))
        .ok()?
        .into_iter()
        .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(Type::Typedef(_))))
}

/// The kernel's names for why it sends a RST (`enum sk_rst_reason`), by
/// value, where `tcp:tcp_send_reset` passes one (Linux 6.10+; a third
/// argument after the tracepoint's own `void *`); `None` elsewhere.
pub fn reset_reasons(btf: &Btf) -> Option<Vec<String>> {
    let id = trace_typedef_id(btf, "tcp_send_reset")?;
    let Type::Ptr(ptr) = strip(btf, btf.resolve_type_by_id(id).ok()?)? else {
        return None;
    };
    let Type::FuncProto(proto) = btf.resolve_chained_type(&ptr).ok()? else {
        return None;
    };
    if proto.parameters.len() < 4 {
        return None;
    }
    let members = enum_members(btf, "sk_rst_reason")?;

    let len = members.iter().map(|(v, _)| *v as usize + 1).max()?;
    let mut names: Vec<String> = (0..len).map(|v| v.to_string()).collect();
    for (value, name) in members {
        let short = name.strip_prefix("SK_RST_REASON_").unwrap_or(&name);
        names[value as usize] = short.to_ascii_lowercase();
    }
    Some(names)
}

/// Mapping the file and reading only the types we need takes a few ms;
/// parsing all of it takes ~150 ms. Older kernels cannot mmap it.
fn open() -> Result<Btf, btf_rs::Error> {
    Btf::from_file_with_backend(VMLINUX, Backend::Mmap).or_else(|_| Btf::from_file(VMLINUX))
}

/// Every type named one of `names`, found in one pass over the BTF (a
/// lookup by name is a pass of its own, ~1 ms on vmlinux).
fn named(btf: &Btf, names: &[impl AsRef<str>]) -> Vec<(String, Type)> {
    let alternatives: Vec<String> = names.iter().map(|n| regex::escape(n.as_ref())).collect();
    let Ok(re) = regex::Regex::new(&format!("^(?:{})$", alternatives.join("|"))) else {
        return Vec::new();
    };
    btf.resolve_types_by_regex(&re)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|ty| {
            let name = btf.resolve_name(ty.as_btf_type()?).ok()?;
            Some((name, ty))
        })
        .collect()
}

/// The structs (with members: not forward declarations) named `names`.
pub fn structs(btf: &Btf, names: &[&str]) -> HashMap<String, Type> {
    let mut found = HashMap::new();
    for (name, ty) in named(btf, names) {
        if matches!(&ty, Type::Struct(s) if !s.members.is_empty()) {
            found.entry(name).or_insert(ty);
        }
    }
    found
}

/// `"struct.member.member"`: the place and size of that member, looking
/// through anonymous unions and structs as C does. The struct must be in
/// `roots` (see [`structs`]).
pub fn member(btf: &Btf, roots: &HashMap<String, Type>, path: &str) -> Result<Field, BtfError> {
    let err = |what: String| BtfError::Layout(format!("{path}: {what}"));
    let mut names = path.split('.');
    let root = names.next().unwrap_or_default();
    let mut ty = roots
        .get(root)
        .cloned()
        .ok_or_else(|| err(format!("no struct {root}")))?;
    let mut bits = 0u32;
    let mut found = None;
    for name in names {
        let (Type::Struct(s) | Type::Union(s)) = &ty else {
            return Err(err(format!("`{name}` is inside a non-struct")));
        };
        let (offset, bitfield, member_ty) =
            find_member(btf, s, name).ok_or_else(|| err(format!("no member `{name}`")))?;
        bits += offset;
        found = Some(bitfield);
        ty = member_ty;
    }
    let bitfield = found.ok_or_else(|| err("names no member".into()))?;
    match bitfield {
        Some(width) => {
            // Read the aligned 32-bit word holding it (little-endian order).
            let word = bits / 32 * 4;
            Ok(Field {
                offset: checked_u16(word).map_err(err)?,
                size: 4,
                shift: (bits - word * 8) as u8,
                bits: width as u8,
                _pad: [0; 3],
            })
        }
        None if !bits.is_multiple_of(8) => Err(err("not byte-aligned".into())),
        None => {
            let size = size_of_type(btf, &ty).ok_or_else(|| err("size unknown".into()))?;
            let size = u8::try_from(size).map_err(|_| err(format!("{size} bytes is too big")))?;
            Ok(Field::new(checked_u16(bits / 8).map_err(err)?, size))
        }
    }
}

fn checked_u16(v: u32) -> Result<u16, String> {
    u16::try_from(v).map_err(|_| format!("offset {v} is beyond 64 KiB"))
}

/// Member `name` of `s`, searching anonymous members: its bit offset from
/// the start of `s`, its bitfield width if it is one, and its type.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, Option<u32>, Type)> {
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        let ty = strip(btf, btf.resolve_chained_type(m).ok()?)?;
        let bitfield = m.bitfield_size().filter(|&w| w != 0);
        if member_name == name {
            return Some((m.bit_offset(), bitfield, ty));
        }
        if member_name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = &ty
            && let Some((off, bf, t)) = find_member(btf, inner, name)
        {
            return Some((m.bit_offset() + off, bf, t));
        }
    }
    None
}

/// Follows typedefs and qualifiers to the type they name.
fn strip(btf: &Btf, mut ty: Type) -> Option<Type> {
    loop {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            Type::Volatile(t) | Type::Const(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(t).ok()?
            }
            Type::TypeTag(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        }
    }
}

fn size_of_type(btf: &Btf, ty: &Type) -> Option<usize> {
    Some(match ty {
        Type::Int(i) => i.size(),
        Type::Ptr(_) => 8,
        Type::Enum(e) => e.size(),
        Type::Enum64(e) => e.size(),
        Type::Struct(s) | Type::Union(s) => s.size(),
        Type::Array(a) => {
            let elem = strip(btf, btf.resolve_chained_type(a).ok()?)?;
            a.len() * size_of_type(btf, &elem)?
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves every offset against the running kernel's BTF (readable
    /// without root) and checks what C says about each member.
    #[test]
    fn resolves_the_running_kernel() {
        let Layout {
            kernel: k,
            tw_count_bias,
            sock_done,
            degraded,
        } = kernel_layout(&kernel().unwrap()).expect("this machine's BTF");
        assert_eq!(degraded, Vec::<String>::new());
        assert_eq!(tw_count_bias, 1, "tw_refcount, as since Linux 5.17");
        // include/net/sock.h: SOCK_DEAD, SOCK_DONE, ...
        assert_eq!(sock_done, 1);
        for ptr in [k.task_files, k.files_fdt, k.fdtable_fd, k.file_private_data] {
            assert_eq!((ptr.size, ptr.bits), (8, 0), "{ptr:?}");
        }
        assert_eq!((k.socket_file.size, k.socket_sk.size), (8, 8));
        assert_eq!(k.fdtable_max_fds.size, 4);
        assert_eq!((k.sk_family.size, k.sk_sport.size), (2, 2));
        assert_eq!((k.sk_rcv_saddr.size, k.sk_v6_rcv_saddr.size), (4, 16));
        // __sk_common is the first member of struct sock.
        assert!(k.sk_family.offset < k.sk_protocol.offset);
        assert!(
            k.sk_protocol.size == 2 || k.sk_protocol.bits == 8,
            "{:?}",
            k.sk_protocol
        );
        assert_eq!(
            (k.sk_state.size, k.sk_dport.size, k.sk_cookie.size),
            (1, 2, 8)
        );
        assert_eq!(
            (k.sk_daddr.size, k.sk_v6_daddr.size, k.net_inum.size),
            (4, 16, 4)
        );
        assert_eq!((k.sk_err.size, k.sk_flags.size), (4, 8));
        assert_eq!((k.net_tw_count.size, k.net_tw_max.size), (4, 4));
        assert_eq!((k.tcp_bytes_acked.size, k.tcp_bytes_received.size), (8, 8));
        assert_eq!(
            (
                k.tcp_srtt_us.size,
                k.tcp_mdev_us.size,
                k.tcp_total_retrans.size
            ),
            (4, 4, 4)
        );
        assert_eq!(
            (k.task_tgid.size, k.task_comm.size, k.cred_uid.size),
            (4, 16, 4)
        );
        for ptr in [
            k.task_cred,
            k.task_cgroups,
            k.css_set_dfl_cgrp,
            k.cgroup_kn,
            k.file_inode,
        ] {
            assert_eq!((ptr.size, ptr.bits), (8, 0), "{ptr:?}");
        }
        assert_eq!((k.kernfs_node_id.size, k.inode_ino.size), (8, 8));
        assert_eq!(k.inode_mode.size, 2);
    }

    #[test]
    fn the_stand_in_keeps_the_kernels_ids() {
        let btf = kernel().unwrap();
        let blob = stand_in(
            &btf,
            &["inet_sock_set_state", "no_such_event"],
            &["task_file"],
        );
        let small = aya::Btf::parse(&blob, aya::Endianness::default()).unwrap();
        let name = "btf_trace_inet_sock_set_state";
        let kernel_id = btf.resolve_ids_by_name(name).unwrap()[0];
        let small_id = small
            .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Typedef)
            .unwrap();
        assert_eq!(small_id, kernel_id);
        assert!(
            small
                .id_by_type_name_kind("btf_trace_no_such_event", aya_obj::btf::BtfKind::Typedef)
                .is_err()
        );
        let name = "bpf_iter_task_file";
        let kernel_id = btf.resolve_ids_by_name(name).unwrap()[0];
        let small_id = small
            .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
            .unwrap();
        assert_eq!(small_id, kernel_id);
    }

    #[test]
    fn unknown_members_are_named_in_the_error() {
        let btf = open().unwrap();
        let roots = structs(&btf, &["sock", "no_such_struct"]);
        assert_eq!(roots.keys().collect::<Vec<_>>(), ["sock"]);
        let err = member(&btf, &roots, "sock.no_such_member")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "kernel BTF: sock.no_such_member: no member `no_such_member`"
        );
        let err = member(&btf, &roots, "no_such_struct.x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "kernel BTF: no_such_struct.x: no struct no_such_struct"
        );
    }
}
