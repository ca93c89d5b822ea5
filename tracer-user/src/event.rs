//! Decoded events: owned, validated, ready to render. Decoding never trusts
//! a record: its size and kind are checked before any field is read.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use thiserror::Error;
use tracer_common::{
    AF_INET, AF_INET6, BindRecord, COMM_LEN, Header, IPPROTO_TCP, IPPROTO_UDP, KIND_BIND,
    KIND_LISTEN, KIND_RELEASE, KIND_STATE, ListenRecord, OWNER_INHERITED, OWNER_SYSCALL,
    ReleaseRecord, SOCK_PEER_FIN, SOCK_RST_RECEIVED, SOCK_RST_SENT, SOCK_TW_FULL, StateRecord,
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
    #[error("unknown address family {0}")]
    Family(u16),
}

/// One thing that happened to a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub mono_ns: u64,
    /// Who owns the socket (bind/listen: who called).
    pub owner: Owner,
    pub proto: Proto,
    /// The socket cookie; `None` when the kernel had not assigned one.
    pub sock: Option<SockId>,
    /// Inode of the socket's network namespace (0: unknown).
    pub netns: u32,
    pub detail: Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    State {
        local: SocketAddr,
        remote: SocketAddr,
        old: TcpState,
        new: TcpState,
        /// What the socket said about itself at this transition.
        info: StateInfo,
    },
    Bind {
        /// Requested address with the port the socket ended up with (the
        /// requested one when the call failed).
        addr: SocketAddr,
        requested_port: u16,
        errno: Errno,
    },
    Listen {
        addr: SocketAddr,
        backlog: i32,
        errno: Errno,
    },
    /// The last close of a socket that was bound but never listened nor
    /// connected (a UDP server, a TCP bind without listen).
    Release { addr: SocketAddr },
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self.detail {
            Detail::State { .. } => "state",
            Detail::Bind { .. } => "bind",
            Detail::Listen { .. } => "listen",
            Detail::Release { .. } => "release",
        }
    }

    /// The socket's own address: the local end of a transition, the
    /// address of a bind or listen.
    pub fn local(&self) -> &SocketAddr {
        match &self.detail {
            Detail::State { local, .. } => local,
            Detail::Bind { addr, .. } | Detail::Listen { addr, .. } | Detail::Release { addr } => {
                addr
            }
        }
    }
}

/// `"ipv4"` or `"ipv6"`, as the output names an address's family.
pub fn family_name(addr: &SocketAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// A cgroup: its path below the cgroup v2 root and the container it is,
/// when the path names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: Arc<str>,
    pub container: Option<Arc<str>>,
}

/// Extra facts read from the socket at a state transition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateInfo {
    /// The socket's pending error (why a connection failed); on a
    /// transition to CLOSE.
    pub sk_err: Errno,
    pub rst_received: bool,
    pub rst_sent: bool,
    /// The peer's FIN had arrived; on a transition to CLOSE.
    pub peer_fin: bool,
    /// The TIME_WAIT bucket table was full: no timewait socket took over;
    /// on a transition to CLOSE.
    pub tw_table_full: bool,
    /// Bytes sent and acknowledged / received; on a transition to CLOSE.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// For `TIME_WAIT -> CLOSE` only: how its end was learnt.
    pub tw_end: Option<TwEnd>,
}

/// How the end of a TIME_WAIT was learnt (the kernel reports no event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwEnd {
    /// A sock_diag poll no longer found it: it ended at most one polling
    /// period before `time` (expiry, reuse by a new connection, or a RST).
    Observed,
    /// Computed: entry time plus the kernel's TIME_WAIT length (60 s).
    Timeout,
}

impl TwEnd {
    pub fn name(&self) -> &'static str {
        match self {
            TwEnd::Observed => "observed",
            TwEnd::Timeout => "timeout",
        }
    }
}

/// The task that owns a socket, and how we know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: Comm,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// What `cgroup_id` names, once resolved (see `proc::Cgroups`).
    pub cgroup: Option<Arc<Cgroup>>,
    pub source: OwnerSource,
}

impl Owner {
    /// No owner known.
    pub const UNKNOWN: Owner = Owner {
        pid: 0,
        tid: 0,
        uid: 0,
        comm: Comm::EMPTY,
        cgroup_id: 0,
        cgroup: None,
        source: OwnerSource::Unknown,
    };

    pub fn is_known(&self) -> bool {
        self.source != OwnerSource::Unknown
    }

    fn from_raw(raw: &tracer_common::Owner, source: OwnerSource) -> Owner {
        Owner {
            pid: raw.pid,
            tid: raw.tid,
            uid: raw.uid,
            comm: Comm::new(&raw.comm),
            cgroup_id: raw.cgroup_id,
            cgroup: None,
            source,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// Seen in process context: the task made a call on this socket.
    Syscall,
    /// The listener's owner, for a connection not accepted yet.
    Inherited,
    /// Learnt outside the kernel programs: from the start-up snapshot.
    Cached,
    /// Not known: the socket predates socktrace and was not touched since.
    Unknown,
}

impl OwnerSource {
    pub fn name(&self) -> &'static str {
        match self {
            OwnerSource::Syscall => "syscall",
            OwnerSource::Inherited => "inherited",
            OwnerSource::Cached => "cached",
            OwnerSource::Unknown => "unknown",
        }
    }
}

/// A task's command name, as the kernel keeps it (at most 15 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    pub const EMPTY: Comm = Comm {
        bytes: [0; COMM_LEN],
        len: 0,
    };

    pub fn new(raw: &[u8; COMM_LEN]) -> Comm {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        Comm {
            bytes: *raw,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len as usize])
    }
}

impl fmt::Display for Comm {
    /// Escaped, for people ([`crate::escape`]); JSON takes [`Comm::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::escape::escaped(&self.bytes[..self.len as usize]).fmt(f)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Other(u16),
}

impl Proto {
    fn from_raw(raw: u16) -> Proto {
        match raw {
            IPPROTO_TCP => Proto::Tcp,
            IPPROTO_UDP => Proto::Udp,
            n => Proto::Other(n),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.pad("tcp"),
            Proto::Udp => f.pad("udp"),
            Proto::Other(n) => f.pad(&format!("proto{n}")),
        }
    }
}

/// A socket's cookie: unique while the system runs, never a kernel pointer,
/// and what `ss -e` prints after `sk:` (in the same hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockId(pub u64);

impl SockId {
    fn from_cookie(cookie: u64) -> Option<SockId> {
        (cookie != 0).then_some(SockId(cookie))
    }
}

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// TCP states as `include/net/tcp_states.h` numbers them, named as the
/// kernel names them without `TCP_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    Unknown(u8),
}

impl TcpState {
    pub fn from_raw(raw: u8) -> TcpState {
        use TcpState::*;
        match raw {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            13 => BoundInactive,
            n => Unknown(n),
        }
    }

    /// The kernel's number; the inverse of [`TcpState::from_raw`].
    pub fn raw(&self) -> u8 {
        use TcpState::*;
        match self {
            Established => 1,
            SynSent => 2,
            SynRecv => 3,
            FinWait1 => 4,
            FinWait2 => 5,
            TimeWait => 6,
            Close => 7,
            CloseWait => 8,
            LastAck => 9,
            Listen => 10,
            Closing => 11,
            NewSynRecv => 12,
            BoundInactive => 13,
            Unknown(n) => *n,
        }
    }

    pub fn name(&self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            BoundInactive => "BOUND_INACTIVE",
            Unknown(_) => "UNKNOWN",
        }
    }

    /// The inverse of [`TcpState::name`]. `"UNKNOWN"` names a state this
    /// build does not know, without its number: it reads as `Unknown(0)`.
    pub fn from_name(name: &str) -> Option<TcpState> {
        match name {
            "UNKNOWN" => Some(TcpState::Unknown(0)),
            // 1..=13: the states `from_raw` names.
            _ => (1..=13).map(TcpState::from_raw).find(|s| s.name() == name),
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpState::Unknown(n) => f.pad(&format!("STATE_{n}")),
            s => f.pad(s.name()),
        }
    }
}

/// A positive errno, 0 for success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// From a syscall return value (0 or `-errno`; a record claiming
    /// `i32::MIN` must not overflow: found by `cargo xtask fuzz`).
    fn from_ret(ret: i32) -> Errno {
        Errno(if ret < 0 { ret.saturating_neg() } else { 0 })
    }

    /// `"EADDRINUSE"`, or `None` for success.
    pub fn name(&self) -> Option<String> {
        match self.0 {
            0 => None,
            n => Some(match nix::errno::Errno::from_raw(n) {
                nix::errno::Errno::UnknownErrno => format!("E{n}"),
                known => format!("{known:?}"),
            }),
        }
    }
}

#[cfg(test)]
impl Event {
    /// An event for renderer tests, owned by `comm` `pid` (tid = pid, uid 0).
    pub fn sample(mono_ns: u64, pid: u32, comm: &str, proto: Proto, detail: Detail) -> Event {
        let mut raw = [0u8; COMM_LEN];
        raw[..comm.len()].copy_from_slice(comm.as_bytes());
        Event {
            mono_ns,
            owner: Owner {
                pid,
                tid: pid,
                uid: 0,
                comm: Comm::new(&raw),
                cgroup_id: 1,
                cgroup: None,
                source: OwnerSource::Syscall,
            },
            proto,
            sock: Some(SockId(0xabc)),
            netns: 4026531840,
            detail,
        }
    }
}

#[cfg(test)]
impl Detail {
    /// A transition between addresses written as text, for tests.
    pub fn transition(local: &str, remote: &str, old: TcpState, new: TcpState) -> Detail {
        Detail::State {
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
            old,
            new,
            info: StateInfo::default(),
        }
    }
}

/// Turns raw ring records into [`Event`]s.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: Header = read(bytes).ok_or(DecodeError::Short(bytes.len()))?;
    let size = match header.kind {
        KIND_STATE => size_of::<StateRecord>(),
        KIND_BIND => size_of::<BindRecord>(),
        KIND_LISTEN => size_of::<ListenRecord>(),
        KIND_RELEASE => size_of::<ReleaseRecord>(),
        kind => return Err(DecodeError::Kind(kind)),
    };
    if bytes.len() != size {
        return Err(DecodeError::Size {
            kind: header.kind,
            expected: size,
            got: bytes.len(),
        });
    }
    let short = || DecodeError::Short(bytes.len());
    let event = match header.kind {
        KIND_STATE => {
            let r: StateRecord = read(bytes).ok_or_else(short)?;
            let source = match r.owner.source {
                OWNER_SYSCALL => OwnerSource::Syscall,
                OWNER_INHERITED => OwnerSource::Inherited,
                _ => OwnerSource::Unknown,
            };
            Event {
                mono_ns: header.ts_ns,
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
                        tw_end: None,
                    },
                },
            }
        }
        KIND_BIND => {
            let r: BindRecord = read(bytes).ok_or_else(short)?;
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
            syscall_event(
                header.ts_ns,
                &r.owner,
                r.protocol,
                r.cookie,
                r.netns,
                detail,
            )
        }
        KIND_RELEASE => {
            let r: ReleaseRecord = read(bytes).ok_or_else(short)?;
            let detail = Detail::Release {
                addr: socket_addr(r.family, &r.addr, r.port)?,
            };
            syscall_event(
                header.ts_ns,
                &r.owner,
                r.protocol,
                r.cookie,
                r.netns,
                detail,
            )
        }
        _ => {
            let r: ListenRecord = read(bytes).ok_or_else(short)?;
            let detail = Detail::Listen {
                addr: socket_addr(r.family, &r.addr, r.port)?,
                backlog: r.backlog,
                errno: Errno::from_ret(r.ret),
            };
            syscall_event(
                header.ts_ns,
                &r.owner,
                r.protocol,
                r.cookie,
                r.netns,
                detail,
            )
        }
    };
    Ok(event)
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
pub(crate) fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
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
mod tests {
    use super::*;
    use tracer_common::OWNER_UNKNOWN;

    fn bytes_of<T>(record: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data record.
        unsafe { std::slice::from_raw_parts((record as *const T).cast(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: u32) -> Header {
        Header {
            kind,
            ts_ns: 42,
            ..Header::default()
        }
    }

    fn owner(source: u32) -> tracer_common::Owner {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        tracer_common::Owner {
            pid: 100,
            tid: 101,
            uid: 1000,
            source,
            cgroup_id: 7,
            comm,
        }
    }

    #[test]
    fn decodes_a_v4_state_change() {
        let mut rec = StateRecord {
            header: header(KIND_STATE),
            owner: owner(OWNER_SYSCALL),
            cookie: 0x2a,
            netns: 4026531840,
            sk_err: 111,
            sport: 43512,
            dport: 8080,
            family: AF_INET,
            protocol: IPPROTO_TCP,
            old_state: 2,
            new_state: 7,
            flags: SOCK_RST_RECEIVED,
            bytes_acked: 5,
            bytes_received: 6,
            ..StateRecord::default()
        };
        rec.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        rec.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        let e = decode(&bytes_of(&rec)).unwrap();
        assert_eq!(e.mono_ns, 42);
        assert_eq!((e.owner.pid, e.owner.tid, e.owner.uid), (100, 101, 1000));
        assert_eq!(
            (e.owner.comm.to_string(), e.owner.cgroup_id),
            ("curl".into(), 7)
        );
        assert_eq!(e.owner.source, OwnerSource::Syscall);
        assert_eq!(
            (e.proto, e.sock, e.netns),
            (Proto::Tcp, Some(SockId(42)), 4026531840)
        );
        assert_eq!(family_name(e.local()), "ipv4");
        assert_eq!(
            e.detail,
            Detail::State {
                local: "127.0.0.1:43512".parse().unwrap(),
                remote: "10.1.2.3:8080".parse().unwrap(),
                old: TcpState::SynSent,
                new: TcpState::Close,
                info: StateInfo {
                    sk_err: Errno(111),
                    rst_received: true,
                    rst_sent: false,
                    peer_fin: false,
                    tw_table_full: false,
                    bytes_acked: 5,
                    bytes_received: 6,
                    tw_end: None,
                },
            }
        );
        assert_eq!(SockId(42).to_string(), "2a", "hex, as ss -e prints it");
    }

    #[test]
    fn owner_sources() {
        let rec = |source| StateRecord {
            header: header(KIND_STATE),
            owner: owner(source),
            family: AF_INET,
            ..StateRecord::default()
        };
        let inherited = decode(&bytes_of(&rec(OWNER_INHERITED))).unwrap();
        assert_eq!(
            (inherited.owner.source, inherited.owner.pid),
            (OwnerSource::Inherited, 100)
        );
        let unknown = decode(&bytes_of(&rec(OWNER_UNKNOWN))).unwrap();
        assert_eq!(unknown.owner, Owner::UNKNOWN);
        assert!(!unknown.owner.is_known());
        assert_eq!(unknown.sock, None, "cookie 0 is no id");
    }

    #[test]
    fn decodes_v6_and_v4_mapped_addresses() {
        let mut rec = StateRecord {
            header: header(KIND_STATE),
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            sport: 80,
            dport: 5555,
            old_state: 10,
            new_state: 3,
            ..StateRecord::default()
        };
        rec.saddr = Ipv6Addr::LOCALHOST.octets();
        rec.daddr = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets();
        let e = decode(&bytes_of(&rec)).unwrap();
        let Detail::State { local, remote, .. } = e.detail else {
            panic!("not a state event: {e:?}");
        };
        assert_eq!(local.to_string(), "[::1]:80");
        assert_eq!(remote.to_string(), "[::ffff:192.0.2.7]:5555");
        assert_eq!(family_name(e.local()), "ipv6");
    }

    #[test]
    fn bind_reports_the_assigned_port_or_the_requested_one_on_failure() {
        let ok = BindRecord {
            header: header(KIND_BIND),
            owner: owner(OWNER_SYSCALL),
            family: AF_INET,
            protocol: IPPROTO_UDP,
            requested_port: 0,
            bound_port: 40000,
            ret: 0,
            ..BindRecord::default()
        };
        let e = decode(&bytes_of(&ok)).unwrap();
        assert_eq!(
            (e.proto, e.owner.source),
            (Proto::Udp, OwnerSource::Syscall)
        );
        let Detail::Bind {
            addr,
            requested_port,
            errno,
        } = e.detail
        else {
            panic!("not a bind: {e:?}");
        };
        assert_eq!(
            (addr.to_string(), requested_port, errno),
            ("0.0.0.0:40000".into(), 0, Errno(0))
        );

        let failed = BindRecord {
            requested_port: 8080,
            bound_port: 0,
            ret: -98,
            protocol: IPPROTO_TCP,
            ..ok
        };
        let e = decode(&bytes_of(&failed)).unwrap();
        let Detail::Bind { addr, errno, .. } = e.detail else {
            panic!("not a bind: {e:?}");
        };
        assert_eq!(addr.port(), 8080);
        assert_eq!(errno.name().as_deref(), Some("EADDRINUSE"));
    }

    #[test]
    fn decodes_a_listen() {
        let mut rec = ListenRecord {
            header: header(KIND_LISTEN),
            owner: owner(OWNER_SYSCALL),
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            port: 8443,
            backlog: 511,
            ret: 0,
            ..ListenRecord::default()
        };
        rec.addr = Ipv6Addr::UNSPECIFIED.octets();
        let e = decode(&bytes_of(&rec)).unwrap();
        assert_eq!(
            e.detail,
            Detail::Listen {
                addr: "[::]:8443".parse().unwrap(),
                backlog: 511,
                errno: Errno(0)
            }
        );
    }

    #[test]
    fn rejects_malformed_records() {
        assert_eq!(decode(&[0; 8]), Err(DecodeError::Short(8)));
        let state = bytes_of(&StateRecord {
            header: header(KIND_STATE),
            family: AF_INET,
            ..StateRecord::default()
        });
        assert_eq!(
            decode(&state[..size_of::<BindRecord>()]),
            Err(DecodeError::Size {
                kind: KIND_STATE,
                expected: size_of::<StateRecord>(),
                got: size_of::<BindRecord>()
            })
        );
        let mut unknown = state.clone();
        unknown[0] = 99;
        assert_eq!(decode(&unknown), Err(DecodeError::Kind(99)));
        let bad_family = bytes_of(&StateRecord {
            header: header(KIND_STATE),
            family: 1,
            ..StateRecord::default()
        });
        assert_eq!(decode(&bad_family), Err(DecodeError::Family(1)));
    }

    #[test]
    fn state_names_match_the_kernel() {
        let names: Vec<String> = (1..=13)
            .map(|n| TcpState::from_raw(n).to_string())
            .collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV",
                "BOUND_INACTIVE"
            ]
        );
        assert_eq!(TcpState::from_raw(99).to_string(), "STATE_99");
    }

    #[test]
    fn state_names_read_back() {
        for n in 1..=13 {
            let state = TcpState::from_raw(n);
            assert_eq!(TcpState::from_name(state.name()), Some(state));
            assert_eq!(state.raw(), n);
        }
        assert_eq!(TcpState::from_raw(99).raw(), 99);
        assert_eq!(TcpState::from_name("TIME_WAIT"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_name("UNKNOWN"), Some(TcpState::Unknown(0)));
        assert_eq!(TcpState::from_name("time_wait"), None);
        assert_eq!(TcpState::from_name("STATE_99"), None);
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno(0).name(), None);
        assert_eq!(Errno(111).name().as_deref(), Some("ECONNREFUSED"));
        assert_eq!(Errno(13).name().as_deref(), Some("EACCES"));
        assert_eq!(Errno(4000).name().as_deref(), Some("E4000"));
    }

    #[test]
    fn any_return_value_is_an_errno() {
        assert_eq!(Errno::from_ret(-98), Errno(98));
        assert_eq!(Errno::from_ret(0), Errno(0));
        assert_eq!(Errno::from_ret(7), Errno(0));
        assert_eq!(Errno::from_ret(i32::MIN), Errno(i32::MAX));
        assert_eq!(Errno(i32::MAX).name().as_deref(), Some("E2147483647"));
    }
}
