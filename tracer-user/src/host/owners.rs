//! Who holds the sockets that predate us (as `ss -p` finds out), from the
//! start-up iterator's output (tracer-ebpf's `existing`): the kernel
//! walked every process's descriptors, so no /proc/PID/fd is read and no
//! process is hidden from us for lack of CAP_SYS_PTRACE.
use std::{
    fs::File,
    io::{self, BufReader, Read},
};

use rustc_hash::FxHashMap;
use tracer_common::SocketFile;

use crate::event::{Owner, OwnerSource, read};

/// Owners of every socket inode some process has open. Where several
/// processes share one (after fork), the lowest pid wins.
#[derive(Debug, Default)]
pub struct SocketOwners {
    /// Each process once (500,000 sockets are held by a few).
    owners: Vec<Owner>,
    /// Index into `owners`.
    by_inode: FxHashMap<u32, u32>,
}

impl SocketOwners {
    /// Reads the iterator's records from `files` (none where the kernel
    /// refused the iterator: every owner stays unknown).
    pub fn read(files: Option<File>) -> io::Result<SocketOwners> {
        let mut owners = SocketOwners::default();
        let Some(files) = files else {
            return Ok(owners);
        };
        // The kernel hands out its seq_file a page or so per read.
        let mut files = BufReader::with_capacity(64 << 10, files);
        let mut record = [0u8; size_of::<SocketFile>()];
        loop {
            match files.read_exact(&mut record) {
                Ok(()) => owners.add(read(&record).expect("sized to the record")),
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(owners),
                Err(err) => return Err(err),
            }
        }
    }

    /// Who holds socket `inode` (as sock_diag numbers it).
    pub fn get(&self, inode: u32) -> Option<&Owner> {
        let at = *self.by_inode.get(&inode)?;
        self.owners.get(at as usize)
    }

    /// One descriptor; the iterator goes through processes by pid, and
    /// through each one's descriptors in a row.
    fn add(&mut self, file: SocketFile) {
        if self.owners.last().is_none_or(|o| o.pid != file.owner.pid) {
            let owner = Owner::from_raw(&file.owner, OwnerSource::Cached);
            self.owners.push(owner);
        }
        let at = self.owners.len() as u32 - 1;
        // Socket inode numbers are 32-bit (get_next_ino), as sock_diag has them.
        self.by_inode.entry(file.inode as u32).or_insert(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Comm;

    #[test]
    fn the_lowest_pid_holding_a_socket_owns_it() {
        let file = |pid, inode| SocketFile {
            owner: tracer_common::Owner {
                pid,
                tid: pid,
                uid: 1000,
                source: tracer_common::OWNER_SYSCALL,
                cgroup_id: 7,
                comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
            },
            inode,
        };
        let mut owners = SocketOwners::default();
        for (pid, inode) in [(10, 5), (10, 6), (11, 5), (12, 1 << 33 | 8)] {
            owners.add(file(pid, inode));
        }
        let pid = |inode| owners.get(inode).unwrap().pid;
        assert_eq!((pid(5), pid(6), pid(8)), (10, 10, 12));
        assert_eq!(owners.owners.len(), 3);
        assert!(owners.get(9).is_none());
        let owner = owners.get(5).unwrap();
        assert_eq!(owner.source, OwnerSource::Cached);
        assert_eq!(owner.comm, Comm::truncated("nginx"));
        assert_eq!((owner.uid, owner.cgroup_id), (1000, 7));
    }
}
