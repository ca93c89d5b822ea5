//! What a run saw, printed to stderr when it ends (and, with `--json`, as
//! a `summary` line): counts by kind, where TIME_WAIT sockets went,
//! short-lived listeners, and everything lost.
use std::fmt;

use rustc_hash::FxHashMap;

use crate::{
    analysis::{listeners::Listeners, timewait::Place},
    escape::escaped,
    event::{Detail, TcpState},
    source::KernelCounters,
    track::{Opener, Record},
};

/// Listeners shorter than this are short-lived in the summary.
pub const SHORT_LISTENER_NS: u64 = 1_000_000_000;
/// Destinations named in the summary.
const TOP: usize = 5;

#[derive(Debug)]
pub struct Summary {
    pub state: u64,
    pub bind: u64,
    pub listen: u64,
    pub release: u64,
    pub close: u64,
    /// Records the filter left out (in userspace; the kernel's share is
    /// never built: see `KernelCounters::emitted`).
    pub filtered: u64,
    /// Ring records that failed validation and were skipped.
    pub malformed: u64,
    /// Connections dropped from tracking to stay within its bound.
    pub untracked: u64,
    pub kernel: KernelCounters,
    /// TIME_WAIT entries by where they point.
    pub time_waits: FxHashMap<Place, u64>,
    /// Listeners (and bound sockets) that closed, and of those, the
    /// short-lived ones (< 1 s), by `proto port comm`.
    pub listeners_closed: u64,
    pub short_listeners: FxHashMap<String, u64>,
    pub short_listeners_total: u64,
    /// Journal/syslog entries that could not be sent.
    pub log_failed: u64,
    /// `loss` records (one each time losses were reported).
    pub loss: u64,
    /// Output lines dropped because the reader of our output fell behind.
    pub output_dropped: u64,
    /// Connections forgotten because the kernel no longer had them though
    /// their close was never seen.
    pub gone: u64,
    /// Of `state`, the `TIME_WAIT -> CLOSE` ends we found by polling
    /// (the kernel has no event for them).
    pub time_wait_ends: u64,
    listeners: Listeners,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            state: 0,
            bind: 0,
            listen: 0,
            release: 0,
            close: 0,
            filtered: 0,
            malformed: 0,
            untracked: 0,
            kernel: KernelCounters::default(),
            time_waits: FxHashMap::default(),
            listeners_closed: 0,
            short_listeners: FxHashMap::default(),
            short_listeners_total: 0,
            log_failed: 0,
            loss: 0,
            output_dropped: 0,
            time_wait_ends: 0,
            gone: 0,
            listeners: Listeners::new(SHORT_LISTENER_NS),
        }
    }
}

impl Summary {
    pub fn count(&mut self, record: &Record) {
        if let Some(note) = self.listeners.observe(record)
            && let crate::analysis::listeners::What::Closed { short, .. } = note.what
        {
            self.listeners_closed += 1;
            if short {
                self.short_listeners_total += 1;
                let comm = if note.owner.is_known() {
                    note.owner.comm.as_str().into_owned()
                } else {
                    "-".into()
                };
                let key = format!("{} {} {}", note.proto, note.addr.port(), comm);
                *self.short_listeners.entry(key).or_default() += 1;
            }
        }
        match record {
            Record::Existing(..) => {}
            Record::Loss(..) => self.loss += 1,
            Record::Queues(..) => {}
            Record::Close(c) => {
                self.close += 1;
                if c.time_wait {
                    let place = match c.opener {
                        Opener::Passive => Place::Served(c.local),
                        _ => Place::To(c.remote),
                    };
                    *self.time_waits.entry(place).or_default() += 1;
                }
            }
            Record::Event(e) => match e.detail {
                Detail::State { old, .. } => {
                    self.state += 1;
                    self.time_wait_ends += u64::from(old == TcpState::TimeWait);
                }
                Detail::Bind { .. } => self.bind += 1,
                Detail::Listen { .. } => self.listen += 1,
                Detail::Release { .. } => self.release += 1,
            },
        }
    }

    /// Listeners and bound sockets open now.
    pub fn listeners_open(&self) -> u64 {
        self.listeners.open_now() as u64
    }
}

/// The `n` largest of `counts`, largest first (ties by key).
pub fn top<K: Ord + Clone>(counts: &FxHashMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    let mut all: Vec<(K, u64)> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// `a (3), b (1)`, each key escaped (a listener's names its program).
fn list<K: fmt::Display>(items: &[(K, u64)]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|(k, n)| format!("{} ({n})", escaped(&k.to_string())))
        .collect();
    parts.join(", ")
}

impl fmt::Display for Summary {
    /// Lines for what was seen (only those with something to say), then
    /// the counts and losses, always last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_time_waits(f)?;
        self.write_listeners(f)?;
        self.write_totals(f)?;
        for (n, what) in self.extras() {
            if n > 0 {
                write!(f, "; {n} {what}")?;
            }
        }
        Ok(())
    }
}

/// The lines `Display` writes, in order.
impl Summary {
    /// Connections that entered TIME_WAIT, if any, and their top owners.
    fn write_time_waits(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entered: u64 = self.time_waits.values().sum();
        if entered > 0 {
            writeln!(
                f,
                "socktrace: {entered} connections entered TIME_WAIT, most {}",
                list(&top(&self.time_waits, TOP))
            )?;
        }
        Ok(())
    }

    /// Listeners closed, if any, and the short-lived among them.
    fn write_listeners(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.listeners_closed > 0 {
            let short: u64 = self.short_listeners.values().sum();
            write!(
                f,
                "socktrace: {} listeners closed, {short} of them short-lived (< 1 s)",
                self.listeners_closed
            )?;
            if short > 0 {
                write!(f, ": {}", list(&top(&self.short_listeners, TOP)))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    /// The event totals and losses (the last line, left open for `extras`).
    fn write_totals(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        )
    }

    /// Counts said only when not zero, each with what it counts.
    fn extras(&self) -> [(u64, &'static str); 12] {
        [
            (self.filtered, "records filtered out"),
            (self.malformed, "malformed records skipped"),
            (
                self.kernel.unpaired,
                "bind/listen calls missed (in flight at start)",
            ),
            (self.kernel.owner_failed, "sockets without owner storage"),
            (
                self.kernel.tally_overflow,
                "connection ends counted in the overflow row (tally map full)",
            ),
            (
                self.kernel.bound_full,
                "bound sockets whose end is not followed (bound-socket table full)",
            ),
            (
                self.untracked,
                "connections dropped from tracking (table full)",
            ),
            (self.log_failed, "journal/syslog entries not sent"),
            (self.loss, "loss records"),
            (
                self.output_dropped,
                "output lines dropped (the reader fell behind, or writing failed)",
            ),
            (self.gone, "connections whose close was missed, forgotten"),
            (
                self.time_wait_ends,
                "of the state events are TIME_WAIT ends found by polling",
            ),
        ]
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

    #[test]
    fn names_short_listeners_escaped() {
        use crate::{
            escape::{FORGING, FORGING_SHOWN},
            event::{Errno, Event, Proto},
        };
        let mut s = Summary::default();
        let listen = Detail::Listen {
            addr: "127.0.0.1:7011".parse().unwrap(),
            backlog: 1,
            errno: Errno(0),
        };
        let close = Detail::transition(
            "127.0.0.1:7011",
            "0.0.0.0:0",
            TcpState::Listen,
            TcpState::Close,
        );
        for (at, detail) in [(1_000, listen), (2_000, close)] {
            s.count(&Record::Event(Event::sample(
                at,
                7,
                FORGING,
                Proto::Tcp,
                detail,
            )));
        }
        let text = s.to_string();
        assert!(
            text.contains(&format!(
                "short-lived (< 1 s): tcp 7011 {FORGING_SHOWN} (1)"
            )),
            "{text}"
        );
        assert!(
            !text.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
            "{text:?}"
        );
    }
}
