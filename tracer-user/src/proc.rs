//! Who holds a socket, from /proc (as `ss -p` finds out): for sockets that
//! existed before socktrace started, which the kernel programs never saw.
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::event::{Comm, Owner, OwnerSource};

/// Owners of every socket inode some process has open. Where several
/// processes share one (after fork), the lowest pid wins.
pub fn socket_owners(cgroup_root: Option<&Path>) -> HashMap<u32, Owner> {
    let mut owners = HashMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue; // gone, or a kernel thread
        };
        let mut owner = None;
        for fd in fds.flatten() {
            let Some(inode) = fs::read_link(fd.path())
                .ok()
                .and_then(|target| socket_inode(&target.to_string_lossy()))
            else {
                continue;
            };
            let owner = owner.get_or_insert_with(|| process(pid, cgroup_root));
            owners.entry(inode).or_insert_with(|| owner.clone());
        }
    }
    owners
}

/// `socket:[12345]` -> 12345
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn process(pid: u32, cgroup_root: Option<&Path>) -> Owner {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let mut raw = [0u8; 16];
    let comm = comm.trim_end_matches('\n').as_bytes();
    let n = comm.len().min(15);
    raw[..n].copy_from_slice(&comm[..n]);
    let uid = fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .unwrap_or_default();
    Owner {
        pid,
        tid: pid,
        uid,
        comm: Comm::new(&raw),
        cgroup_id: cgroup_root.map_or(0, |root| cgroup_id(pid, root)),
        source: OwnerSource::Cached,
    }
}

/// The cgroup v2 id of `pid`: the inode number of its cgroup directory.
fn cgroup_id(pid: u32, root: &Path) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|path| root.join(path.trim_start_matches('/')))
        .and_then(|dir: PathBuf| fs::metadata(dir).ok())
        .map_or(0, |m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_links() {
        assert_eq!(socket_inode("socket:[4026532]"), Some(4026532));
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn finds_our_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let inode = crate::diag::dump(crate::diag::Dump::All)
            .unwrap()
            .into_iter()
            .find(|s| s.local == local)
            .unwrap()
            .inode;
        let owners = socket_owners(None);
        let me = &owners[&inode];
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.source, OwnerSource::Cached);
    }
}
