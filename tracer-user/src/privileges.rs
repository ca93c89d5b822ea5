//! After the programs are attached and the start-up snapshot is taken,
//! socktrace needs no privilege: its maps and links are open file
//! descriptors, sock_diag dumps of its own namespace need none. So before
//! it reads a single record it gives every capability up, for good (and
//! with `--user NAME` becomes that user, as tcpdump's `-Z` does).
//!
//! Capabilities and no_new_privs belong to a thread, not to the process:
//! a thread started before they go keeps them all. So they go while the
//! process has one thread, and [`drop_all`] refuses to run otherwise;
//! whatever starts a thread (the terminal's key reader in `top`, a
//! blocking pool) does so after it.
use std::ffi::CString;

use caps::{CapSet, Capability};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DropError {
    #[error("no user named {0}")]
    NoUser(String),
    #[error("cannot become {user}: {call} failed: {err}")]
    Switch {
        user: String,
        call: &'static str,
        err: std::io::Error,
    },
    #[error("cannot drop capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error(
        "cannot give up privileges: {0} threads run, and each would keep its own \
         (a bug: they must be dropped before any thread starts)"
    )]
    Threads(usize),
    #[error("cannot count our threads: {0}")]
    Tasks(std::io::Error),
}

/// Becomes `user` (if given), then clears every capability set and the
/// bounding set, and forbids regaining any through exec; only while this
/// is the process's one thread.
pub fn drop_all(user: Option<&str>) -> Result<(), DropError> {
    let threads = threads().map_err(DropError::Tasks)?;
    if threads != 1 {
        return Err(DropError::Threads(threads));
    }
    // The bounding set first, where we may: dropping from it needs
    // CAP_SETPCAP (a service given only CAP_BPF and CAP_PERFMON has an
    // empty permitted set after this anyway, and no_new_privs below keeps
    // exec from granting any).
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        for cap in caps::all() {
            if caps::has_cap(None, CapSet::Bounding, cap)? {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    if let Some(user) = user {
        become_user(user)?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)?;
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(DropError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// How many threads this process has (its tasks in /proc).
/// Our threads. One that was joined (the program loads' at start) may be
/// listed a moment longer, until it has finished exiting: waited for, up
/// to a tenth of a second.
fn threads() -> std::io::Result<usize> {
    let count = || Ok::<_, std::io::Error>(std::fs::read_dir("/proc/self/task")?.count());
    for _ in 0..100 {
        if count()? == 1 {
            return Ok(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    count()
}

/// Whether `--user NAME` names a user this host has (checked before any
/// program is loaded, so a typo costs nothing).
pub fn user_exists(name: &str) -> bool {
    lookup(name).is_some()
}

fn lookup(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getpwnam with a valid C string; the record is copied out at
    // once (single-threaded at this point of start-up).
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    // SAFETY: null-checked; points to libc's static record.
    unsafe { pw.as_ref() }.map(|pw| (pw.pw_uid, pw.pw_gid))
}

fn become_user(name: &str) -> Result<(), DropError> {
    let (uid, gid) = lookup(name).ok_or_else(|| DropError::NoUser(name.into()))?;
    let fail = |call| DropError::Switch {
        user: name.into(),
        call,
        err: std::io::Error::last_os_error(),
    };
    // SAFETY: plain syscalls with integer arguments; group list of one.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(fail("setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(fail("setresuid"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_leave_another_thread_privileged() {
        // A second thread for sure (however the harness runs tests).
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        // Refused before anything is changed.
        let caps = caps::read(None, CapSet::Effective).unwrap();
        assert!(matches!(drop_all(None), Err(DropError::Threads(n)) if n > 1));
        assert_eq!(caps::read(None, CapSet::Effective).unwrap(), caps);
        drop(done);
        let _ = other.join();
    }

    #[test]
    fn users_are_looked_up() {
        assert!(user_exists("root"));
        assert!(!user_exists("no-such-user-socktrace"));
        assert!(!user_exists("bad\0name"));
    }
}
