//! What the host says, read from the OS: sockets that exist
//! (sock_diag), who holds them (/proc), cgroups, the TCP settings and
//! counters (sysctls, sockstat). Small readers, called by the commands and
//! handed to the pipeline; nothing after the ring reads the host itself.
pub mod cgroups;
pub mod diag;
pub mod pace;
pub mod proc;
pub mod sysctl;

use std::{io, net::SocketAddr};

use self::diag::Dump;
pub use self::{
    cgroups::Cgroups,
    sysctl::{settings, time_wait_count},
};
use crate::{
    event::{Owner, SockId},
    track::Known,
};

/// Every TCP socket that exists now and that `wanted(local, remote)`, with
/// its owner from /proc; first `denied` gets the processes whose sockets
/// we may not see (see [`proc::SocketOwners::denied`]).
pub fn snapshot(
    which: Dump,
    wanted: impl Fn(&SocketAddr, &SocketAddr) -> bool,
    denied: impl FnOnce(&[u32]),
) -> io::Result<Vec<Known>> {
    let owners = proc::socket_owners(crate::probe::cgroup_v2_root().as_deref());
    denied(&owners.denied);
    let mut known = Vec::new();
    let netns = diag::own_netns();
    diag::for_each(which, |s| {
        if wanted(&s.local, &s.remote) {
            known.push(Known {
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
        }
    })?;
    Ok(known)
}

/// Fills `present` with the TCP sockets of our network namespace that
/// match `which`, sorted.
pub fn listed(which: Dump, present: &mut Vec<SockId>) -> io::Result<()> {
    present.clear();
    diag::for_each(which, |s| present.push(s.sock))?;
    present.sort_unstable();
    Ok(())
}
