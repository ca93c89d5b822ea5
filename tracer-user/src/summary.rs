//! What a run saw, printed to stderr when it ends.
use std::fmt;

use crate::{event::Detail, source::KernelCounters, track::Record};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub state: u64,
    pub bind: u64,
    pub listen: u64,
    pub release: u64,
    pub close: u64,
    /// Ring records that failed validation and were skipped.
    pub malformed: u64,
    /// Connections dropped from tracking to stay within its bound.
    pub untracked: u64,
    pub kernel: KernelCounters,
}

impl Summary {
    pub fn count(&mut self, record: &Record) {
        match record {
            Record::Existing(..) | Record::Loss(..) => {}
            Record::Close(_) => self.close += 1,
            Record::Event(e) => match e.detail {
                Detail::State { .. } => self.state += 1,
                Detail::Bind { .. } => self.bind += 1,
                Detail::Listen { .. } => self.listen += 1,
                Detail::Release { .. } => self.release += 1,
            },
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.state + self.bind + self.listen + self.release;
        write!(
            f,
            "socktrace: {total} events (state {}, bind {}, listen {}, release {}), {} connections \
             closed; lost {} (ring buffer full) + {} (another BPF program was running)",
            self.state,
            self.bind,
            self.listen,
            self.release,
            self.close,
            self.kernel.ring_drops,
            self.kernel.recursion_misses
        )?;
        let extra = [
            (self.malformed, "malformed records skipped"),
            (
                self.kernel.unpaired,
                "bind/listen calls missed (in flight at start)",
            ),
            (self.kernel.owner_failed, "sockets without owner storage"),
            (
                self.untracked,
                "connections dropped from tracking (table full)",
            ),
        ];
        for (n, what) in extra {
            if n > 0 {
                write!(f, "; {n} {what}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_every_count() {
        let s = Summary {
            state: 10,
            bind: 2,
            listen: 1,
            close: 3,
            kernel: KernelCounters {
                ring_drops: 3,
                ..KernelCounters::default()
            },
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "socktrace: 13 events (state 10, bind 2, listen 1, release 0), 3 connections \
             closed; lost 3 (ring buffer full) + 0 (another BPF program was running)"
        );
        let s = Summary {
            malformed: 1,
            untracked: 4,
            kernel: KernelCounters {
                ring_drops: 0,
                unpaired: 2,
                ..KernelCounters::default()
            },
            ..s
        };
        assert!(s.to_string().ends_with(
            "; 1 malformed records skipped; 2 bind/listen calls missed (in flight at start); \
             4 connections dropped from tracking (table full)"
        ));
    }
}
