//! Who owns a socket: the task, its command name, its cgroup, and how we
//! know.
use std::{fmt, sync::Arc};

use tracer_common::COMM_LEN;

/// A cgroup: its path below the cgroup v2 root and the container it is,
/// when the path names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cgroup {
    pub path: Arc<str>,
    pub container: Option<Arc<str>>,
}

/// The task that owns a socket, and how we know.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: Comm,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// What `cgroup_id` names, once resolved (see `proc::Cgroups`).
    pub cgroup: Option<Arc<Cgroup>>,
    pub source: OwnerSource,
}

impl Owner {
    /// No owner known.
    pub const UNKNOWN: Owner = Owner {
        pid: 0,
        tid: 0,
        uid: 0,
        comm: Comm::EMPTY,
        cgroup_id: 0,
        cgroup: None,
        source: OwnerSource::Unknown,
    };

    pub fn is_known(&self) -> bool {
        self.source != OwnerSource::Unknown
    }

    pub fn from_raw(raw: &tracer_common::Owner, source: OwnerSource) -> Owner {
        Owner {
            pid: raw.pid,
            tid: raw.tid,
            uid: raw.uid,
            comm: Comm::new(&raw.comm),
            cgroup_id: raw.cgroup_id,
            cgroup: None,
            source,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerSource {
    /// Seen in process context: the task made a call on this socket.
    Syscall,
    /// The listener's owner, for a connection not accepted yet.
    Inherited,
    /// Learnt outside the kernel programs: from the start-up snapshot.
    Cached,
    /// Not known: the socket predates socktrace and was not touched since.
    Unknown,
}

impl OwnerSource {
    pub fn name(&self) -> &'static str {
        match self {
            OwnerSource::Syscall => "syscall",
            OwnerSource::Inherited => "inherited",
            OwnerSource::Cached => "cached",
            OwnerSource::Unknown => "unknown",
        }
    }
}

/// A task's command name, as the kernel keeps it (at most 15 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    pub const EMPTY: Comm = Comm {
        bytes: [0; COMM_LEN],
        len: 0,
    };

    /// `name`'s bytes as a kernel record would carry them; `None` if
    /// longer than a record holds.
    pub fn from_bytes(name: &[u8]) -> Option<Comm> {
        let mut raw = [0u8; COMM_LEN];
        raw.get_mut(..name.len())?.copy_from_slice(name);
        Some(Comm::new(&raw))
    }

    /// `name` cut to the 15 bytes the kernel keeps of a task's name.
    pub fn truncated(name: &str) -> Comm {
        let name = name.as_bytes();
        let kept = &name[..name.len().min(COMM_LEN - 1)];
        Comm::from_bytes(kept).unwrap_or(Comm::EMPTY)
    }

    pub fn new(raw: &[u8; COMM_LEN]) -> Comm {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        Comm {
            bytes: *raw,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len as usize])
    }
}

impl fmt::Display for Comm {
    /// Escaped, for people ([`crate::escape`]); JSON takes [`Comm::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::escape::escaped(&self.bytes[..self.len as usize]).fmt(f)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
