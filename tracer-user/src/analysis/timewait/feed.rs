//! Offline input: the kernel's running totals rebuilt from records.
use rustc_hash::FxHashMap;
use tracer_common::service_port;

use super::{Counted, Dest, Key, Role, Totals};
use crate::{
    event::{Detail, Event, SockId, TcpState},
    track::{Close, Opener, Record},
};

/// Offline: the same running totals the kernel keeps, from close records,
/// and the live client sockets per destination, from state events.
pub struct Feed {
    short_ns: u64,
    totals: FxHashMap<Key, (String, Totals)>,
    live: FxHashMap<SockId, Dest>,
    in_use: FxHashMap<Dest, u64>,
}

impl Feed {
    /// Connections shorter than `short_ns` count as short.
    pub fn new(short_ns: u64) -> Feed {
        Feed {
            short_ns,
            totals: FxHashMap::default(),
            live: FxHashMap::default(),
            in_use: FxHashMap::default(),
        }
    }

    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Event(e) => self.state(e),
            Record::Close(c) => self.close(c),
            _ => {}
        }
    }

    /// A client connecting (CLOSE -> SYN_SENT) holds a port towards its
    /// destination.
    fn state(&mut self, e: &Event) {
        let (
            Some(sock),
            Detail::State {
                local,
                remote,
                old,
                new,
                ..
            },
        ) = (e.sock, e.detail)
        else {
            return;
        };
        if old == TcpState::Close && new == TcpState::SynSent {
            let dest = Dest {
                netns: e.netns,
                local: local.ip(),
                remote,
            };
            if self.live.insert(sock, dest).is_none() {
                *self.in_use.entry(dest).or_default() += 1;
            }
        }
    }

    /// A connection's end: its port is no longer in use, and it counts in
    /// its key's totals.
    fn close(&mut self, c: &Close) {
        if let Some(dest) = self.live.remove(&c.sock)
            && let Some(n) = self.in_use.get_mut(&dest)
        {
            *n -= 1;
            if *n == 0 {
                self.in_use.remove(&dest);
            }
        }
        let role = match c.opener {
            Opener::Active => Role::Client,
            Opener::Passive => Role::Server,
            Opener::Listener | Opener::Unknown => Role::Unknown,
        };
        let key = Key {
            netns: c.netns,
            pid: if c.owner.is_known() { c.owner.pid } else { 0 },
            role,
            local: c.local.ip(),
            remote: c.remote.ip(),
            port: service_port(role.raw(), c.local.port(), c.remote.port()),
        };
        let comm = c.owner.comm.as_str().into_owned();
        let (name, t) = self
            .totals
            .entry(key)
            .or_insert_with(|| (comm, Totals::default()));
        if c.owner.is_known() {
            *name = c.owner.comm.as_str().into_owned();
        }
        t.closes += 1;
        t.time_waits += u64::from(c.time_wait);
        t.short += u64::from(c.duration_ns < self.short_ns);
    }

    pub fn counted(&self) -> Vec<Counted> {
        self.totals
            .iter()
            .map(|(key, (comm, totals))| Counted {
                key: key.clone(),
                comm: comm.clone(),
                totals: *totals,
            })
            .collect()
    }

    pub fn in_use(&self) -> &FxHashMap<Dest, u64> {
        &self.in_use
    }
}
