//! Where the root of the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`
//! on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones, the host's
//! tree bind-mounted into a container).
//!
//! In a private cgroup namespace (containerd gives one to every pod)
//! mountinfo shows a mount's root relative to the namespace's own root: the
//! host's cgroupfs bind-mounted in, which holds the whole hierarchy, shows
//! as `/../..`. The namespace's own cgroupfs shows as `/` although it is only
//! its subtree. So a mount is taken when its root is `/` or climbs only
//! (`/..`, `/../..`), and only once the directory is found to be the
//! hierarchy's root: cgroup2, without the `cgroup.type` every other cgroup
//! has.
use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

/// The mount point of the cgroup v2 hierarchy's root, if mounted.
pub fn v2_root() -> Option<PathBuf> {
    candidates(&fs::read_to_string("/proc/self/mountinfo").ok()?)
        .into_iter()
        .find(|dir| is_hierarchy_root(dir))
}

/// From mountinfo text: the mount points of cgroup2 mounts that may show
/// the hierarchy's root, in mount order.
fn candidates(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options ... - fstype source
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut fields = left.split_whitespace();
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            (fstype == "cgroup2" && climbs_only(root)).then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

/// `/`, `/..`, `/../..`: the namespace's root or one of its ancestors.
fn climbs_only(root: &str) -> bool {
    root == "/" || root.split('/').skip(1).all(|part| part == "..")
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `dir` is the cgroup v2 hierarchy's root (not merely a cgroup
/// of it, nor a path a later mount hides).
fn is_hierarchy_root(dir: &Path) -> bool {
    let cgroup2 = statfs(dir).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC);
    cgroup2 && dir.join("cgroup.procs").exists() && !dir.join("cgroup.type").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hybrid_and_the_unified_mount() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            candidates(hybrid),
            ["/sys/fs/cgroup/unified"].map(PathBuf::from)
        );
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(candidates(unified), ["/sys/fs/cgroup"].map(PathBuf::from));
        let part = "35 24 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(candidates(part), Vec::<PathBuf>::new());
    }

    #[test]
    fn takes_mounts_that_climb_out_of_a_cgroup_namespace() {
        // A pod's own cgroupfs (its namespace's root, `/`), then the host's
        // bind-mounted over it as the DaemonSet does (`/../../..`), then a
        // sibling subtree of the host's (`/../other`), never the root.
        let pod = "1 0 0:30 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n\
                   2 1 0:30 /../../.. /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n\
                   3 1 0:30 /../other /mnt/other rw - cgroup2 cgroup2 rw\n\
                   4 1 0:30 /.. /mnt/up\\040one rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            candidates(pod),
            ["/sys/fs/cgroup", "/sys/fs/cgroup", "/mnt/up one"].map(PathBuf::from)
        );
        assert!(climbs_only("/") && climbs_only("/..") && climbs_only("/../../.."));
        assert!(!climbs_only("/../a") && !climbs_only("/a") && !climbs_only("/..a"));
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/odd\\04"), "/odd\\04");
    }

    #[test]
    fn only_the_hierarchy_root_is_taken() {
        // (A cgroup below the root is refused too: the namespace test in
        // tests/tests/lifecycle.rs mounts one.)
        let root = v2_root().expect("cgroup v2 is mounted on this machine");
        assert!(is_hierarchy_root(&root));
        assert!(!is_hierarchy_root(Path::new("/tmp")));
        assert!(!is_hierarchy_root(Path::new("/no/such/dir")));
    }
}
