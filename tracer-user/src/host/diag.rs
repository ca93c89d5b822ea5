//! sock_diag (NETLINK_SOCK_DIAG) dumps of TCP sockets, the way `ss` gets
//! them: for the start-up snapshot and to see TIME_WAIT sockets end.
use std::{io, net::SocketAddr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, Parseable as _,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    inet::{
        ExtensionFlags, InetRequest, InetResponse, InetResponseHeader, SocketId, StateFlags,
        nlas::Nla,
    },
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_SOCK_DIAG};

use crate::event::{QueueSample, SockId, TcpState};

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub sock: SockId,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    /// 0 for sockets no file refers to (timewait, orphans).
    pub inode: u32,
    /// Milliseconds until the socket's timer fires (`idiag_expires`): for
    /// a TIME_WAIT, its end (60 s after it began).
    pub expires_ms: u32,
}

impl DiagSocket {
    /// Whether this TIME_WAIT, read at `read_ns` (as its answer came: a
    /// dump's start would make late ones seem older), began at or after
    /// `since_ns`: its timer fires 60 s after it began (to the timer's
    /// jiffy and the answer's delay, a few ms).
    pub fn began_since(&self, read_ns: u64, since_ns: u64) -> bool {
        self.ends_ns(read_ns) >= since_ns + tracer_common::TW_LEN_NS
    }

    /// When this socket's timer fires (a TIME_WAIT's end), read at
    /// `read_ns`.
    pub fn ends_ns(&self, read_ns: u64) -> u64 {
        read_ns + u64::from(self.expires_ms) * 1_000_000
    }
}

/// Which sockets to dump.
#[derive(Clone, Copy, Debug)]
pub enum Dump {
    All,
    /// Timewait sockets, and FIN_WAIT2 ones: a connection closed while its
    /// peer had not (an orphan in FIN_WAIT2) is a timewait socket too,
    /// listed as FIN_WAIT2 until the peer's FIN moves it to TIME_WAIT.
    TimeWait,
    /// Every state but TIME_WAIT and LISTEN: connections in use.
    Connections,
    /// Every state but TIME_WAIT: connections in use and listeners.
    Open,
    Listeners,
}

/// Inode of our network namespace, the one dumps show (what the kernel's
/// events carry as `netns`); 0 if unknown.
pub fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino() as u32)
}

/// Hands every IPv4 and IPv6 TCP socket of this network namespace that
/// matches `which` to `f`, one at a time: a host holding 100k TIME_WAIT
/// sockets costs no 100k-element vector.
pub fn for_each(which: Dump, mut f: impl FnMut(DiagSocket)) -> io::Result<()> {
    let states = match which {
        Dump::All => StateFlags::all(),
        Dump::TimeWait => StateFlags::TIME_WAIT | StateFlags::FIN_WAIT2,
        Dump::Connections => StateFlags::all() - StateFlags::TIME_WAIT - StateFlags::LISTEN,
        Dump::Open => StateFlags::all() - StateFlags::TIME_WAIT,
        Dump::Listeners => StateFlags::LISTEN,
    };
    dump(states, ExtensionFlags::empty(), |payload| {
        f(diag_socket(payload)?);
        Ok(())
    })
}

/// Hands a sample of every TCP listener's accept queue in this network
/// namespace to `f`. Listeners are few and the kernel walks its listening
/// table only: their answers are parsed in full.
pub fn queues(mut f: impl FnMut(QueueSample)) -> io::Result<()> {
    dump(StateFlags::LISTEN, ExtensionFlags::SKMEMINFO, |payload| {
        let response = InetResponse::parse(payload).map_err(invalid)?;
        let drops = response.nlas.iter().find_map(|nla| match nla {
            Nla::MemInfo(m) => Some(m.drops),
            _ => None,
        });
        f(QueueSample {
            sock: SockId(cookie(&response.header.socket_id.cookie)),
            // `ss`'s Recv-Q and Send-Q; `sk_drops` is `ss -m`'s `d`.
            depth: response.header.recv_queue,
            backlog: response.header.send_queue,
            drops: drops.unwrap_or(0),
        });
        Ok(())
    })
}

/// Dumps the IPv4 and IPv6 TCP sockets in `states`, with `extensions`,
/// handing each answer's payload to `f`.
fn dump(
    states: StateFlags,
    extensions: ExtensionFlags,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NlAddr::new(0, 0))?;
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        request(&socket, family, states.clone(), extensions.clone(), id)?;
        receive(&socket, &mut f)?;
    }
    Ok(())
}

fn request(
    socket: &Socket,
    family: u8,
    states: StateFlags,
    extensions: ExtensionFlags,
    id: SocketId,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions,
            states,
            socket_id: id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    Ok(())
}

/// Reads the dump's answers until it is done, handing each one's payload
/// to `f`.
fn receive(socket: &Socket, f: &mut impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let size = socket.recv(&mut &mut buf[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkBuffer::new_checked(&buf[offset..size]).map_err(invalid)?;
            let len = message.length() as usize;
            match message.message_type() {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let parsed =
                        NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..offset + len]);
                    return Err(io::Error::other(match parsed {
                        Ok(m) => format!("sock_diag: {:?}", m.payload),
                        Err(e) => format!("sock_diag: {e}"),
                    }));
                }
                SOCK_DIAG_BY_FAMILY => f(message.payload())?,
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// The socket an answer is about. Only its fixed header is parsed, not its
/// attributes: a host with 500,000 sockets sends as many.
fn diag_socket(payload: &[u8]) -> io::Result<DiagSocket> {
    let h = InetResponseHeader::parse(payload).map_err(invalid)?;
    let id = &h.socket_id;
    Ok(DiagSocket {
        sock: SockId(cookie(&id.cookie)),
        state: TcpState::from_raw(h.state),
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        uid: h.uid,
        inode: h.inode,
        expires_ms: expires_ms(payload),
    })
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("sock_diag: {e}"))
}

/// `idiag_expires` of an `inet_diag_msg`: netlink-packet-sock-diag keeps
/// it for every timer but TIME_WAIT's, the one we need. It follows family,
/// state, timer, retransmits (a byte each) and the 48-byte socket id.
fn expires_ms(msg: &[u8]) -> u32 {
    const AT: usize = 4 + 48;
    msg.get(AT..AT + 4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// `idiag_cookie` is two native-endian u32s, low word first (as ss reads it).
fn cookie(raw: &[u8; 8]) -> u64 {
    let lo = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as u64;
    let hi = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]) as u64;
    hi << 32 | lo
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TIME_WAIT made here (client closes first) says when it ends.
    #[test]
    fn a_time_wait_says_when_it_ends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(remote).unwrap();
        let (server, _) = listener.accept().unwrap();
        let local = client.local_addr().unwrap();
        drop(client);
        let mut buf = [0u8; 1];
        // The client's FIN read, the server closes: the client end enters TIME_WAIT.
        assert_eq!(std::io::Read::read(&mut &server, &mut buf).unwrap(), 0);
        drop(server);
        let mut expires = None;
        for _ in 0..100 {
            for_each(Dump::TimeWait, |s| {
                if (s.local, s.remote) == (local, remote) {
                    expires = Some(s.expires_ms);
                }
            })
            .unwrap();
            if expires.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let expires = expires.expect("the client's TIME_WAIT in the dump");
        // A second at most since it began; the timer counts in jiffies.
        assert!((58_900..=60_020).contains(&expires), "{expires} ms");
    }

    /// A client that closed first while its peer stays open is a timewait
    /// socket in FIN_WAIT2: a TIME_WAIT dump must list it, or a poll would
    /// take it for ended.
    #[test]
    fn a_time_wait_dump_lists_orphans_in_fin_wait2() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(remote).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let local = client.local_addr().unwrap();
        drop(client);
        let mut state = None;
        for _ in 0..100 {
            for_each(Dump::TimeWait, |s| {
                if (s.local, s.remote) == (local, remote) {
                    state = Some(s.state);
                }
            })
            .unwrap();
            if state.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(state, Some(TcpState::FinWait2));
    }

    #[test]
    fn time_waits_tell_when_they_began() {
        const S: u64 = 1_000_000_000;
        let tw = |expires_ms| DiagSocket {
            sock: SockId(1),
            state: TcpState::TimeWait,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            uid: 0,
            inode: 0,
            expires_ms,
        };
        let since = 100 * S;
        // Dumped at 101 s: one that ends at 159.5 s began before, at 99.5 s.
        assert!(!tw(58_500).began_since(101 * S, since));
        // One that ends at 160.5 s began at 100.5 s, after.
        assert!(tw(59_500).began_since(101 * S, since));
        assert!(tw(59_000).began_since(101 * S, since), "at the very moment");
    }

    #[test]
    fn cookie_words() {
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&0x1234u32.to_ne_bytes());
        raw[4..].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(cookie(&raw), 0x1_0000_1234);
    }

    /// Needs no privileges: sock_diag dumps are open to everyone.
    #[test]
    fn sees_a_listener_of_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let mut ours = Vec::new();
        for_each(Dump::All, |s| {
            if s.local == local {
                ours.push(s);
            }
        })
        .unwrap();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert_eq!(ours[0].state, TcpState::Listen);
        assert_eq!(ours[0].expires_ms, 0, "a listener has no timer");
        assert_ne!(ours[0].inode, 0);
        assert_ne!(ours[0].sock.0, 0);
    }
}
