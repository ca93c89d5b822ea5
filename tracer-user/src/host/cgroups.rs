//! cgroups: which cgroup (and container) a cgroup id names, and where a
//! private cgroup namespace's root is in the hierarchy.
//!
//! cgroup paths are the hierarchy's, below its root (what `cgroup` in the
//! JSON shows), also where socktrace runs in a private cgroup namespace (a
//! pod): there /proc/PID/cgroup is relative to the namespace's root
//! (`/../../kubepods.slice/...` for a process outside it), which
//! [`CgroupNs`] finds in the hierarchy.
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

/// A cgroup v2 path as /proc/PID/cgroup shows it: relative to the reader's
/// cgroup namespace's root, first climbing `ups` levels above it when the
/// cgroup is not inside it (`/../../a/b`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NsPath<'a> {
    ups: usize,
    names: Vec<&'a str>,
}

impl NsPath<'_> {
    /// From the text of /proc/PID/cgroup (its `0::` line).
    pub(super) fn parse(text: &str) -> Option<NsPath<'_>> {
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let path = path.strip_prefix('/')?;
        let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
        let mut ups = 0;
        while parts.next_if_eq(&"..").is_some() {
            ups += 1;
        }
        let names: Vec<&str> = parts.collect();
        // Climbing comes first; anything else is not what the kernel writes.
        (!names.iter().any(|&n| n == ".." || n == ".")).then_some(NsPath { ups, names })
    }
}

/// Where our cgroup namespace's root is in the hierarchy: what
/// /proc/PID/cgroup paths are relative to. The hierarchy's root itself,
/// unless socktrace runs in a private cgroup namespace.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CgroupNs {
    /// Its depth below the hierarchy's root.
    depth: usize,
    /// The first components of its path, as far as known (all of them,
    /// unless we run in a cgroup above it).
    known: Vec<String>,
}

impl CgroupNs {
    /// Finds it from our own cgroup: `own` (our /proc/self/cgroup) says
    /// where we are relative to it; the cgroup below `root` whose
    /// `cgroup.procs` lists `pid` says where that is in the hierarchy.
    pub(super) fn find(root: &Path, own: &str, pid: u32) -> Option<CgroupNs> {
        let own = NsPath::parse(own)?;
        let pid = pid.to_string();
        let lists_us = |dir: &Path| {
            fs::read_to_string(dir.join("cgroup.procs"))
                .is_ok_and(|procs| procs.lines().any(|l| l == pid))
        };
        let tail: PathBuf = own.names.iter().collect();
        // Outside a private namespace, at once: where the path says.
        let mut found = (own.ups == 0 && lists_us(&root.join(&tail))).then(|| tail.clone());
        if found.is_none() {
            each_cgroup(root, &mut |dir, rel| {
                if rel.ends_with(&tail) && lists_us(dir) {
                    found = Some(rel.to_path_buf());
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
        }
        let here: Vec<String> = found?
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let known = here[..here.len() - own.names.len()].to_vec();
        Some(CgroupNs {
            depth: known.len() + own.ups,
            known,
        })
    }

    /// `path`'s path below the hierarchy's root, if it can be known.
    pub(super) fn resolve(&self, path: &NsPath<'_>) -> Option<PathBuf> {
        let kept = self.depth.checked_sub(path.ups)?;
        let above = self.known.get(..kept)?;
        Some(
            above
                .iter()
                .map(String::as_str)
                .chain(path.names.iter().copied())
                .collect(),
        )
    }
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
        let known = &mut self.known;
        each_cgroup(root, &mut |dir, rel| {
            if let Ok(meta) = fs::metadata(dir) {
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

    #[test]
    fn parses_cgroup_paths_that_climb_out_of_a_namespace() {
        let parse = |text| NsPath::parse(text).map(|p| (p.ups, p.names));
        assert_eq!(parse("0::/\n"), Some((0, vec![])));
        assert_eq!(
            parse("12:pids:/x\n0::/system.slice/ssh.service\n"),
            Some((0, vec!["system.slice", "ssh.service"]))
        );
        assert_eq!(parse("0::/../../..\n"), Some((3, vec![])));
        assert_eq!(
            parse("0::/../../docker-1.scope\n"),
            Some((2, vec!["docker-1.scope"]))
        );
        assert_eq!(parse("0::/a/../b\n"), None, "not what the kernel writes");
        assert_eq!(parse("1:name=systemd:/\n"), None, "no cgroup v2 line");
    }

    #[test]
    fn resolves_paths_against_the_namespace_root() {
        // A pod's namespace: /kubepods.slice/pod1.slice/cri-containerd-c.scope.
        let ns = CgroupNs {
            depth: 3,
            known: ["kubepods.slice", "pod1.slice", "cri-containerd-c.scope"]
                .map(String::from)
                .into(),
        };
        let resolve = |text| NsPath::parse(text).and_then(|p| ns.resolve(&p));
        // Itself and below it; a sibling pod's container; the host's own.
        assert_eq!(
            resolve("0::/"),
            Some("kubepods.slice/pod1.slice/cri-containerd-c.scope".into())
        );
        assert_eq!(
            resolve("0::/sub"),
            Some("kubepods.slice/pod1.slice/cri-containerd-c.scope/sub".into())
        );
        assert_eq!(
            resolve("0::/../../pod2.slice/cri-containerd-d.scope"),
            Some("kubepods.slice/pod2.slice/cri-containerd-d.scope".into())
        );
        assert_eq!(
            resolve("0::/../../../system.slice/kubelet.service"),
            Some("system.slice/kubelet.service".into())
        );
        assert_eq!(resolve("0::/../../../.."), None, "above the root");
        // Running above the namespace's root, its last name is not known:
        // only paths that climb past it resolve.
        let ns = CgroupNs {
            depth: 2,
            known: vec!["a".into()],
        };
        let resolve = |text| NsPath::parse(text).and_then(|p| ns.resolve(&p));
        assert_eq!(resolve("0::/x"), None);
        assert_eq!(resolve("0::/../y"), Some("a/y".into()));
        assert_eq!(resolve("0::/../../z"), Some("z".into()));
        // Outside any namespace, paths are the hierarchy's.
        let host = CgroupNs {
            depth: 0,
            known: vec![],
        };
        assert_eq!(
            NsPath::parse("0::/user.slice").and_then(|p| host.resolve(&p)),
            Some("user.slice".into())
        );
    }

    #[test]
    fn finds_the_namespace_root_by_the_cgroup_that_lists_us() {
        let root = std::env::temp_dir().join(format!("socktrace-cgns-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let ours = root.join("kubepods.slice/pod1.slice/ctr.scope");
        fs::create_dir_all(ours.join("sub")).unwrap();
        fs::create_dir_all(root.join("kubepods.slice/pod2.slice/ctr.scope")).unwrap();
        fs::write(root.join("cgroup.procs"), "1\n2\n").unwrap();
        fs::write(
            root.join("kubepods.slice/pod2.slice/ctr.scope/cgroup.procs"),
            "4322\n",
        )
        .unwrap();
        fs::write(ours.join("cgroup.procs"), "77\n4321\n").unwrap();
        fs::write(ours.join("sub/cgroup.procs"), "99\n").unwrap();
        let pod = CgroupNs {
            depth: 3,
            known: ["kubepods.slice", "pod1.slice", "ctr.scope"]
                .map(String::from)
                .into(),
        };
        // In its namespace's root; in a cgroup below it; above it.
        assert_eq!(CgroupNs::find(&root, "0::/\n", 4321), Some(pod));
        let below = CgroupNs::find(&root, "0::/sub\n", 99).unwrap();
        assert_eq!(below.known, ["kubepods.slice", "pod1.slice", "ctr.scope"]);
        let above = CgroupNs::find(&root, "0::/../..\n", 1).unwrap();
        assert_eq!((above.depth, above.known.len()), (2, 0));
        // Outside a namespace: where the path says, at once.
        let host = CgroupNs::find(&root, "0::/kubepods.slice/pod1.slice/ctr.scope\n", 77);
        assert_eq!(
            host,
            Some(CgroupNs {
                depth: 0,
                known: vec![]
            })
        );
        assert_eq!(
            CgroupNs::find(&root, "0::/\n", 5),
            None,
            "not listed anywhere"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
