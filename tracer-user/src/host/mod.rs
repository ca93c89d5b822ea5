//! What the host says, read from the OS: sockets that exist
//! (sock_diag), who holds them (/proc), cgroups, the TCP settings and
//! counters (sysctls, sockstat). Small readers, called by the commands and
//! handed to the pipeline; nothing after the ring reads the host itself.
pub mod cgroups;
pub mod diag;
pub mod pace;
pub mod proc;
pub mod sysctl;

use std::io;

use self::diag::Dump;
pub use self::{
    cgroups::Cgroups,
    sysctl::{settings, time_wait_count},
};
use crate::{
    event::{Owner, SockId},
    track::Known,
};

/// Hands every TCP socket that matches `which` and exists now to `each`,
/// with its owner from /proc; first `denied` gets the processes whose
/// sockets we may not see (see [`proc::SocketOwners::denied`]).
pub fn snapshot(
    which: Dump,
    denied: impl FnOnce(&[u32]),
    mut each: impl FnMut(Known),
) -> io::Result<()> {
    let owners = proc::socket_owners(crate::probe::cgroup_v2_root().as_deref());
    denied(&owners.denied);
    let netns = diag::own_netns();
    diag::for_each(which, |s| {
        each(Known {
            netns,
            owner: owners
                .by_inode
                .get(&s.inode)
                .cloned()
                .unwrap_or(Owner::UNKNOWN),
            sock: s.sock,
            state: s.state,
            local: s.local,
            remote: s.remote,
        });
    })
}

/// Fills `present` with the TCP sockets of our network namespace that
/// match `which`, sorted.
pub fn listed(which: Dump, present: &mut Vec<SockId>) -> io::Result<()> {
    present.clear();
    diag::for_each(which, |s| present.push(s.sock))?;
    present.sort_unstable();
    Ok(())
}
