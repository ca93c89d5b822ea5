//! The keys TIME_WAIT sockets are counted by, and the host settings and
//! analysis settings that decide what they cost.
use std::net::{IpAddr, SocketAddr};

use tracer_common::{ROLE_CLIENT, ROLE_SERVER};

/// Which end of its connection a socket was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// It connected: its TIME_WAIT holds an ephemeral port towards the
    /// server.
    Client,
    /// A listener accepted it: the server closed first.
    Server,
    /// Its start was not seen.
    Unknown,
}

impl Role {
    /// From a tally key's `role` (`ROLE_*`, 0 unknown).
    pub fn from_raw(raw: u8) -> Role {
        match raw {
            ROLE_CLIENT => Role::Client,
            ROLE_SERVER => Role::Server,
            _ => Role::Unknown,
        }
    }

    /// The tally key's `role`: the inverse of [`Role::from_raw`].
    pub fn raw(self) -> u8 {
        match self {
            Role::Client => ROLE_CLIENT,
            Role::Server => ROLE_SERVER,
            Role::Unknown => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
}

/// Where TIME_WAIT sockets point: a client's destination, or the local
/// address of a server that closed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    To(SocketAddr),
    Served(SocketAddr),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::To(addr) => write!(f, "to {addr}"),
            Place::Served(addr) => write!(f, "served on {addr}"),
        }
    }
}

/// Who and where: what the kernel counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub netns: u32,
    /// Owner's pid; 0 when unknown.
    pub pid: u32,
    pub role: Role,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// The service port: remote for a client, local for a server.
    pub port: u16,
}

impl Key {
    /// A client's destination: local address, remote address and port.
    pub(super) fn destination(&self) -> Dest {
        Dest {
            netns: self.netns,
            local: self.local,
            remote: SocketAddr::new(self.remote, self.port),
        }
    }
}

/// Where a client's ephemeral ports go: one (local address, remote
/// address:port) shares one range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub netns: u32,
    pub local: IpAddr,
    pub remote: SocketAddr,
}

/// Running totals for a key since counting began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections that ended in TIME_WAIT (this side closed first).
    pub time_waits: u64,
    pub closes: u64,
    /// Closes of connections shorter than the short threshold.
    pub short: u64,
}

/// One key's totals and its owner's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub key: Key,
    pub comm: String,
    pub totals: Totals,
}

/// Host settings that decide what TIME_WAIT costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: (u16, u16),
    /// `net.ipv4.tcp_tw_reuse`.
    pub tw_reuse: Option<u8>,
    /// `net.ipv4.tcp_max_tw_buckets`.
    pub max_tw_buckets: Option<u64>,
}

impl Host {
    pub(super) fn range_size(&self) -> u64 {
        u64::from(self.port_range.1.saturating_sub(self.port_range.0)) + 1
    }

    /// Whether a new connection to `remote` may take a port still in
    /// TIME_WAIT.
    pub(super) fn reuses_towards(&self, remote: IpAddr) -> bool {
        match self.tw_reuse {
            Some(1) => true,
            Some(2) => remote.is_loopback(),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub top: usize,
    /// Warn above this share of the ephemeral range, in percent.
    pub threshold_pct: u8,
    /// Connections per second to one destination from one process that
    /// count as connection-per-request (with nearly all of them short).
    pub per_request_rate: u32,
}
