//! The pipeline from recorded ring records: records built from
//! tracer-common's `#[repr(C)]` structs, handed over as their bytes, as
//! the ring would; no kernel, no root. The JSON lines are checked whole.
use std::{cell::RefCell, io, rc::Rc};

use clap::Parser as _;
use tracer_common::{
    AF_INET, BindRecord, COMM_LEN, Header, IPPROTO_TCP, KIND_BIND, KIND_LISTEN, KIND_STATE,
    ListenRecord, OWNER_SYSCALL, StateRecord,
};

use super::*;
use crate::event::record_bytes;
use crate::{
    cli::{Cli, Command},
    clock::Clock,
    output::Json,
};

const MS: u64 = 1_000_000;
const ESTABLISHED: TcpState = TcpState::Established;
const SYN_SENT: TcpState = TcpState::SynSent;
const FIN_WAIT1: TcpState = TcpState::FinWait1;
const FIN_WAIT2: TcpState = TcpState::FinWait2;
const CLOSE: TcpState = TcpState::Close;
const LISTEN: TcpState = TcpState::Listen;

/// The kernel's number for `state`: what [`TcpState::from_raw`] reads
/// (the numbers are written there only).
fn raw(state: TcpState) -> u8 {
    (0..=u8::MAX)
        .find(|&n| TcpState::from_raw(n) == state)
        .expect("a known state")
}

/// The bytes of a plain-old-data record, as the ring hands them over.
fn header(kind: u32, ms: u64) -> Header {
    Header {
        kind,
        ts_ns: ms * MS,
        ..Header::default()
    }
}

fn owner(pid: u32, name: &str) -> tracer_common::Owner {
    let mut comm = [0u8; COMM_LEN];
    comm[..name.len()].copy_from_slice(name.as_bytes());
    tracer_common::Owner {
        pid,
        tid: pid,
        uid: 1000,
        source: OWNER_SYSCALL,
        cgroup_id: 0,
        comm,
    }
}

fn v4(ip: [u8; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip);
    addr
}

/// A state change of socket `cookie` from 127.0.0.1:`sport` to
/// 127.0.0.1:`dport`, owned by curl 100.
fn state(ms: u64, cookie: u64, ports: (u16, u16), old: TcpState, new: TcpState) -> Vec<u8> {
    record_bytes(&StateRecord {
        header: header(KIND_STATE, ms),
        owner: owner(100, "curl"),
        cookie,
        netns: 7,
        sport: ports.0,
        dport: ports.1,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        old_state: raw(old),
        new_state: raw(new),
        saddr: v4([127, 0, 0, 1]),
        daddr: v4([127, 0, 0, 1]),
        bytes_acked: 10,
        bytes_received: 20,
        ..StateRecord::default()
    })
}

fn filter(args: &[&str]) -> Filter {
    let argv = ["socktrace", "watch"].iter().chain(args).copied();
    match Cli::try_parse_from(argv).unwrap().into_command() {
        Ok(Command::Watch(w)) => w.common.filter,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// What the pipeline wrote, shared with the test.
#[derive(Clone, Default)]
struct Written(Rc<RefCell<Vec<u8>>>);

impl io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pipeline with a JSON view and no taps, whose output can be read.
struct Rig {
    pipeline: Pipeline,
    render: Json,
    out: Output,
    written: Written,
}

impl Rig {
    fn new(args: &[&str]) -> Rig {
        let taps = Taps {
            metrics: None,
            stuck: None,
            sinks: Vec::new(),
        };
        let written = Written::default();
        Rig {
            pipeline: Pipeline::new(1024, taps, filter(args), Cgroups::new(None), 7),
            render: Json::new(Clock::with_offset(0)),
            out: Output::new(Box::new(written.clone())),
            written,
        }
    }

    fn run(&mut self, records: &[Vec<u8>]) {
        let records = records.iter().map(Vec::as_slice);
        self.pipeline.run(records, &mut self.render, &mut self.out);
    }

    /// The lines written so far.
    fn lines(&mut self) -> Vec<String> {
        self.out.flush();
        let text = String::from_utf8(self.written.0.take()).unwrap();
        text.lines().map(String::from).collect()
    }
}

/// The owner and socket fields of the records above, as JSON shows them.
fn sock(sock: &str, sport: u16, dport: u16) -> String {
    format!(
        r#""pid":100,"tid":100,"uid":1000,"comm":"curl","cgroup_id":0,"cgroup":null,"container":null,"owner_source":"syscall","proto":"tcp","family":"ipv4","netns":7,"sock":"{sock}","saddr":"127.0.0.1","sport":{sport},"daddr":"127.0.0.1","dport":{dport}"#
    )
}

fn state_line(at: &str, sock: &str, old: &str, new: &str, more: &str) -> String {
    let fields = self::sock(sock, 40000, 8080);
    format!(
        r#"{{"type":"state","time":"1970-01-01T00:{at}Z",{fields},"old_state":"{old}","new_state":"{new}"{more}}}"#
    )
}

#[test]
fn a_connection_from_connect_to_the_end_of_its_time_wait() {
    let mut rig = Rig::new(&[]);
    rig.run(&[
        state(1, 0x2a, (40000, 8080), CLOSE, SYN_SENT),
        state(2, 0x2a, (40000, 8080), SYN_SENT, ESTABLISHED),
        state(5, 0x2a, (40000, 8080), ESTABLISHED, FIN_WAIT1),
        state(6, 0x2a, (40000, 8080), FIN_WAIT1, FIN_WAIT2),
        // The full socket closes; a timewait socket takes over.
        state(7, 0x2a, (40000, 8080), FIN_WAIT2, CLOSE),
    ]);
    // At exit, the TIME_WAIT seen to begin ends by expiry, 60 s on.
    rig.pipeline.finish(&mut rig.render, &mut rig.out);
    let fields = sock("2a", 40000, 8080);
    let close = format!(
        r#"{{"type":"close","time":"1970-01-01T00:00:00.007000000Z",{fields},"opened":"active","closed_first":"local","reset_by":null,"reset_reason":null,"failure":null,"time_wait":true,"duration_ms":6.000,"state_ms":{{"SYN_SENT":1.000,"ESTABLISHED":3.000,"FIN_WAIT1":1.000,"FIN_WAIT2":1.000}},"bytes_sent":8,"bytes_received":20,"connect_ms":1.000,"syn_retransmits":null,"retransmits":null,"srtt_ms":null,"rttvar_ms":null,"predates_start":false}}"#
    );
    assert_eq!(
        rig.lines(),
        [
            state_line("00:00.001000000", "2a", "CLOSE", "SYN_SENT", ""),
            state_line("00:00.002000000", "2a", "SYN_SENT", "ESTABLISHED", ""),
            state_line("00:00.005000000", "2a", "ESTABLISHED", "FIN_WAIT1", ""),
            state_line("00:00.006000000", "2a", "FIN_WAIT1", "FIN_WAIT2", ""),
            state_line("00:00.007000000", "2a", "FIN_WAIT2", "TIME_WAIT", ""),
            close,
            state_line(
                "01:00.007000000",
                "2a",
                "TIME_WAIT",
                "CLOSE",
                r#","timewait_end":"timeout""#
            ),
        ]
    );
    assert_eq!(rig.pipeline.summary.filtered, 0);
}

fn bind(ms: u64, cookie: u64, port: u16) -> Vec<u8> {
    record_bytes(&BindRecord {
        header: header(KIND_BIND, ms),
        owner: owner(200, "nginx"),
        cookie,
        netns: 7,
        addr: v4([0, 0, 0, 0]),
        family: AF_INET,
        protocol: IPPROTO_TCP,
        requested_port: port,
        bound_port: port,
        ..BindRecord::default()
    })
}

fn listen(ms: u64, cookie: u64, port: u16) -> Vec<u8> {
    record_bytes(&ListenRecord {
        header: header(KIND_LISTEN, ms),
        owner: owner(200, "nginx"),
        cookie,
        netns: 7,
        addr: v4([0, 0, 0, 0]),
        family: AF_INET,
        protocol: IPPROTO_TCP,
        port,
        backlog: 511,
        ..ListenRecord::default()
    })
}

#[test]
fn a_listener_opens_and_closes() {
    let mut rig = Rig::new(&[]);
    let close = StateRecord {
        header: header(KIND_STATE, 9),
        owner: owner(200, "nginx"),
        cookie: 0x51,
        netns: 7,
        sport: 8443,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        old_state: raw(LISTEN),
        new_state: raw(CLOSE),
        ..StateRecord::default()
    };
    rig.run(&[
        bind(3, 0x51, 8443),
        listen(4, 0x51, 8443),
        record_bytes(&close),
    ]);
    let nginx = r#""pid":200,"tid":200,"uid":1000,"comm":"nginx","cgroup_id":0,"cgroup":null,"container":null,"owner_source":"syscall","proto":"tcp","family":"ipv4","netns":7,"sock":"51""#;
    assert_eq!(
        rig.lines(),
        [
            format!(
                r#"{{"type":"bind","time":"1970-01-01T00:00:00.003000000Z",{nginx},"addr":"0.0.0.0","port":8443,"requested_port":8443,"errno":0,"error":null}}"#
            ),
            format!(
                r#"{{"type":"listen","time":"1970-01-01T00:00:00.004000000Z",{nginx},"addr":"0.0.0.0","port":8443,"backlog":511,"errno":0,"error":null}}"#
            ),
            format!(
                r#"{{"type":"state","time":"1970-01-01T00:00:00.009000000Z",{nginx},"saddr":"0.0.0.0","sport":8443,"daddr":"0.0.0.0","dport":0,"old_state":"LISTEN","new_state":"CLOSE"}}"#
            ),
        ]
    );
    assert_eq!(rig.pipeline.summary.listeners_open(), 0);
}

#[test]
fn a_filter_drops_and_counts_what_it_refuses() {
    let mut rig = Rig::new(&["--dport", "8080"]);
    rig.run(&[
        state(1, 0x2a, (40000, 8080), CLOSE, SYN_SENT),
        state(1, 0x2b, (40001, 9090), CLOSE, SYN_SENT),
        state(2, 0x2b, (40001, 9090), SYN_SENT, ESTABLISHED),
    ]);
    assert_eq!(
        rig.lines(),
        [state_line("00:00.001000000", "2a", "CLOSE", "SYN_SENT", "")]
    );
    assert_eq!(rig.pipeline.summary.filtered, 2);
}

#[test]
fn losses_are_a_record_and_bad_records_are_counted_not_shown() {
    let mut rig = Rig::new(&[]);
    let mut unknown = state(1, 0x2a, (40000, 8080), CLOSE, SYN_SENT);
    unknown[..4].copy_from_slice(&99u32.to_ne_bytes());
    let short = state(1, 0x2a, (40000, 8080), CLOSE, SYN_SENT)[..20].to_vec();
    rig.run(&[unknown, short]);
    assert_eq!(rig.pipeline.summary.malformed, 2);
    let now = KernelCounters {
        ring_drops: 3,
        ..KernelCounters::default()
    };
    let (render, out) = (&mut rig.render, &mut rig.out);
    rig.pipeline
        .report_losses(KernelCounters::default(), now, 5 * MS, render, out);
    // Nothing new lost: no second record.
    rig.pipeline.report_losses(now, now, 6 * MS, render, out);
    assert_eq!(
        rig.lines(),
        [
            r#"{"type":"loss","time":"1970-01-01T00:00:00.005000000Z","ring_drops":3,"recursion_misses":0}"#
        ]
    );
}

/// A socket the start-up snapshot found at 10 ms: ESTABLISHED
/// 127.0.0.1:`sport` -> 127.0.0.1:8080, held by nginx 300.
fn found(cookie: u64, sport: u16) -> Known {
    let mut owner = crate::event::Owner::UNKNOWN;
    owner.pid = 300;
    owner.tid = 300;
    owner.comm = crate::event::Comm::truncated("nginx");
    owner.source = crate::event::OwnerSource::Cached;
    Known {
        sock: SockId(cookie),
        netns: 7,
        state: ESTABLISHED,
        local: format!("127.0.0.1:{sport}").parse().unwrap(),
        remote: "127.0.0.1:8080".parse().unwrap(),
        owner,
    }
}

#[test]
fn the_snapshot_waits_for_what_the_ring_held_meanwhile() {
    let mut rig = Rig::new(&[]);
    // Born after we attached (its first transition was in the ring), one
    // that existed before and changes meanwhile (in a softirq: no owner
    // in the record), and one that existed before and stays idle.
    for (cookie, sport) in [(0x2a, 40000), (0x2b, 40001), (0x2c, 40002)] {
        let (render, out) = (&mut rig.render, &mut rig.out);
        rig.pipeline
            .learn(found(cookie, sport), 10 * MS, true, render, out);
    }
    let mut peer_fin = state(2, 0x2b, (40001, 8080), ESTABLISHED, TcpState::CloseWait);
    peer_fin[16..56].fill(0); // the record's owner: unknown
    rig.run(&[state(1, 0x2a, (40000, 8080), CLOSE, SYN_SENT), peer_fin]);
    rig.pipeline.settle(&mut rig.render, &mut rig.out);
    let lines = rig.lines();
    let summary: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let field = |name: &str| {
                let key = format!(r#""{name}":""#);
                let at = l.find(&key).unwrap() + key.len();
                &l[at..at + l[at..].find('"').unwrap()]
            };
            (field("type"), field("sock"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("state", "2a"),
            ("socket", "2b"),
            ("state", "2b"),
            ("socket", "2c")
        ],
        "{lines:#?}"
    );
    // The pre-existing socket's transition has the snapshot's owner.
    assert!(
        lines[2].contains(r#""pid":300,"tid":300,"uid":0,"comm":"nginx""#)
            && lines[2].contains(r#""owner_source":"cached""#),
        "{}",
        lines[2]
    );
    // It was ESTABLISHED until that transition, whatever the dump saw.
    assert!(
        lines[1].contains(r#""state":"ESTABLISHED""#),
        "{}",
        lines[1]
    );
}
