//! One JSON line's fields, and the record they make.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use serde::{
    Deserialize,
    de::{MapAccess, Visitor},
};

use super::LineError;
use crate::{
    event::Cgroup,
    event::{
        Comm, Detail, Errno, Event, Owner, OwnerSource, Proto, QueueSample, SockId, StateInfo,
        TcpState, TcpStats, TwEnd, family_name,
    },
    source::KernelCounters,
    track::{Close, Failure, Known, Opener, Reason, Record, Side},
};

/// A line's `type`, read before the rest so lines of other kinds are
/// skipped whatever their fields.
#[derive(Deserialize)]
pub(super) struct Tag {
    #[serde(rename = "type")]
    pub kind: Kind,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Header,
    State,
    Bind,
    Listen,
    Release,
    Close,
    Socket,
    Loss,
    Queues,
    #[serde(other)]
    Other,
}

/// Every field of every record type; which are required depends on the
/// type.
#[derive(Deserialize)]
pub(super) struct Line<'a> {
    #[serde(borrow)]
    time: Option<&'a str>,
    pid: Option<u32>,
    tid: Option<u32>,
    uid: Option<u32>,
    comm: Option<String>,
    cgroup_id: Option<u64>,
    cgroup: Option<String>,
    container: Option<String>,
    owner_source: Option<&'a str>,
    proto: Option<&'a str>,
    family: Option<&'a str>,
    netns: Option<u32>,
    sock: Option<&'a str>,
    saddr: Option<&'a str>,
    sport: Option<u16>,
    daddr: Option<&'a str>,
    dport: Option<u16>,
    old_state: Option<&'a str>,
    new_state: Option<&'a str>,
    timewait_end: Option<&'a str>,
    state: Option<&'a str>,
    addr: Option<&'a str>,
    port: Option<u16>,
    requested_port: Option<u16>,
    backlog: Option<i32>,
    errno: Option<i32>,
    opened: Option<&'a str>,
    closed_first: Option<&'a str>,
    reset_by: Option<&'a str>,
    reset_reason: Option<&'a str>,
    failure: Option<FailureLine<'a>>,
    time_wait: Option<bool>,
    duration_ms: Option<f64>,
    state_ms: Option<Spent<'a>>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    connect_ms: Option<f64>,
    syn_retransmits: Option<u32>,
    retransmits: Option<u32>,
    srtt_ms: Option<f64>,
    rttvar_ms: Option<f64>,
    predates_start: Option<bool>,
    ring_drops: Option<u64>,
    recursion_misses: Option<u64>,
    #[serde(borrow)]
    listeners: Option<Vec<QueueLine<'a>>>,
}

/// One listener of a `queues` line.
#[derive(Deserialize)]
struct QueueLine<'a> {
    sock: &'a str,
    queue: u32,
    backlog: u32,
    drops: u32,
}

#[derive(Deserialize)]
struct FailureLine<'a> {
    reason: &'a str,
    errno: i32,
}

/// `state_ms` in the order written (of first visit), which a map of
/// `serde_json` would not keep.
struct Spent<'a>(Vec<(&'a str, f64)>);

impl<'de: 'a, 'a> Deserialize<'de> for Spent<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Spent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds by state name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spent<'de>, A::Error> {
                let mut spent = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    spent.push(entry);
                }
                Ok(Spent(spent))
            }
        }
        d.deserialize_map(InOrder)
    }
}

impl Line<'_> {
    /// The record of a line of type `kind` (`None` for other types).
    pub(super) fn record(self, kind: Kind) -> Result<Option<Record>, LineError> {
        let at = wall_ns(need(self.time, "time")?)?;
        let detail = match kind {
            Kind::State => {
                let (local, remote) = self.ends()?;
                Detail::State {
                    local,
                    remote,
                    old: state("old_state", self.old_state)?,
                    new: state("new_state", self.new_state)?,
                    info: StateInfo {
                        tw_end: opt_named("timewait_end", self.timewait_end, TW_ENDS, TwEnd::name)?,
                        ..StateInfo::default()
                    },
                }
            }
            Kind::Bind => Detail::Bind {
                addr: endpoint(("addr", self.addr), ("port", self.port))?,
                requested_port: need(self.requested_port, "requested_port")?,
                errno: Errno(need(self.errno, "errno")?),
            },
            Kind::Listen => Detail::Listen {
                addr: endpoint(("addr", self.addr), ("port", self.port))?,
                backlog: need(self.backlog, "backlog")?,
                errno: Errno(need(self.errno, "errno")?),
            },
            Kind::Release => Detail::Release {
                addr: endpoint(("addr", self.addr), ("port", self.port))?,
            },
            Kind::Close => return Ok(Some(Record::Close(self.close(at)?))),
            Kind::Socket => return Ok(Some(Record::Existing(self.known()?, at))),
            Kind::Loss => {
                let counters = KernelCounters {
                    ring_drops: need(self.ring_drops, "ring_drops")?,
                    recursion_misses: need(self.recursion_misses, "recursion_misses")?,
                    ..KernelCounters::default()
                };
                return Ok(Some(Record::Loss(counters, at)));
            }
            Kind::Queues => {
                let samples = need(self.listeners.as_ref(), "listeners")?
                    .iter()
                    .map(|q| {
                        Ok(QueueSample {
                            sock: sock_id(q.sock)?,
                            depth: q.queue,
                            backlog: q.backlog,
                            drops: q.drops,
                        })
                    })
                    .collect::<Result<_, LineError>>()?;
                return Ok(Some(Record::Queues(samples, at)));
            }
            Kind::Header | Kind::Other => return Ok(None),
        };
        let event = Event {
            mono_ns: at,
            owner: self.owner()?,
            proto: proto(need(self.proto, "proto")?)?,
            sock: self.sock.map(sock_id).transpose()?,
            netns: self.netns(),
            detail,
        };
        self.check_family(event.local())?;
        Ok(Some(Record::Event(event)))
    }

    fn close(self, at: u64) -> Result<Close, LineError> {
        let (local, remote) = self.ends()?;
        self.check_family(&local)?;
        let failure = |f: &FailureLine<'_>| -> Result<Failure, LineError> {
            Ok(Failure {
                reason: named("failure", f.reason, REASONS, Reason::name)?,
                errno: Errno(f.errno),
            })
        };
        let spent = need(self.state_ms.as_ref(), "state_ms")?
            .0
            .iter()
            .map(|&(name, ms)| Ok((state("state_ms", Some(name))?, ns("state_ms", ms)?)))
            .collect::<Result<_, LineError>>()?;
        Ok(Close {
            mono_ns: at,
            sock: sock_id(need(self.sock, "sock")?)?,
            owner: self.owner()?,
            proto: proto(need(self.proto, "proto")?)?,
            netns: self.netns(),
            local,
            remote,
            opener: named(
                "opened",
                need(self.opened, "opened")?,
                OPENERS,
                Opener::name,
            )?,
            closed_first: opt_named("closed_first", self.closed_first, SIDES, Side::name)?,
            reset_by: opt_named("reset_by", self.reset_by, SIDES, Side::name)?,
            reset_reason: self.reset_reason.map(reset_reason).transpose()?,
            failure: self.failure.as_ref().map(failure).transpose()?,
            duration_ns: ns("duration_ms", need(self.duration_ms, "duration_ms")?)?,
            spent,
            bytes_sent: need(self.bytes_sent, "bytes_sent")?,
            bytes_received: need(self.bytes_received, "bytes_received")?,
            connect_ns: self.connect_ms.map(|ms| ns("connect_ms", ms)).transpose()?,
            syn_retransmits: self.syn_retransmits,
            tcp: self.tcp_stats()?,
            time_wait: need(self.time_wait, "time_wait")?,
            predates_us: need(self.predates_start, "predates_start")?,
        })
    }

    /// A close line's RTT and retransmits: all three or none.
    fn tcp_stats(&self) -> Result<Option<TcpStats>, LineError> {
        let us = |key, ms: Option<f64>| -> Result<u32, LineError> {
            let ms = need(ms, key)?;
            u32::try_from(ns(key, ms)? / 1000).map_err(|_| invalid(key, ms))
        };
        self.retransmits
            .map(|retransmits| {
                Ok(TcpStats {
                    retransmits,
                    srtt_us: us("srtt_ms", self.srtt_ms)?,
                    rttvar_us: us("rttvar_ms", self.rttvar_ms)?,
                })
            })
            .transpose()
    }

    /// A `socket` line (`proto` is not kept: always tcp).
    fn known(self) -> Result<Known, LineError> {
        let (local, remote) = self.ends()?;
        self.check_family(&local)?;
        Ok(Known {
            sock: sock_id(need(self.sock, "sock")?)?,
            netns: self.netns(),
            state: state("state", self.state)?,
            local,
            remote,
            owner: self.owner()?,
        })
    }

    /// `netns`; `null` (unknown) is held as 0, as the live records hold it.
    fn netns(&self) -> u32 {
        self.netns.unwrap_or(0)
    }

    fn owner(&self) -> Result<Owner, LineError> {
        let source = need(self.owner_source, "owner_source")?;
        let source = named("owner_source", source, OWNER_SOURCES, OwnerSource::name)?;
        if source == OwnerSource::Unknown {
            return Ok(Owner::UNKNOWN);
        }
        let cgroup = self.cgroup.as_deref().map(|path| {
            Arc::new(Cgroup {
                path: path.into(),
                container: self.container.as_deref().map(Arc::from),
            })
        });
        Ok(Owner {
            pid: need(self.pid, "pid")?,
            tid: need(self.tid, "tid")?,
            uid: need(self.uid, "uid")?,
            comm: comm(need(self.comm.as_deref(), "comm")?)?,
            cgroup_id: need(self.cgroup_id, "cgroup_id")?,
            cgroup,
            source,
        })
    }

    /// `saddr`:`sport` and `daddr`:`dport`.
    fn ends(&self) -> Result<(SocketAddr, SocketAddr), LineError> {
        Ok((
            endpoint(("saddr", self.saddr), ("sport", self.sport))?,
            endpoint(("daddr", self.daddr), ("dport", self.dport))?,
        ))
    }

    /// `family` must agree with the socket's own address.
    fn check_family(&self, local: &SocketAddr) -> Result<(), LineError> {
        match need(self.family, "family")? {
            family if family == family_name(local) => Ok(()),
            family => Err(invalid("family", family)),
        }
    }
}

const OWNER_SOURCES: &[OwnerSource] = &[
    OwnerSource::Syscall,
    OwnerSource::Inherited,
    OwnerSource::Cached,
    OwnerSource::Unknown,
];
/// `Listener` is written as "unknown" too, and never in a close record.
const OPENERS: &[Opener] = &[Opener::Active, Opener::Passive, Opener::Unknown];
const SIDES: &[Side] = &[Side::Local, Side::Remote];
const REASONS: &[Reason] = &[
    Reason::Refused,
    Reason::TimedOut,
    Reason::Unreachable,
    Reason::Reset,
    Reason::Aborted,
    Reason::Other,
];
const TW_ENDS: &[TwEnd] = &[TwEnd::Observed, TwEnd::Timeout];

fn need<T>(value: Option<T>, field: &'static str) -> Result<T, LineError> {
    value.ok_or(LineError::Missing(field))
}

/// A RST's reason: a kernel enumerator's name, lowercase (`[a-z0-9_]`).
fn reset_reason(name: &str) -> Result<Arc<str>, LineError> {
    let fits = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(fits) {
        return Err(invalid("reset_reason", name));
    }
    Ok(name.into())
}

/// The value is the recording's, shown escaped.
fn invalid(field: &'static str, value: impl fmt::Display) -> LineError {
    LineError::Invalid {
        field,
        value: crate::escape::escape(&value.to_string()).into_owned(),
    }
}

/// The one of `all` whose `name` is `value`.
fn named<T: Copy>(
    field: &'static str,
    value: &str,
    all: &[T],
    name: fn(&T) -> &'static str,
) -> Result<T, LineError> {
    all.iter()
        .copied()
        .find(|v| name(v) == value)
        .ok_or_else(|| invalid(field, value))
}

/// [`named`] for a field that may be null.
fn opt_named<T: Copy>(
    field: &'static str,
    value: Option<&str>,
    all: &[T],
    name: fn(&T) -> &'static str,
) -> Result<Option<T>, LineError> {
    value.map(|v| named(field, v, all, name)).transpose()
}

fn state(field: &'static str, value: Option<&str>) -> Result<TcpState, LineError> {
    let name = need(value, field)?;
    TcpState::from_name(name).ok_or_else(|| invalid(field, name))
}

/// An address and a port, each a field.
fn endpoint(
    (ip_field, ip): (&'static str, Option<&str>),
    (port_field, port): (&'static str, Option<u16>),
) -> Result<SocketAddr, LineError> {
    let text = need(ip, ip_field)?;
    let ip: IpAddr = text.parse().map_err(|_| invalid(ip_field, text))?;
    Ok(SocketAddr::new(ip, need(port, port_field)?))
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time.
fn wall_ns(text: &str) -> Result<u64, LineError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or_else(|| invalid("time", text))
}

/// Nanoseconds of milliseconds written with microsecond precision.
fn ns(field: &'static str, ms: f64) -> Result<u64, LineError> {
    let us = (ms * 1000.0).round();
    if !(us >= 0.0 && us.is_finite()) {
        return Err(invalid(field, ms));
    }
    (us as u64)
        .checked_mul(1000)
        .ok_or_else(|| invalid(field, ms))
}

fn sock_id(hex: &str) -> Result<SockId, LineError> {
    u64::from_str_radix(hex, 16)
        .map(SockId)
        .map_err(|_| invalid("sock", hex))
}

/// `tcp`, `udp` or `proto<N>`, as `Proto` displays.
fn proto(text: &str) -> Result<Proto, LineError> {
    match text {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => text
            .strip_prefix("proto")
            .and_then(|n| n.parse().ok())
            .map(Proto::Other)
            .ok_or_else(|| invalid("proto", text)),
    }
}

fn comm(text: &str) -> Result<Comm, LineError> {
    Comm::from_bytes(text.as_bytes()).ok_or_else(|| invalid("comm", text))
}
