use std::sync::Arc;

use super::*;
use crate::{
    clock::Clock,
    event::Cgroup,
    event::{
        Detail, Errno, Event, Owner, OwnerSource, Proto, SockId, StateInfo, TcpState, TcpStats,
        TwEnd,
    },
    output::{Json, Render},
    source::KernelCounters,
    track::{Close, Failure, Known, Opener, Reason, Side},
};

/// 2026-11-25T14:55:01.000000007Z. With a zero clock offset monotonic
/// and wall time agree, so records read back equal.
const T: u64 = 1_795_618_501_000_000_007;

fn render(records: &[Record]) -> String {
    let mut json = Json::new(Clock::with_offset(0));
    let mut out = String::new();
    for r in records {
        json.record(r, &mut out);
    }
    out
}

/// Everything read, errors as (line, message).
type Read = Vec<Result<Record, (u64, String)>>;

fn read_all(input: impl BufRead) -> (Read, u64) {
    let mut reader = Reader::new(input);
    let all = reader
        .by_ref()
        .map(|r| r.map_err(|(line, e)| (line, e.to_string())))
        .collect();
    (all, reader.skipped())
}

fn owner() -> Owner {
    let e = Event::sample(T, 7, "wörker \"1\"", Proto::Tcp, release("0.0.0.0:1"));
    Owner {
        tid: 8,
        uid: 1000,
        cgroup: Some(Arc::new(Cgroup {
            path: "/system.slice/docker-abc.scope".into(),
            container: Some("abc".into()),
        })),
        ..e.owner
    }
}

fn release(addr: &str) -> Detail {
    Detail::Release {
        addr: addr.parse().unwrap(),
    }
}

fn event(mono_ns: u64, proto: Proto, detail: Detail) -> Event {
    Event {
        owner: owner(),
        ..Event::sample(mono_ns, 7, "nc", proto, detail)
    }
}

/// One record of every kind, with only what JSON carries.
pub(crate) fn every_kind() -> Vec<Record> {
    let (v4, peer) = ("127.0.0.1:40000", "127.0.0.1:8080");
    let established = Detail::transition(v4, peer, TcpState::SynSent, TcpState::Established);
    let mut ended = event(
        T + 2,
        Proto::Tcp,
        Detail::transition(
            "[::1]:80",
            "[::1]:5555",
            TcpState::TimeWait,
            TcpState::Close,
        ),
    );
    (ended.owner, ended.sock) = (Owner::UNKNOWN, None);
    if let Detail::State { info, .. } = &mut ended.detail {
        info.tw_end = Some(TwEnd::Timeout);
    }
    let closed = Close {
        closed_first: Some(Side::Local),
        reset_by: Some(Side::Remote),
        failure: Some(Failure {
            reason: Reason::TimedOut,
            errno: Errno(110),
        }),
        duration_ns: 1_500_000,
        // Not in alphabetical order: the order of first visit is kept.
        spent: vec![
            (TcpState::SynSent, 1_000),
            (TcpState::Established, 1_234_000),
            (TcpState::FinWait1, 0),
        ],
        bytes_sent: 5,
        bytes_received: 1 << 40,
        time_wait: true,
        predates_us: true,
        ..Close::sample(T + 3, owner(), v4, peer)
    };
    let passive = Close {
        opener: Opener::Passive,
        proto: Proto::Other(132),
        ..Close::sample(T + 4, Owner::UNKNOWN, "[::ffff:10.0.0.1]:80", "[fe80::1]:9")
    };
    let known = Known {
        sock: SockId(0xdead_beef),
        netns: 4026531840,
        state: TcpState::Listen,
        local: "0.0.0.0:22".parse().unwrap(),
        remote: "0.0.0.0:0".parse().unwrap(),
        owner: Owner {
            source: OwnerSource::Cached,
            cgroup: None,
            ..owner()
        },
    };
    let counters = KernelCounters {
        ring_drops: 3,
        recursion_misses: 4,
        ..KernelCounters::default()
    };
    vec![
        Record::Event(event(T, Proto::Tcp, established)),
        Record::Event(event(
            T + 1,
            Proto::Tcp,
            Detail::transition(v4, peer, TcpState::FinWait2, TcpState::TimeWait),
        )),
        Record::Event(ended),
        Record::Event(event(
            T,
            Proto::Udp,
            Detail::Bind {
                addr: "0.0.0.0:5353".parse().unwrap(),
                requested_port: 0,
                errno: Errno(98),
            },
        )),
        Record::Event(event(
            T,
            Proto::Tcp,
            Detail::Listen {
                addr: "[::]:8443".parse().unwrap(),
                backlog: -1,
                errno: Errno(0),
            },
        )),
        Record::Event(event(T, Proto::Udp, release("10.1.2.3:53"))),
        Record::Close(closed),
        Record::Close(passive),
        Record::Existing(known, T + 5),
        Record::Loss(counters, T + 6),
        Record::Queues(
            vec![
                crate::event::QueueSample {
                    sock: SockId(0x2a),
                    depth: 2,
                    backlog: 1,
                    drops: 16,
                },
                crate::event::QueueSample {
                    sock: SockId(0x2b),
                    depth: 0,
                    backlog: 4096,
                    drops: 0,
                },
            ],
            T + 7,
        ),
    ]
}

#[test]
fn every_kind_round_trips() {
    let records = every_kind();
    for r in &records {
        let (got, _) = read_all(render(std::slice::from_ref(r)).as_bytes());
        assert_eq!(got, [Ok(r.clone())]);
    }
    let (got, skipped) = read_all(render(&records).as_bytes());
    assert_eq!(got, records.into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!(skipped, 0);
}

#[test]
fn what_json_does_not_carry_reads_as_default() {
    let mut state = event(
        T,
        Proto::Tcp,
        Detail::transition(
            "1.2.3.4:5",
            "5.6.7.8:9",
            TcpState::Unknown(42),
            TcpState::Close,
        ),
    );
    let lossless = state.clone();
    if let Detail::State { info, .. } = &mut state.detail {
        *info = StateInfo {
            sk_err: Errno(104),
            rst_received: true,
            rst_sent: true,
            peer_fin: true,
            tw_table_full: true,
            bytes_acked: 10,
            bytes_received: 20,
            tcp: Some(TcpStats::default()),
            tw_end: None,
        };
    }
    let close = Close {
        duration_ns: 1_500_499,
        spent: vec![(TcpState::Established, 999)],
        opener: Opener::Listener,
        connect_ns: Some(1_003_000),
        syn_retransmits: Some(1),
        tcp: Some(TcpStats {
            retransmits: 4,
            srtt_us: 1234,
            rttvar_us: 56,
        }),
        ..Close::sample(T, owner(), "1.2.3.4:5", "5.6.7.8:9")
    };
    let counters = KernelCounters {
        emitted: 6,
        ring_drops: 1,
        unpaired: 2,
        owner_failed: 3,
        tally_overflow: 5,
        bound_full: 7,
        recursion_misses: 4,
    };
    let (got, _) = read_all(
        render(&[
            Record::Event(state),
            Record::Close(close.clone()),
            Record::Loss(counters, T),
        ])
        .as_bytes(),
    );
    let Detail::State { local, remote, .. } = lossless.detail else {
        unreachable!()
    };
    let lossless = Event {
        detail: Detail::State {
            local,
            remote,
            old: TcpState::Unknown(0),
            new: TcpState::Close,
            info: StateInfo::default(),
        },
        ..lossless
    };
    let close = Close {
        duration_ns: 1_500_000,
        spent: vec![(TcpState::Established, 1_000)],
        opener: Opener::Unknown,
        ..close
    };
    let counters = KernelCounters {
        emitted: 0,
        unpaired: 0,
        owner_failed: 0,
        tally_overflow: 0,
        bound_full: 0,
        ..counters
    };
    assert_eq!(
        got,
        [
            Ok(Record::Event(lossless)),
            Ok(Record::Close(close)),
            Ok(Record::Loss(counters, T))
        ]
    );
}

#[test]
fn header_line_round_trips() {
    let header = Header {
        time: "2026-11-25T14:55:01.000000007Z".into(),
        schema: Some(crate::output::SCHEMA_VERSION),
        socktrace: "0.1.0".into(),
        host: Some("web-1".into()),
        kernel: Some("6.18.44".into()),
        command: "socktrace record --port 443 -o \"a b\\c\"".into(),
        filters: vec!["port 443".into()],
    };
    let line = header.line();
    assert!(
        line.starts_with(r#"{"type":"header","time":"2026-11-25T14:55:01.000000007Z","schema":"#)
    );
    assert!(!line.contains('\n'));
    let record = Record::Loss(KernelCounters::default(), T);
    let text = format!("{line}\n\n{}", render(std::slice::from_ref(&record)));
    let mut reader = Reader::new(text.as_bytes());
    assert_eq!(reader.header(), None);
    assert_eq!(reader.next().map(|r| r.map_err(|e| e.0)), Some(Ok(record)));
    assert_eq!(reader.header(), Some(&header));
    assert!(reader.next().is_none());
    // What could not be read is null, not "".
    let unread = Header {
        host: None,
        kernel: None,
        ..header
    };
    let line = unread.line();
    assert!(line.contains(r#""host":null,"kernel":null"#), "{line}");
    let mut reader = Reader::new(line.as_bytes());
    assert!(reader.next().is_none());
    assert_eq!(reader.header(), Some(&unread));
}

#[test]
fn a_bad_line_is_an_error_for_that_line_only() {
    let records = every_kind();
    let (first, second) = (&records[0], &records[6]);
    let truncated = render(std::slice::from_ref(second));
    let mut file = render(std::slice::from_ref(first)).into_bytes();
    file.extend_from_slice(&truncated.as_bytes()[..truncated.len() / 2]);
    file.extend_from_slice(b"\n\xff\xfe\x00{\"type\x80\xc3\x28\n");
    file.extend(std::iter::repeat_n(b'x', 2 << 20));
    file.extend_from_slice(b"\n{\"type\":\"summary\",\"time\":7,\"events\":[1]}\n");
    file.extend_from_slice(render(std::slice::from_ref(second)).as_bytes());
    let mut reader = Reader::new(&file[..]);
    let mut got = Vec::new();
    for r in reader.by_ref() {
        got.push(r.map_err(|(line, e)| {
            let kind = match e {
                LineError::Json(_) => "json",
                LineError::Utf8 => "utf8",
                LineError::TooLong => "long",
                _ => "other",
            };
            (line, kind)
        }));
    }
    assert_eq!(
        got,
        [
            Ok(first.clone()),
            Err((2, "json")),
            Err((3, "utf8")),
            Err((4, "long")),
            Ok(second.clone()),
        ]
    );
    assert_eq!(reader.skipped(), 1);
}

#[test]
fn line_length_limit() {
    let pad = |len: usize| {
        let head = r#"{"type":"summary","pad":""#;
        let fill = "x".repeat(len - head.len() - 2);
        format!("{head}{fill}\"}}\n")
    };
    let text = pad(MAX_LINE) + &pad(MAX_LINE + 1) + &pad(MAX_LINE);
    let (got, skipped) = read_all(text.as_bytes());
    assert_eq!(got, [Err((2, "longer than 1 MiB".into()))]);
    assert_eq!(skipped, 2);
    // At the end, without a newline.
    let text = pad(MAX_LINE + 1);
    let (got, _) = read_all(text.trim_end().as_bytes());
    assert_eq!(got, [Err((1, "longer than 1 MiB".into()))]);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for record in every_kind() {
        let line = render(&[record]);
        let line = line.trim_end().as_bytes();
        for cut in 1..line.len() {
            let (got, _) = read_all(&line[..cut]);
            assert!(matches!(got[..], [Err((1, _))]), "{cut}: {got:?}");
        }
    }
}

#[test]
fn errors_name_the_field() {
    let records = every_kind();
    let line = render(&records[6..7]);
    let cases = [
        (
            "\"SYN_SENT\"",
            "\"SYN_SEND\"",
            "invalid field `state_ms`: SYN_SEND",
        ),
        (
            "\"saddr\":\"127.0.0.1\"",
            "\"saddr\":\"127.0.0\"",
            "invalid field `saddr`: 127.0.0",
        ),
        ("\"sport\":40000,", "", "missing field `sport`"),
        (
            "\"sock\":\"10\"",
            "\"sock\":\"xyz\"",
            "invalid field `sock`: xyz",
        ),
        (
            "\"family\":\"ipv4\"",
            "\"family\":\"ipv6\"",
            "invalid field `family`: ipv6",
        ),
        (
            "\"time_wait\":true",
            "\"time_wait\":null",
            "missing field `time_wait`",
        ),
        (
            "\"opened\":\"active\"",
            "\"opened\":\"listener\"",
            "invalid field `opened`: listener",
        ),
        (
            "\"reason\":\"timed_out\"",
            "\"reason\":\"slow\"",
            "invalid field `failure`: slow",
        ),
        ("\"pid\":7", "\"pid\":null", "missing field `pid`"),
        (
            "\"comm\":\"wörker \\\"1\\\"\"",
            "\"comm\":\"a-very-long-command\"",
            "invalid field `comm`: a-very-long-command",
        ),
        ("Z\"", "\"", "invalid field `time`: "),
        // What the recording holds is shown escaped: JSON takes DEL
        // and C1 controls (U+009B is CSI to some terminals) raw.
        (
            "\"family\":\"ipv4\"",
            "\"family\":\"\x7f\u{9b}2J\"",
            "invalid field `family`: \\x7f\\xc2\\x9b2J",
        ),
    ];
    for (from, to, error) in cases {
        assert!(line.contains(from), "{from}");
        let (got, _) = read_all(line.replacen(from, to, 1).as_bytes());
        let [Err((1, message))] = &got[..] else {
            panic!("{from}: {got:?}");
        };
        assert!(message.starts_with(error), "{from}: {message}");
    }
    let (got, _) = read_all(line.replacen("\"pid\":7", "\"pid\":\"7\"", 1).as_bytes());
    assert!(matches!(&got[..], [Err((1, m))] if m.starts_with("bad JSON: invalid type")));
}

#[test]
fn an_io_error_ends_the_stream() {
    struct Broken;
    impl io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }
    let record = Record::Loss(KernelCounters::default(), T);
    let text = render(std::slice::from_ref(&record));
    let input = io::BufReader::new(text.as_bytes().chain(Broken));
    let (got, _) = read_all(input);
    assert_eq!(got, [Ok(record), Err((2, "read error: disk gone".into()))]);
}
