//! Process details from /proc and cgroupfs: who holds a socket (as `ss -p`
//! finds out), for sockets that predate us; and which cgroup (and
//! container) a cgroup id names.
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

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

pub fn socket_owners(cgroup_root: Option<&Path>) -> SocketOwners {
    let mut owners = SocketOwners::default();
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
        let fds = match fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(fds) => fds,
            Err(err) => {
                if denied(pid, &err) {
                    owners.denied.push(pid);
                }
                continue; // gone, a kernel thread, or not ours to read
            }
        };
        let mut owner = None;
        for fd in fds.flatten() {
            let target = match fs::read_link(fd.path()) {
                Ok(target) => target,
                Err(err) if denied(pid, &err) => {
                    owners.denied.push(pid);
                    break; // the same for every descriptor of this process
                }
                Err(_) => continue, // closed meanwhile
            };
            let Some(inode) = socket_inode(&target.to_string_lossy()) else {
                continue;
            };
            let owner = owner.get_or_insert_with(|| process(pid, cgroup_root));
            owners
                .by_inode
                .entry(inode)
                .or_insert_with(|| owner.clone());
        }
    }
    owners
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

fn process(pid: u32, cgroup_root: Option<&Path>) -> Owner {
    let comm = comm(pid);
    let mut raw = [0u8; 16];
    let comm = comm.as_bytes();
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
        cgroup: None,
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

/// A cgroup: its path below the cgroup v2 root and the container it is,
/// when the path names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: Arc<str>,
    pub container: Option<Arc<str>>,
}

/// cgroup ids (the inode numbers of cgroup v2 directories) to cgroups,
/// cached. An unknown id triggers a walk of the tree, at most once a second.
pub struct Cgroups {
    root: Option<PathBuf>,
    known: FxHashMap<u64, Arc<Cgroup>>,
    last_walk: Option<Instant>,
}

const REWALK_AFTER: Duration = Duration::from_secs(1);

impl Cgroups {
    pub fn new(root: Option<PathBuf>) -> Cgroups {
        Cgroups {
            root,
            known: FxHashMap::default(),
            last_walk: None,
        }
    }

    /// Fills in `owner.cgroup` from its id.
    pub fn resolve(&mut self, owner: &mut Owner) {
        if owner.cgroup.is_none() {
            owner.cgroup = self.get(owner.cgroup_id);
        }
    }

    pub fn get(&mut self, id: u64) -> Option<Arc<Cgroup>> {
        if id == 0 {
            return None;
        }
        if let Some(cgroup) = self.known.get(&id) {
            return Some(Arc::clone(cgroup));
        }
        let root = self.root.as_ref()?;
        if self.last_walk.is_some_and(|at| at.elapsed() < REWALK_AFTER) {
            return None;
        }
        self.last_walk = Some(Instant::now());
        walk(root, Path::new("/"), &mut self.known);
        self.known.get(&id).cloned()
    }
}

fn walk(dir: &Path, rel: &Path, known: &mut FxHashMap<u64, Arc<Cgroup>>) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let path: Arc<str> = rel.to_string_lossy().into();
    known.entry(meta.ino()).or_insert_with(|| {
        Arc::new(Cgroup {
            container: container_id(&path).map(Arc::from),
            path,
        })
    });
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), &rel.join(entry.file_name()), known);
        }
    }
}

/// The container id in a cgroup path, for the layouts of Docker
/// (`docker-ID.scope`, `/docker/ID`), containerd (`cri-containerd-ID.scope`,
/// `/kubepods/.../ID`), CRI-O (`crio-ID.scope`) and Podman (`libpod-ID`).
pub fn container_id(path: &str) -> Option<&str> {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    path.rsplit('/').find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
            .iter()
            .find_map(|prefix| part.strip_prefix(prefix))
            .unwrap_or(part);
        is_id(id).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn container_ids_of_common_runtimes() {
        let id = "4c0f9e2b8f1d3a5b6c7d8e9f00112233445566778899aabbccddeeff00112233";
        for path in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope"
            ),
            format!("/kubepods/besteffort/pod0a1b/{id}"),
            format!("/machine.slice/libpod-{id}.scope/container"),
            format!("/kubepods.slice/crio-{id}.scope"),
        ] {
            assert_eq!(container_id(&path), Some(id), "{path}");
        }
        assert_eq!(container_id("/system.slice/ssh.service"), None);
        assert_eq!(container_id("/"), None);
    }

    #[test]
    fn resolves_the_root_cgroup() {
        let Some(root) = crate::probe::cgroup_v2_root() else {
            panic!("cgroup v2 is not mounted on this machine");
        };
        let id = fs::metadata(&root).unwrap().ino();
        let mut cgroups = Cgroups::new(Some(root));
        let cgroup = cgroups.get(id).expect("the root cgroup");
        assert_eq!((&*cgroup.path, cgroup.container.as_deref()), ("/", None));
        assert_eq!(cgroups.get(u64::MAX), None, "unknown ids are not invented");
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
        crate::diag::for_each(crate::diag::Dump::All, |s| {
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
