//! cgroups: which cgroup (and container) a cgroup id names. cgroup paths
//! are those below the root of the cgroup v2 mount we see (what `cgroup`
//! in the JSON shows).
use std::{
    fs,
    ops::ControlFlow,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

use crate::event::{Cgroup, Owner};

/// cgroup ids (the inode numbers of cgroup v2 directories) to cgroups,
/// cached. An unknown id triggers a walk of the tree: at once for an id
/// newer than any the last walks saw (the kernel numbers cgroups in the
/// order they are made, so that is a cgroup made since: a container that
/// just started), else at most once a second (an id the walks cannot
/// find: a cgroup gone, or outside our mount).
pub struct Cgroups {
    root: Option<PathBuf>,
    known: FxHashMap<u64, Arc<Cgroup>>,
    last_walk: Option<Instant>,
    /// The highest id a walk found, or was asked for.
    newest: u64,
}

const REWALK_AFTER: Duration = Duration::from_secs(1);

impl Cgroups {
    pub fn new(root: Option<PathBuf>) -> Cgroups {
        Cgroups {
            root,
            known: FxHashMap::default(),
            last_walk: None,
            newest: 0,
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
        if id <= self.newest && self.last_walk.is_some_and(|at| at.elapsed() < REWALK_AFTER) {
            return None;
        }
        self.last_walk = Some(Instant::now());
        // Not walked again at once for this id, found or not.
        self.newest = self.newest.max(id);
        let (known, newest) = (&mut self.known, &mut self.newest);
        each_cgroup(root, &mut |dir, rel| {
            if let Ok(meta) = fs::metadata(dir) {
                *newest = (*newest).max(meta.ino());
                known.entry(meta.ino()).or_insert_with(|| {
                    let path: Arc<str> = Path::new("/").join(rel).to_string_lossy().into();
                    Arc::new(Cgroup {
                        container: container_id(&path).map(Arc::from),
                        path,
                    })
                });
            }
            ControlFlow::Continue(())
        });
        self.known.get(&id).cloned()
    }
}

/// Calls `visit(directory, its path below root)` for `root` and every
/// cgroup below it, parents first, until it breaks.
fn each_cgroup(root: &Path, visit: &mut impl FnMut(&Path, &Path) -> ControlFlow<()>) {
    fn go(
        dir: &Path,
        rel: &Path,
        visit: &mut impl FnMut(&Path, &Path) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        visit(dir, rel)?;
        let Ok(entries) = fs::read_dir(dir) else {
            return ControlFlow::Continue(());
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                go(&entry.path(), &rel.join(entry.file_name()), visit)?;
            }
        }
        ControlFlow::Continue(())
    }
    let _ = go(root, Path::new(""), visit);
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
}
