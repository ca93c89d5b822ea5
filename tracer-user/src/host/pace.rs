//! How often to poll sock_diag. A dump walks every socket of the host, the
//! ones it lists and the ones it skips, so its cost grows with the host:
//! with 500,000 sockets one takes tens of milliseconds. Polls come every
//! period asked for (`--tw-poll`, `--interval`) unless that would spend
//! more than 0.5 % of a core on them; then they come less often, so that
//! they never do. What the polls learn stays exact: a TIME_WAIT's end by
//! expiry is stamped at entry + 60 s whenever the poll sees it, and only
//! an early end (reuse, RST) is known to the period. Polls for TIME_WAITs
//! come at least every 60 s (the life of one); polls for a gauge (connections
//! in use) may come as seldom as their cost says.
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// A poll may cost this share of its period, at most: 0.5 %, so that with
/// the rest of an idle socktrace (~0.1 %) it stays under 1 % of a core.
const SHARE: u32 = 200;
/// The longest period of TIME_WAIT polls: the life of a TIME_WAIT.
const TW_PERIOD: Duration = Duration::from_secs(60);

/// The polls so far and the period they keep.
#[derive(Debug)]
pub struct Pace {
    asked: Duration,
    /// The longest period.
    most: Duration,
    period: Duration,
    polls: u64,
    spent: Duration,
}

impl Pace {
    /// For TIME_WAIT polls: every `asked`, or as their cost says, but at
    /// least every 60 s (unless `asked` is longer).
    pub fn new(asked: Duration) -> Pace {
        Pace::at_most(asked, TW_PERIOD.max(asked))
    }

    /// For a gauge's polls: every `asked`, or as seldom as their cost says.
    pub fn unbounded(asked: Duration) -> Pace {
        Pace::at_most(asked, Duration::MAX)
    }

    fn at_most(asked: Duration, most: Duration) -> Pace {
        Pace {
            asked,
            most,
            period: asked,
            polls: 0,
            spent: Duration::ZERO,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// The period asked for, the shortest.
    pub fn asked(&self) -> Duration {
        self.asked
    }

    /// Runs one poll `f`, measuring the CPU time it takes (the kernel's
    /// walk runs in our thread, in its `recvmsg`); true with it if the
    /// period changed.
    pub fn poll<T>(&mut self, f: impl FnOnce() -> T) -> (T, bool) {
        let before = thread_cpu();
        let result = f();
        let changed = self.spent_on(thread_cpu().saturating_sub(before));
        (result, changed)
    }

    /// Runs `f`, a dump that is no poll (the start-up snapshot), and paces
    /// the first poll by the CPU time it took: it comes a period later.
    pub fn first_after<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let before = thread_cpu();
        let result = f();
        self.period = self.paced(thread_cpu().saturating_sub(before));
        result
    }

    /// The period for polls that cost `cost`.
    fn paced(&self, cost: Duration) -> Duration {
        cost.saturating_mul(SHARE).clamp(self.asked, self.most)
    }

    /// Counts one poll that took `cost`; true if the period changed.
    fn spent_on(&mut self, cost: Duration) -> bool {
        self.polls += 1;
        self.spent += cost;
        let period = self.paced(cost);
        let changed = period != self.period;
        self.period = period;
        changed
    }

    /// What the polls cost, for the exit summary; `None` if none ran.
    pub fn summary(&self) -> Option<String> {
        (self.polls > 0).then(|| {
            format!(
                "socktrace: sock_diag polled {} times, {:.2} ms each on average, every {:.2} s",
                self.polls,
                self.spent.as_secs_f64() * 1e3 / self.polls as f64,
                self.period.as_secs_f64()
            )
        })
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn polls_grow_apart_as_they_grow_costly_and_come_back() {
        let mut pace = Pace::new(1000 * MS);
        assert!(!pace.spent_on(2 * MS), "cheap: as asked");
        assert_eq!(pace.period(), 1000 * MS);
        assert!(pace.spent_on(40 * MS));
        assert_eq!(pace.period(), 8000 * MS, "40 ms is 0.5 % of 8 s");
        assert!(pace.spent_on(900 * MS));
        assert_eq!(pace.period(), TW_PERIOD, "never beyond a TIME_WAIT's life");
        assert!(pace.spent_on(3 * MS));
        assert_eq!(pace.period(), 1000 * MS);
        assert_eq!(
            pace.summary().unwrap(),
            "socktrace: sock_diag polled 4 times, 236.25 ms each on average, every 1.00 s"
        );
    }

    #[test]
    fn a_gauges_polls_may_grow_further_apart() {
        let mut pace = Pace::unbounded(1000 * MS);
        assert!(pace.spent_on(900 * MS));
        assert_eq!(pace.period(), 180_000 * MS, "900 ms is 0.5 % of 180 s");
    }

    #[test]
    fn the_snapshot_paces_the_first_poll_and_is_no_poll() {
        let mut pace = Pace::new(1000 * MS);
        let sum = pace.first_after(|| (0..50_000_000u64).map(std::hint::black_box).sum::<u64>());
        assert!(sum > 0);
        assert!(pace.period() > 1000 * MS, "{pace:?}");
        assert!(pace.summary().is_none(), "no poll ran");
    }

    #[test]
    fn a_long_period_asked_for_is_kept() {
        let mut pace = Pace::new(Duration::from_secs(120));
        pace.spent_on(5 * MS);
        assert_eq!(pace.period(), Duration::from_secs(120));
        assert!(Pace::new(MS).summary().is_none());
    }

    #[test]
    fn measures_the_cpu_a_poll_takes() {
        let mut pace = Pace::new(MS);
        let (sum, _) = pace.poll(|| (0..20_000_000u64).map(std::hint::black_box).sum::<u64>());
        assert!(sum > 0);
        assert!(pace.spent > Duration::ZERO, "{pace:?}");
    }
}
