//! What the host says, read from the OS: sockets that exist
//! (sock_diag), who holds them (the start-up iterator), cgroups, the TCP settings and
//! counters (sysctls, sockstat). Small readers, called by the commands and
//! handed to the pipeline; nothing after the ring reads the host itself.
pub mod cgroups;
pub mod diag;
pub mod owners;
pub mod pace;
pub mod sysctl;

use std::{fs::File, io};

pub use self::{
    cgroups::Cgroups,
    sysctl::{settings, time_wait_count},
};
use self::{diag::Dump, owners::SocketOwners};
use crate::{
    event::{Owner, SockId, TcpState},
    track::Known,
};

/// Hands every TCP socket that matches `which` and exists now to `each`,
/// with its owner from the start-up iterator's `socket_files` (see
/// [`SocketOwners::read`]), but for TIME_WAITs that began at or after
/// `since_ns` (when the kernel programs began to see their entry: those
/// are in the ring).
pub fn snapshot(
    which: Dump,
    socket_files: Option<File>,
    since_ns: u64,
    mut each: impl FnMut(Known),
) -> io::Result<()> {
    let owners = SocketOwners::read(socket_files)?;
    let netns = diag::own_netns();
    diag::for_each(which, |s| {
        if s.state == TcpState::TimeWait && s.began_since(crate::clock::mono_now(), since_ns) {
            return;
        }
        each(Known {
            netns,
            owner: owners.get(s.inode).cloned().unwrap_or(Owner::UNKNOWN),
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
