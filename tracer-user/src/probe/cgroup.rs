//! Where cgroup v2 is mounted (`/sys/fs/cgroup` on unified hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones).
use std::{fs, path::PathBuf};

/// The mount point of the cgroup v2 hierarchy's root, if mounted.
pub fn v2_root() -> Option<PathBuf> {
    root_in(&fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// From mountinfo text: the first cgroup2 mount of the hierarchy's root.
fn root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options ... - fstype source
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hybrid_and_the_unified_mount() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(root_in(hybrid), Some("/sys/fs/cgroup/unified".into()));
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(root_in(unified), Some("/sys/fs/cgroup".into()));
        let container = "35 24 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(root_in(container), None);
    }
}
