//! Process details from /proc: who holds a socket (as `ss -p` finds
//! out), for sockets that predate us.
use std::{collections::HashMap, fs, os::unix::fs::MetadataExt, path::Path};

use nix::{dir::Dir, fcntl::readlinkat};

use super::cgroups::{CgroupNs, NsPath};
use crate::event::{Comm, Owner, OwnerSource};

/// Owners of every socket inode some process has open. Where several
/// processes share one (after fork), the lowest pid wins.
#[derive(Debug, Default)]
pub struct SocketOwners {
    pub by_inode: HashMap<u32, Owner>,
    /// Processes whose descriptors we may not read (reading another
    /// process's /proc/PID/fd takes CAP_SYS_PTRACE, and CAP_DAC_READ_SEARCH
    /// when it is another user's): their sockets' owners stay unknown.
    pub denied: Vec<u32>,
}

/// With `cgroup_root`, the root of the cgroup v2 hierarchy, owners carry
/// their cgroup ids.
pub fn socket_owners(cgroup_root: Option<&Path>) -> SocketOwners {
    let mut owners = SocketOwners::default();
    let cgroups = cgroup_root.and_then(|root| {
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let ns = CgroupNs::find(root, &own, std::process::id())?;
        Some((root, ns))
    });
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // A process exiting meanwhile may refuse us too: that is no denial.
    let denied = |pid: u32, err: &std::io::Error| {
        err.kind() == std::io::ErrorKind::PermissionDenied && alive(pid)
    };
    for pid in pids {
        let (dir, mut entries) = match fd_dir(pid) {
            Ok(opened) => opened,
            Err(err) => {
                if denied(pid, &err) {
                    owners.denied.push(pid);
                }
                continue; // gone, a kernel thread, or not ours to read
            }
        };
        let mut owner = None;
        for fd in entries.iter().flatten() {
            // Relative to the open directory: a host with 500,000 sockets
            // costs no 500,000 walks of "/proc/PID/fd/N".
            let target = match readlinkat(&dir, fd.file_name()) {
                Ok(target) => target,
                Err(err) if denied(pid, &err.into()) => {
                    owners.denied.push(pid);
                    break; // the same for every descriptor of this process
                }
                Err(_) => continue, // closed meanwhile, or "." and ".."
            };
            let Some(inode) = socket_inode(&target.to_string_lossy()) else {
                continue;
            };
            let owner = owner.get_or_insert_with(|| process(pid, cgroups.as_ref()));
            owners
                .by_inode
                .entry(inode)
                .or_insert_with(|| owner.clone());
        }
    }
    owners
}

/// `/proc/PID/fd`, open, and its entries.
fn fd_dir(pid: u32) -> std::io::Result<(fs::File, Dir)> {
    let dir = fs::File::open(format!("/proc/{pid}/fd"))?;
    let entries = Dir::from_fd(dir.try_clone()?.into())?;
    Ok((dir, entries))
}

/// Whether `pid` still runs (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        !matches!(state, None | Some('Z' | 'X' | 'x'))
    })
}

/// `socket:[12345]` -> 12345
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `pid`'s command name, as /proc shows it ("" once it is gone).
pub fn comm(pid: u32) -> String {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim_end_matches('\n').to_string()
}

fn process(pid: u32, cgroups: Option<&(&Path, CgroupNs)>) -> Owner {
    let uid = fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .unwrap_or_default();
    Owner {
        pid,
        tid: pid,
        uid,
        comm: Comm::truncated(&comm(pid)),
        cgroup_id: cgroups.map_or(0, |(root, ns)| cgroup_id(pid, root, ns)),
        cgroup: None,
        source: OwnerSource::Cached,
    }
}

/// The cgroup v2 id of `pid`: the inode number of its cgroup directory
/// below `root`.
fn cgroup_id(pid: u32, root: &Path, ns: &CgroupNs) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return 0;
    };
    NsPath::parse(&text)
        .and_then(|path| ns.resolve(&path))
        .and_then(|path| fs::metadata(root.join(path)).ok())
        .map_or(0, |m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn exiting_processes_are_not_alive() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited, not yet reaped: a zombie.
        let until = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(Instant::now() < until, "`true` did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!alive(pid));
    }

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
        let mut inode = 0;
        crate::host::diag::for_each(crate::host::diag::Dump::All, |s| {
            if s.local == local {
                inode = s.inode;
            }
        })
        .unwrap();
        let owners = socket_owners(None);
        let me = &owners.by_inode[&inode];
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.source, OwnerSource::Cached);
    }
}
