//! Short-lived listeners (pure: records in, notes and a table out). Follows
//! every TCP listener (LISTEN until LISTEN -> CLOSE) and every bound socket
//! that never listens nor connects (bind until its release), however short
//! its life, and every bind that failed, with who tried.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use rustc_hash::FxHashMap;

use crate::{
    event::{Detail, Errno, Event, Owner, Proto, QueueSample, SockId, TcpState},
    track::Record,
};

/// What kind of socket is listening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A TCP socket in LISTEN.
    Listen,
    /// Bound, never listening nor connecting (a UDP server, a TCP bind
    /// without listen).
    Bound,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Listen => "listen",
            Kind::Bound => "bound",
        }
    }
}

/// One line of the live view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub at_ns: u64,
    pub what: What,
    pub kind: Kind,
    pub proto: Proto,
    pub addr: SocketAddr,
    pub owner: Owner,
    /// The socket, and its network namespace (0: unknown).
    pub sock: SockId,
    pub netns: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// Started listening (TCP: `backlog`) or bound (UDP).
    Opened { backlog: Option<i32> },
    /// Closed after `lifetime_ns` (`None`: it predates us); `short` when
    /// under the threshold.
    Closed {
        lifetime_ns: Option<u64>,
        short: bool,
    },
    /// bind(2) failed.
    BindFailed { errno: Errno },
    /// Its accept queue was full: it dropped `dropped` SYNs or connections
    /// since the last sample; `depth` of `backlog` wait now.
    Dropped {
        dropped: u64,
        depth: u32,
        backlog: u32,
    },
}

/// A table row: one port, protocol, kind and program.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub proto: Proto,
    pub port: u16,
    pub kind: Kind,
    /// The owner's name, `-` when `known` is not.
    pub comm: String,
    pub known: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Listen (or bind) cycles that ended.
    pub cycles: u64,
    /// Of `cycles`, those shorter than the threshold.
    pub short: u64,
    /// Open now.
    pub open: u64,
    /// Failed binds to this port by this program.
    pub failed_binds: u64,
    /// The last failure.
    pub last_errno: Option<Errno>,
    /// SYNs and connections its listeners dropped (full accept queues)
    /// since we started.
    pub drops: u64,
    /// The fullest of its open listeners' queues at the last sample:
    /// (waiting, backlog).
    pub queue: Option<(u32, u32)>,
    pub pids: BTreeSet<u32>,
    /// Lifetimes of ended cycles we saw start (bounded sample).
    lifetimes: Vec<u64>,
    min_ns: Option<u64>,
    max_ns: Option<u64>,
}

/// The most lifetimes kept per row for the median (min and max stay exact).
const SAMPLE: usize = 4096;

impl Row {
    /// (min, median, max) lifetime of the ended cycles, if any was timed.
    pub fn lifetimes(&self) -> Option<(u64, u64, u64)> {
        let mut sorted = self.lifetimes.clone();
        sorted.sort_unstable();
        let median = *sorted.get(sorted.len() / 2)?;
        Some((self.min_ns?, median, self.max_ns?))
    }

    fn ended(&mut self, lifetime_ns: Option<u64>, short: bool) {
        self.cycles += 1;
        self.short += u64::from(short);
        self.open = self.open.saturating_sub(1);
        if let Some(ns) = lifetime_ns {
            self.min_ns = Some(self.min_ns.map_or(ns, |m| m.min(ns)));
            self.max_ns = Some(self.max_ns.map_or(ns, |m| m.max(ns)));
            if self.lifetimes.len() < SAMPLE {
                self.lifetimes.push(ns);
            } else {
                // Keep a spread over the whole run: replace in rotation.
                let at = (self.cycles as usize) % SAMPLE;
                self.lifetimes[at] = ns;
            }
        }
    }
}

/// A socket open now.
#[derive(Clone, Debug)]
struct Open {
    kind: Kind,
    /// When it started listening or was bound; `None` if before us.
    since_ns: Option<u64>,
    proto: Proto,
    addr: SocketAddr,
    owner: Owner,
    netns: u32,
    announced: bool,
    /// `QueueSample::drops` at the last sample; `None` before the first.
    drops: Option<u32>,
}

#[derive(Debug)]
pub struct Listeners {
    short_ns: u64,
    open: FxHashMap<SockId, Open>,
    rows: BTreeMap<RowKey, Row>,
}

impl Listeners {
    /// Lifetimes under `short_ns` are flagged.
    pub fn new(short_ns: u64) -> Listeners {
        Listeners {
            short_ns,
            open: FxHashMap::default(),
            rows: BTreeMap::new(),
        }
    }

    pub fn short_ns(&self) -> u64 {
        self.short_ns
    }

    /// Listeners and bound sockets open now.
    pub fn open_now(&self) -> usize {
        self.open.len()
    }

    /// The row of each socket open now, and when it opened (`None`: before
    /// we started).
    pub fn open(&self) -> impl Iterator<Item = (RowKey, Option<u64>)> + '_ {
        self.open.values().map(|o| {
            let key = row_key(o.proto, o.addr.port(), o.kind, &o.owner);
            (key, o.since_ns)
        })
    }

    /// The table: every row with something to say, by protocol, port,
    /// kind, program.
    pub fn rows(&self) -> impl Iterator<Item = (&RowKey, &Row)> {
        self.rows
            .iter()
            .filter(|(_, r)| r.cycles + r.open + r.failed_binds + r.drops > 0)
    }

    /// Follows `record`; returns the line to show for it, if any.
    pub fn observe(&mut self, record: &Record) -> Option<Note> {
        match record {
            Record::Existing(k, _) if k.state == TcpState::Listen => {
                let open = Open {
                    kind: Kind::Listen,
                    since_ns: None,
                    proto: Proto::Tcp,
                    addr: k.local,
                    owner: k.owner.clone(),
                    netns: k.netns,
                    announced: true,
                    drops: None,
                };
                self.row(&open).open += 1;
                self.open.insert(k.sock, open);
                None
            }
            Record::Event(e) => self.event(e),
            _ => None,
        }
    }

    fn event(&mut self, e: &Event) -> Option<Note> {
        let sock = e.sock?;
        match e.detail {
            Detail::Bind { addr, errno, .. } if errno.0 != 0 => {
                Some(self.bind_failed(sock, e, addr, errno))
            }
            Detail::Bind { addr, .. } => self.bound(sock, e, addr),
            Detail::State {
                local,
                new: TcpState::Listen,
                ..
            } => {
                // Not announced yet: the listen record brings the backlog.
                self.start(sock, e, Kind::Listen, local, false);
                None
            }
            Detail::Listen {
                addr,
                backlog,
                errno,
            } if errno.0 == 0 => self.listened(sock, e, addr, backlog),
            Detail::State { old, new, .. } if old == TcpState::Listen && new == TcpState::Close => {
                self.end(sock, e)
            }
            Detail::Release { .. } => self.end(sock, e),
            _ => None,
        }
    }

    fn bind_failed(&mut self, sock: SockId, e: &Event, addr: SocketAddr, errno: Errno) -> Note {
        let key = row_key(e.proto, addr.port(), Kind::Bound, &e.owner);
        let row = self.rows.entry(key).or_default();
        row.failed_binds += 1;
        row.last_errno = Some(errno);
        row.pids.insert(e.owner.pid);
        note(e, sock, What::BindFailed { errno }, Kind::Bound, addr)
    }

    fn bound(&mut self, sock: SockId, e: &Event, addr: SocketAddr) -> Option<Note> {
        // TCP: a listener or a client to be; announced at listen,
        // or at its release if it never listens.
        let udp = e.proto == Proto::Udp;
        self.start(sock, e, Kind::Bound, addr, udp);
        udp.then(|| note(e, sock, What::Opened { backlog: None }, Kind::Bound, addr))
    }

    /// A successful listen(): announces the listener, with its backlog.
    fn listened(
        &mut self,
        sock: SockId,
        e: &Event,
        addr: SocketAddr,
        backlog: i32,
    ) -> Option<Note> {
        let open = match self.open.get_mut(&sock) {
            Some(open) if open.kind == Kind::Listen => open,
            _ => {
                // Its CLOSE -> LISTEN was not seen: start it now.
                self.start(sock, e, Kind::Listen, addr, false);
                self.open.get_mut(&sock)?
            }
        };
        if open.announced {
            return None; // listen() again on a listener: new backlog
        }
        open.announced = true;
        if open.addr != addr {
            // listen() without bind: the kernel picks the port after
            // the socket is already LISTEN; the call's exit knows it.
            let mut moved = open.clone();
            moved.addr = addr;
            let before = std::mem::replace(open, moved.clone());
            self.row(&before).open -= 1;
            self.row(&moved).open += 1;
        }
        Some(note(
            e,
            sock,
            What::Opened {
                backlog: Some(backlog),
            },
            Kind::Listen,
            addr,
        ))
    }

    fn start(&mut self, sock: SockId, e: &Event, kind: Kind, addr: SocketAddr, announced: bool) {
        let open = Open {
            kind,
            since_ns: Some(e.mono_ns),
            proto: e.proto,
            addr,
            owner: e.owner.clone(),
            netns: e.netns,
            announced,
            // Made since we started: every drop it counts is news.
            drops: Some(0),
        };
        // A bound TCP socket that now listens: one socket, now a listener.
        if let Some(before) = self.open.remove(&sock) {
            self.row(&before).open -= 1;
        }
        self.row(&open).open += 1;
        self.open.insert(sock, open);
    }

    fn end(&mut self, sock: SockId, e: &Event) -> Option<Note> {
        let open = self.open.remove(&sock)?;
        let lifetime_ns = open.since_ns.map(|since| e.mono_ns.saturating_sub(since));
        let short = lifetime_ns.is_some_and(|ns| ns < self.short_ns);
        self.row(&open).ended(lifetime_ns, short);
        // Who closed it, if known; else who opened it.
        let owner = if e.owner.is_known() {
            e.owner.clone()
        } else {
            open.owner
        };
        Some(Note {
            at_ns: e.mono_ns,
            what: What::Closed { lifetime_ns, short },
            kind: open.kind,
            proto: open.proto,
            addr: open.addr,
            owner,
            sock,
            netns: open.netns,
        })
    }

    /// Takes in a sample of every listener's accept queue at `now_ns`;
    /// returns a note for each that dropped since the last one. Drops of a
    /// listener older than us before its first sample are not news.
    pub fn queues(&mut self, now_ns: u64, samples: &[QueueSample]) -> Vec<Note> {
        let mut fullest: FxHashMap<RowKey, (u32, u32)> = FxHashMap::default();
        let mut notes = Vec::new();
        for sample in samples {
            let Some(open) = self.open.get_mut(&sample.sock) else {
                continue; // filtered out, or opened after our last events
            };
            let before = open.drops.replace(sample.drops).unwrap_or(sample.drops);
            let dropped = u64::from(sample.drops.saturating_sub(before));
            let key = row_key(open.proto, open.addr.port(), open.kind, &open.owner);
            if dropped > 0 {
                // The listener's row exists: it was made with the listener.
                self.rows.entry(key.clone()).or_default().drops += dropped;
                notes.push(Note {
                    at_ns: now_ns,
                    what: What::Dropped {
                        dropped,
                        depth: sample.depth,
                        backlog: sample.backlog,
                    },
                    kind: open.kind,
                    proto: open.proto,
                    addr: open.addr,
                    owner: open.owner.clone(),
                    sock: sample.sock,
                    netns: open.netns,
                });
            }
            let queue = fullest.entry(key).or_insert((0, sample.backlog));
            if sample.depth >= queue.0 {
                *queue = (sample.depth, sample.backlog);
            }
        }
        for (key, row) in &mut self.rows {
            row.queue = fullest.get(key).copied();
        }
        notes
    }

    fn row(&mut self, open: &Open) -> &mut Row {
        let key = row_key(open.proto, open.addr.port(), open.kind, &open.owner);
        let row = self.rows.entry(key).or_default();
        if open.owner.is_known() {
            row.pids.insert(open.owner.pid);
        }
        row
    }
}

fn row_key(proto: Proto, port: u16, kind: Kind, owner: &Owner) -> RowKey {
    RowKey {
        proto,
        port,
        kind,
        comm: if owner.is_known() {
            owner.comm.as_str().into_owned()
        } else {
            "-".into()
        },
        known: owner.is_known(),
    }
}

fn note(e: &Event, sock: SockId, what: What, kind: Kind, addr: SocketAddr) -> Note {
    Note {
        at_ns: e.mono_ns,
        what,
        kind,
        proto: e.proto,
        addr,
        owner: e.owner.clone(),
        sock,
        netns: e.netns,
    }
}

#[cfg(test)]
mod tests;
