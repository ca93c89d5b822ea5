//! What a run saw, printed to stderr when it ends.
use std::fmt;

use crate::source::KernelCounters;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub state: u64,
    pub bind: u64,
    pub listen: u64,
    /// Ring records that failed validation and were skipped.
    pub malformed: u64,
    pub kernel: KernelCounters,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.state + self.bind + self.listen;
        write!(
            f,
            "socktrace: {total} events (state {}, bind {}, listen {}); lost {} (ring buffer full)",
            self.state, self.bind, self.listen, self.kernel.ring_drops
        )?;
        if self.malformed > 0 {
            write!(f, "; {} malformed records skipped", self.malformed)?;
        }
        if self.kernel.unpaired > 0 {
            write!(
                f,
                "; {} bind/listen calls missed (in flight at start)",
                self.kernel.unpaired
            )?;
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
            malformed: 0,
            kernel: KernelCounters {
                ring_drops: 3,
                unpaired: 0,
            },
        };
        assert_eq!(
            s.to_string(),
            "socktrace: 13 events (state 10, bind 2, listen 1); lost 3 (ring buffer full)"
        );
        let s = Summary {
            malformed: 1,
            kernel: KernelCounters {
                ring_drops: 0,
                unpaired: 2,
            },
            ..s
        };
        assert!(s.to_string().ends_with(
            "; 1 malformed records skipped; 2 bind/listen calls missed (in flight at start)"
        ));
    }
}
