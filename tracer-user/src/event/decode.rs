//! Ring bytes to [`Event`]s. Decoding never trusts a record: its kind
//! and size are checked before any field is read.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;
use tracer_common::{
    AF_INET, AF_INET6, BindRecord, Header, ListenRecord, OWNER_INHERITED, OWNER_SYSCALL,
    RecordKind, ReleaseRecord, ResetRecord, SOCK_PEER_FIN, SOCK_RST_RECEIVED, SOCK_RST_SENT,
    SOCK_TCP_STATS, SOCK_TW_FULL, StateRecord,
};

use super::{
    Detail, Errno, Event, Owner, OwnerSource, Proto, SockId, StateInfo, TcpState, TcpStats,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than a header")]
    Short(usize),
    #[error("record kind {kind} should be {expected} bytes, got {got}")]
    Size {
        kind: u32,
        expected: usize,
        got: usize,
    },
    #[error("unknown record kind {0}")]
    Kind(u32),
    #[error("record kind {0} carries counts, not an event")]
    NotAnEvent(u32),
    #[error("unknown address family {0}")]
    Family(u16),
}

/// A record's header and kind, once its size is the kind's.
pub fn kind_of(bytes: &[u8]) -> Result<(Header, RecordKind), DecodeError> {
    let header: Header = read(bytes).ok_or(DecodeError::Short(bytes.len()))?;
    let kind = RecordKind::from_raw(header.kind).ok_or(DecodeError::Kind(header.kind))?;
    if bytes.len() != kind.record_size() {
        return Err(DecodeError::Size {
            kind: header.kind,
            expected: kind.record_size(),
            got: bytes.len(),
        });
    }
    Ok((header, kind))
}

/// What a ring record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Event(Event),
    /// Why a followed socket sent a RST: the kernel's `enum sk_rst_reason`
    /// value (named from its BTF by the tracker).
    Reset {
        sock: SockId,
        code: u32,
    },
}

/// Turns raw ring records into [`Event`]s and resets.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let (header, kind) = kind_of(bytes)?;
    let short = || DecodeError::Short(bytes.len());
    let ts = header.ts_ns;
    let event = match kind {
        RecordKind::State => state(ts, &read(bytes).ok_or_else(short)?),
        RecordKind::Bind => bind(ts, &read(bytes).ok_or_else(short)?),
        RecordKind::Listen => listen(ts, &read(bytes).ok_or_else(short)?),
        RecordKind::Release => release(ts, &read(bytes).ok_or_else(short)?),
        RecordKind::Tally => Err(DecodeError::NotAnEvent(header.kind)),
        RecordKind::Reset => {
            let r: ResetRecord = read(bytes).ok_or_else(short)?;
            return Ok(Decoded::Reset {
                sock: SockId(r.cookie),
                code: r.reason,
            });
        }
    };
    event.map(Decoded::Event)
}

fn state(mono_ns: u64, r: &StateRecord) -> Result<Event, DecodeError> {
    let source = match r.owner.source {
        OWNER_SYSCALL => OwnerSource::Syscall,
        OWNER_INHERITED => OwnerSource::Inherited,
        _ => OwnerSource::Unknown,
    };
    Ok(Event {
        mono_ns,
        owner: match source {
            OwnerSource::Unknown => Owner::UNKNOWN,
            known => Owner::from_raw(&r.owner, known),
        },
        proto: Proto::from_raw(r.protocol),
        sock: SockId::from_cookie(r.cookie),
        netns: r.netns,
        detail: Detail::State {
            local: socket_addr(r.family, &r.saddr, r.sport)?,
            remote: socket_addr(r.family, &r.daddr, r.dport)?,
            old: TcpState::from_raw(r.old_state),
            new: TcpState::from_raw(r.new_state),
            info: StateInfo {
                sk_err: Errno(r.sk_err.max(0)),
                rst_received: r.flags & SOCK_RST_RECEIVED != 0,
                rst_sent: r.flags & SOCK_RST_SENT != 0,
                peer_fin: r.flags & SOCK_PEER_FIN != 0,
                tw_table_full: r.flags & SOCK_TW_FULL != 0,
                bytes_acked: r.bytes_acked,
                bytes_received: r.bytes_received,
                tcp: (r.flags & SOCK_TCP_STATS != 0).then_some(TcpStats {
                    retransmits: r.total_retrans,
                    srtt_us: r.srtt_us,
                    rttvar_us: r.rttvar_us,
                }),
                tw_end: None,
            },
        },
    })
}

fn bind(mono_ns: u64, r: &BindRecord) -> Result<Event, DecodeError> {
    let errno = Errno::from_ret(r.ret);
    let port = if errno.0 == 0 {
        r.bound_port
    } else {
        r.requested_port
    };
    let detail = Detail::Bind {
        addr: socket_addr(r.family, &r.addr, port)?,
        requested_port: r.requested_port,
        errno,
    };
    Ok(syscall_event(
        mono_ns, &r.owner, r.protocol, r.cookie, r.netns, detail,
    ))
}

fn listen(mono_ns: u64, r: &ListenRecord) -> Result<Event, DecodeError> {
    let detail = Detail::Listen {
        addr: socket_addr(r.family, &r.addr, r.port)?,
        backlog: r.backlog,
        errno: Errno::from_ret(r.ret),
    };
    Ok(syscall_event(
        mono_ns, &r.owner, r.protocol, r.cookie, r.netns, detail,
    ))
}

fn release(mono_ns: u64, r: &ReleaseRecord) -> Result<Event, DecodeError> {
    let detail = Detail::Release {
        addr: socket_addr(r.family, &r.addr, r.port)?,
    };
    Ok(syscall_event(
        mono_ns, &r.owner, r.protocol, r.cookie, r.netns, detail,
    ))
}

/// An event of a system call: the caller owns the socket.
fn syscall_event(
    mono_ns: u64,
    caller: &tracer_common::Owner,
    protocol: u16,
    cookie: u64,
    netns: u32,
    detail: Detail,
) -> Event {
    Event {
        mono_ns,
        owner: Owner::from_raw(caller, OwnerSource::Syscall),
        proto: Proto::from_raw(protocol),
        sock: SockId::from_cookie(cookie),
        netns,
        detail,
    }
}

/// Copies a `#[repr(C)]` record out of possibly unaligned bytes.
pub fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a plain-old-data record (integers and
    // arrays only, every bit pattern valid); read_unaligned copes with any
    // alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn socket_addr(family: u16, addr: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(*addr)),
        other => return Err(DecodeError::Family(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
