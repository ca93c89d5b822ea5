//! Decoding records built from tracer-common's structs, byte for byte.
use super::*;
use tracer_common::{
    COMM_LEN, IPPROTO_TCP, IPPROTO_UDP, KIND_BIND, KIND_LISTEN, KIND_STATE, OWNER_UNKNOWN,
    SOCK_TCP_STATS, TallyRecord,
};

use crate::event::{TcpStats, family_name, record_bytes};

/// The event `bytes` decode to.
fn event(bytes: &[u8]) -> Event {
    match decode(bytes) {
        Ok(Decoded::Event(event)) => event,
        other => panic!("not an event: {other:?}"),
    }
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
        flags: SOCK_RST_RECEIVED | SOCK_TCP_STATS,
        bytes_acked: 5,
        bytes_received: 6,
        total_retrans: 3,
        srtt_us: 120,
        rttvar_us: 60,
        ..StateRecord::default()
    };
    rec.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    rec.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
    let e = event(&record_bytes(&rec));
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
                tcp: Some(TcpStats {
                    retransmits: 3,
                    srtt_us: 120,
                    rttvar_us: 60,
                }),
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
    let inherited = event(&record_bytes(&rec(OWNER_INHERITED)));
    assert_eq!(
        (inherited.owner.source, inherited.owner.pid),
        (OwnerSource::Inherited, 100)
    );
    let unknown = event(&record_bytes(&rec(OWNER_UNKNOWN)));
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
    let e = event(&record_bytes(&rec));
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
    let e = event(&record_bytes(&ok));
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
    let e = event(&record_bytes(&failed));
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
    let e = event(&record_bytes(&rec));
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
    let state = record_bytes(&StateRecord {
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
    let bad_family = record_bytes(&StateRecord {
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

#[test]
fn counts_are_no_event_and_every_kind_has_its_size() {
    let tally = TallyRecord {
        header: header(tracer_common::KIND_TALLY),
        ..TallyRecord::default()
    };
    let bytes = record_bytes(&tally);
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::NotAnEvent(tracer_common::KIND_TALLY))
    );
    assert_eq!(kind_of(&bytes).map(|(_, kind)| kind), Ok(RecordKind::Tally));
    assert!(matches!(
        kind_of(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Size { .. })
    ));
}

#[test]
fn a_reset_is_its_socket_and_the_kernels_reason() {
    let rec = tracer_common::ResetRecord {
        header: header(tracer_common::KIND_RESET),
        cookie: 0x1234,
        reason: 11,
        state: 7,
        _pad: [0; 3],
    };
    assert_eq!(
        decode(&record_bytes(&rec)),
        Ok(Decoded::Reset {
            sock: SockId(0x1234),
            code: 11
        })
    );
}
