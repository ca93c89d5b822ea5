use std::sync::Arc;

use clap::Parser as _;

use super::*;
use crate::{
    cli::{Cli, Command},
    event::Cgroup,
    event::{Errno, Event, OwnerSource, SockId},
    source::KernelCounters,
    track::{Close, Known},
};
use tracer_common::ValueSet;

/// The filter `socktrace ARGS` builds.
fn filter(args: &[&str]) -> Filter {
    let cli = Cli::try_parse_from(std::iter::once("socktrace").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.into_command() {
        Ok(Command::Watch(w)) => w.common.filter,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn transition(
    pid: u32,
    comm: &str,
    local: &str,
    remote: &str,
    old: TcpState,
    new: TcpState,
) -> Record {
    Record::Event(Event::sample(
        1,
        pid,
        comm,
        Proto::Tcp,
        Detail::transition(local, remote, old, new),
    ))
}

/// curl (42) connects from 10.0.0.1:40000 to 93.184.216.34:443.
fn connects() -> Record {
    transition(
        42,
        "curl",
        "10.0.0.1:40000",
        "93.184.216.34:443",
        TcpState::SynSent,
        TcpState::Established,
    )
}

/// nginx (9) listens on 0.0.0.0:80.
fn listens() -> Record {
    Record::Event(Event::sample(
        2,
        9,
        "nginx",
        Proto::Tcp,
        Detail::Listen {
            addr: "0.0.0.0:80".parse().unwrap(),
            backlog: 511,
            errno: Errno(0),
        },
    ))
}

/// nc (7) binds UDP [::]:5353.
fn binds_udp() -> Record {
    Record::Event(Event::sample(
        3,
        7,
        "nc",
        Proto::Udp,
        Detail::Bind {
            addr: "[::]:5353".parse().unwrap(),
            requested_port: 5353,
            errno: Errno(0),
        },
    ))
}

/// The owner `Event::sample` gives: `comm` `pid`, uid 0.
fn owner(pid: u32, comm: &str) -> Owner {
    let addr = "127.0.0.1:1".parse().unwrap();
    Event::sample(0, pid, comm, Proto::Tcp, Detail::Release { addr }).owner
}

/// curl's connection ended in TIME_WAIT after being established.
fn closes_in_time_wait() -> Record {
    Record::Close(Close {
        spent: vec![
            (TcpState::SynSent, 1),
            (TcpState::Established, 2),
            (TcpState::FinWait1, 3),
            (TcpState::FinWait2, 4),
        ],
        time_wait: true,
        ..Close::sample(4, owner(42, "curl"), "10.0.0.1:40000", "93.184.216.34:443")
    })
}

/// A refused connect by python3 (100), over IPv6 loopback.
fn refused_v6() -> Record {
    Record::Close(Close {
        spent: vec![(TcpState::SynSent, 1)],
        ..Close::sample(5, owner(100, "python3"), "[::1]:50000", "[::1]:9")
    })
}

/// A transition of a socket whose owner nobody knows (uid 0, pid 0).
fn unowned() -> Record {
    let mut r = transition(
        0,
        "",
        "127.0.0.1:8080",
        "127.0.0.1:50000",
        TcpState::Established,
        TcpState::CloseWait,
    );
    if let Record::Event(e) = &mut r {
        e.owner = Owner::UNKNOWN;
    }
    r
}

/// sshd's listener, found at start.
fn existing_listener() -> Record {
    Record::Existing(
        Known {
            sock: SockId(1),
            netns: 1,
            state: TcpState::Listen,
            local: "0.0.0.0:22".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            owner: Owner {
                source: OwnerSource::Cached,
                ..owner(1, "sshd")
            },
        },
        6,
    )
}

fn loss() -> Record {
    Record::Loss(KernelCounters::default(), 7)
}

fn all() -> Vec<(&'static str, Record)> {
    vec![
        ("connects", connects()),
        ("listens", listens()),
        ("binds_udp", binds_udp()),
        ("closes_in_time_wait", closes_in_time_wait()),
        ("refused_v6", refused_v6()),
        ("unowned", unowned()),
        ("existing_listener", existing_listener()),
        ("loss", loss()),
    ]
}

/// The names of the records `args` lets through.
fn passing(args: &[&str]) -> Vec<&'static str> {
    let f = filter(args);
    all()
        .into_iter()
        .filter(|(_, r)| f.matches(r))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn no_filter_passes_everything() {
    assert_eq!(passing(&[]).len(), all().len());
    assert!(filter(&[]).describe().is_empty());
    assert_eq!(filter(&[]).kernel(), KernelFilter::default());
}

#[test]
fn owners_by_pid_uid_and_comm() {
    assert_eq!(
        passing(&["--pid", "42"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["--pid", "42", "--pid", "9"]),
        ["connects", "listens", "closes_in_time_wait", "loss"],
        "a flag's values: any"
    );
    assert_eq!(passing(&["--comm", "^ng"]), ["listens", "loss"],);
    assert_eq!(
        passing(&["--comm", "^(curl|sshd)$"]),
        [
            "connects",
            "closes_in_time_wait",
            "existing_listener",
            "loss"
        ],
    );
    // Every sample owner has uid 0; the unknown owner's 0 is no uid.
    let uid0 = passing(&["--uid", "0"]);
    assert!(
        !uid0.contains(&"unowned") && uid0.len() == all().len() - 1,
        "{uid0:?}"
    );
    assert_eq!(passing(&["--uid", "1000"]), ["loss"]);
    assert_eq!(passing(&["--pid", "0"]), ["loss"], "pid 0 is nobody");
    // What decides whether a TIME_WAIT socket found at start is followed.
    assert!(filter(&["--port", "1", "--state", "closed"]).matches_owner(&Owner::UNKNOWN));
    assert!(!filter(&["--comm", "."]).matches_owner(&Owner::UNKNOWN));
    assert!(filter(&["--comm", "^sshd$"]).matches_owner(&owner(1, "sshd")));
}

#[test]
fn cgroups_of_the_owner() {
    let owner = |path: &str, container: Option<&str>| Owner {
        cgroup: Some(Arc::new(Cgroup {
            path: path.into(),
            container: container.map(Into::into),
        })),
        ..Owner::UNKNOWN
    };
    let mut r = connects();
    if let Record::Event(e) = &mut r {
        let id = "abcdef0123456789".repeat(4);
        e.owner = Owner {
            source: OwnerSource::Syscall,
            ..owner(&format!("/system.slice/docker-{id}.scope"), Some(&id))
        };
    }
    for (args, expected) in [
        (&["--cgroup", "/system.slice"][..], true),
        (&["--cgroup", "abcdef012345"], true),
        (&["--cgroup", "/user.slice"], false),
        (&["--cgroup", "abcdef1"], false),
        (&["--cgroup", "/user.slice", "--cgroup", "ABCDEF"], true),
        (&["cgroup", "=", "/system.slice"], true),
        (&["cgroup", "!=", "/system.slice"], false),
    ] {
        assert_eq!(filter(args).matches(&r), expected, "{args:?}");
    }
    assert!(
        !filter(&["--cgroup", "/"]).matches(&connects()),
        "no cgroup resolved"
    );
}

#[test]
fn ports_local_remote_or_either() {
    assert_eq!(
        passing(&["--port", "443"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["--port", "40000"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(passing(&["--sport", "80"]), ["listens", "loss"]);
    assert_eq!(
        passing(&["--dport", "443"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["--sport", "443"]),
        ["loss"],
        "443 is curl's remote port"
    );
    // A socket without a peer has remote port 0: no --dport matches it.
    assert_eq!(passing(&["--dport", "80"]), ["loss"]);
    assert_eq!(
        passing(&["--port", "22", "--port", "5353"]),
        ["binds_udp", "existing_listener", "loss"]
    );
}

#[test]
fn addresses_families_and_protocols() {
    assert_eq!(
        passing(&["--addr", "93.184.216.0/24"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["--net", "10.0.0.1"]),
        ["connects", "closes_in_time_wait", "loss"],
        "alias, a bare address"
    );
    assert_eq!(passing(&["--addr", "::1"]), ["refused_v6", "loss"]);
    assert_eq!(passing(&["-6"]), ["binds_udp", "refused_v6", "loss"]);
    assert_eq!(passing(&["-4"]).len(), all().len() - 2);
    assert_eq!(passing(&["-4", "-6"]).len(), all().len());
    assert_eq!(passing(&["--udp"]), ["binds_udp", "loss"]);
    assert_eq!(passing(&["-t"]).len(), all().len() - 1);
    assert_eq!(passing(&["--tcp", "--udp"]).len(), all().len());
}

#[test]
fn states_touched() {
    assert_eq!(
        passing(&["--state", "established"]),
        ["connects", "closes_in_time_wait", "unowned", "loss"],
        "transitions into and out of it, the connection that went through it"
    );
    assert_eq!(
        passing(&["--state", "TIME-WAIT"]),
        ["closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["--state", "listening"]),
        ["listens", "existing_listener", "loss"]
    );
    assert_eq!(
        passing(&["--state", "syn-sent"]),
        ["connects", "closes_in_time_wait", "refused_v6", "loss"]
    );
    // Bound sockets are unconnected (CLOSE), as ss shows them; so is the
    // end of a connection that did not end in TIME_WAIT.
    assert_eq!(
        passing(&["--state", "closed"]),
        ["binds_udp", "refused_v6", "loss"]
    );
    assert_eq!(
        passing(&["--state", "time_wait", "--state", "listen"]),
        [
            "listens",
            "closes_in_time_wait",
            "existing_listener",
            "loss"
        ]
    );
    assert_eq!(
        passing(&["--state", "bucket"]),
        ["closes_in_time_wait", "loss"]
    );
    assert_eq!(passing(&["--state", "all"]).len(), all().len());
}

#[test]
fn expressions_on_records() {
    assert_eq!(
        passing(&["state established and ( dport = :443 or sport = :80 )"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(
        passing(&["dport", "=", ":443"]),
        ["connects", "closes_in_time_wait", "loss"],
        "the expression in several arguments"
    );
    assert_eq!(
        passing(&["exclude listening exclude closed"]),
        ["connects", "closes_in_time_wait", "unowned", "loss"]
    );
    assert_eq!(
        passing(&["state connected"]),
        [
            "connects",
            "closes_in_time_wait",
            "refused_v6",
            "unowned",
            "loss"
        ]
    );
    assert_eq!(
        passing(&["dport != :443"]),
        [
            "listens",
            "binds_udp",
            "refused_v6",
            "unowned",
            "existing_listener",
            "loss"
        ]
    );
    assert_eq!(
        passing(&["dport < :1024"]),
        [
            "connects",
            "listens",
            "binds_udp",
            "closes_in_time_wait",
            "refused_v6",
            "existing_listener",
            "loss"
        ],
        "port 0 of unconnected sockets is below 1024, as in ss"
    );
    assert_eq!(
        passing(&["sport >= 8080"]),
        [
            "connects",
            "closes_in_time_wait",
            "refused_v6",
            "unowned",
            "loss"
        ]
    );
    assert_eq!(passing(&["src 0.0.0.0 sport = :80"]), ["listens", "loss"]);
    assert_eq!(passing(&["dst [::1]:9"]), ["refused_v6", "loss"]);
    assert_eq!(
        passing(&["src inet6:*"]),
        ["binds_udp", "refused_v6", "loss"]
    );
    assert_eq!(
        passing(&["not src 127.0.0.0/8 and not src ::1/128"]),
        [
            "connects",
            "listens",
            "binds_udp",
            "closes_in_time_wait",
            "existing_listener",
            "loss"
        ]
    );
}

#[test]
fn flags_and_expression_must_all_hold() {
    assert_eq!(
        passing(&["--pid", "42", "--port", "80"]),
        ["loss"],
        "AND across kinds"
    );
    assert_eq!(
        passing(&["--pid", "42", "dport = :443"]),
        ["connects", "closes_in_time_wait", "loss"]
    );
    assert_eq!(passing(&["--pid", "9", "dport = :443"]), ["loss"]);
    assert_eq!(
        passing(&[
            "--comm",
            "curl",
            "--state",
            "time-wait",
            "-4",
            "--addr",
            "93.184.216.34",
            "dport = :https"
        ]),
        ["closes_in_time_wait", "loss"]
    );
}

#[test]
fn what_the_kernel_checks() {
    let k = filter(&[
        "--pid", "42", "--pid", "9", "--uid", "1000", "--sport", "80", "--port", "443", "-6",
        "--tcp",
    ])
    .kernel();
    assert_eq!((k.pids.len, &k.pids.values[..2]), (2, &[42, 9][..]));
    assert_eq!((k.uids.len, k.uids.values[0]), (1, 1000));
    assert_eq!((k.sports.len, k.sports.values[0]), (1, 80));
    assert_eq!((k.ports.len, k.ports.values[0]), (1, 443));
    assert_eq!(k.dports.len, 0);
    assert_eq!((k.families, k.protocols), (FAMILY_IPV6, PROTO_TCP));
    assert_eq!(
        filter(&["-4", "-6", "-u"]).kernel().families,
        FAMILY_IPV4 | FAMILY_IPV6
    );
    assert_eq!(filter(&["--udp"]).kernel().protocols, PROTO_UDP);
    // Userspace only: these leave the kernel nothing to check.
    for args in [
        &["--comm", "x"][..],
        &["--addr", "10.0.0.0/8"],
        &["--state", "listening"],
        &["--cgroup", "/"],
        &["dst 10.0.0.0/8 or dport = :1"],
        &["dport > :1024"],
    ] {
        assert_eq!(filter(args).kernel(), KernelFilter::default(), "{args:?}");
    }
    // Ports an expression needs, where no flag of their kind is given.
    let k = filter(&["state time-wait and ( dport = :443 or sport = :80 )"]).kernel();
    assert_eq!((k.ports.len, &k.ports.values[..2]), (2, &[80, 443][..]));
    let k = filter(&["--dport", "8080", "dport = :443 and sport = :1"]).kernel();
    assert_eq!(
        (k.dports.len, k.dports.values[0]),
        (1, 8080),
        "the flag wins"
    );
    assert_eq!((k.sports.len, k.sports.values[0]), (1, 1));
    let nine = (1..=9)
        .map(|p| format!("dport = :{p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    assert_eq!(
        filter(&[&nine]).kernel().dports.len,
        0,
        "more than the kernel holds"
    );
}

/// What the kernel programs decide for a record (`tracer-ebpf/src/filter.rs`
/// on what the record's socket looked like).
fn kernel_admits(k: &KernelFilter, record: &Record) -> bool {
    let Some(s) = Subject::of(record) else {
        return true;
    };
    fn has<T: PartialEq, const N: usize>(set: &ValueSet<T, N>, v: T) -> bool {
        set.len == 0 || set.values[..set.len as usize].contains(&v)
    }
    let family = if s.local.is_ipv4() {
        FAMILY_IPV4
    } else {
        FAMILY_IPV6
    };
    let protocol = match s.proto {
        Proto::Tcp => PROTO_TCP,
        Proto::Udp => PROTO_UDP,
        Proto::Other(_) => 0,
    };
    (k.families == 0 || k.families & family != 0)
        && (k.protocols == 0 || k.protocols & protocol != 0)
        && (has(&k.ports, s.local.port()) || has(&k.ports, s.remote.port()))
        && has(&k.sports, s.local.port())
        && has(&k.dports, s.remote.port())
        && (!s.owner.is_known() || (has(&k.pids, s.owner.pid) && has(&k.uids, s.owner.uid)))
}

#[test]
fn the_kernel_never_drops_what_userspace_would_show() {
    let filters = [
        &["--pid", "42"][..],
        &["--pid", "9", "--uid", "0"],
        &["--port", "443", "--port", "80"],
        &["--sport", "80", "-4"],
        &["--dport", "443", "--tcp"],
        &["-6", "--udp"],
        &["state time-wait and ( dport = :443 or sport = :80 )"],
        &["dport = :443 or dport = :9"],
        &["sport = :80 or dport = :443 or dport = :9"],
        &["src 0.0.0.0:80 and dport = :0"],
        &["( sport = :5353 or sport = :22 ) and not dport = :1"],
        &["--pid", "7", "sport = :5353"],
    ];
    for args in filters {
        let f = filter(args);
        let kernel = f.kernel();
        assert_ne!(kernel, KernelFilter::default(), "{args:?} pushes something");
        let mut shown = 0;
        for (name, record) in all() {
            if f.matches(&record) {
                shown += 1;
                assert!(kernel_admits(&kernel, &record), "{args:?} {name}");
            }
        }
        assert!(shown > 1, "{args:?} shows some record besides the loss");
    }
}

#[test]
fn sockets_and_timewait_rows() {
    let f = filter(&["--port", "443", "--addr", "93.184.216.0/24"]);
    let (local, remote) = (
        "10.0.0.1:40000".parse().unwrap(),
        "93.184.216.34:443".parse().unwrap(),
    );
    assert!(f.may_match_socket(&local, &remote));
    assert!(!f.may_match_socket(&local, &"93.184.216.34:80".parse().unwrap()));
    assert!(!filter(&["--udp"]).may_match_socket(&local, &remote));
    // Owner filters and states are not a socket's: they pass here.
    assert!(filter(&["--pid", "1", "--state", "listening"]).may_match_socket(&local, &remote));

    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let f = filter(&["--pid", "42", "--comm", "^curl$", "--addr", "10.0.0.0/8"]);
    assert!(f.matches_row(42, "curl", ip("10.0.0.1"), ip("93.184.216.34")));
    assert!(!f.matches_row(43, "curl", ip("10.0.0.1"), ip("93.184.216.34")));
    assert!(!f.matches_row(42, "wget", ip("10.0.0.1"), ip("93.184.216.34")));
    assert!(!f.matches_row(42, "curl", ip("192.168.0.1"), ip("93.184.216.34")));
    let comm = filter(&["--comm", ".*"]);
    assert!(
        !comm.matches_row(0, "", ip("10.0.0.1"), ip("10.0.0.2")),
        "unknown owner"
    );
    assert!(filter(&[]).matches_row(0, "", ip("10.0.0.1"), ip("10.0.0.2")));
    assert!(!filter(&["-6"]).matches_row(1, "x", ip("10.0.0.1"), ip("10.0.0.2")));
}

#[test]
fn timewait_says_what_it_cannot_apply() {
    for (args, what) in [
        (&["--state", "established"][..], Some("--state")),
        (&["--uid", "0"], Some("--uid")),
        (&["--cgroup", "/"], Some("--cgroup")),
        (&["--udp"], Some("--udp")),
        (&["dport = :443"], Some("a filter expression")),
        (
            &[
                "--pid", "1", "--comm", "x", "--port", "1", "--addr", "::1", "-4", "-t",
            ],
            None,
        ),
    ] {
        assert_eq!(filter(args).unsupported_by_timewait(), what, "{args:?}");
    }
    let timewait = |args: &[&str]| {
        let cli = Cli::try_parse_from(
            ["socktrace", "timewait"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        cli.into_command().map(|_| ())
    };
    assert_eq!(
        timewait(&["--state", "established"]),
        Err("timewait counts TCP connection ends by process and destination: it cannot apply --state".into())
    );
    assert_eq!(timewait(&["--pid", "1", "--dport", "443"]), Ok(()));
}

#[test]
fn limits_and_bad_expressions_are_one_line_errors() {
    let nine: Vec<String> = (1..=9)
        .flat_map(|p| ["--pid".into(), p.to_string()])
        .collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let err = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("socktrace").chain(args.iter().copied()))
            .unwrap()
            .into_command()
            .unwrap_err()
    };
    assert_eq!(err(&nine), "at most 8 --pid values, got 9");
    assert_eq!(
        err(&["watch", "state", "established", "dport", "foo"]),
        "bad filter at token 4 ('foo'): expected a port"
    );
    assert_eq!(
        err(&["record", "out.jsonl", "--json", "(", "sport", "=", ":1"]),
        "bad filter at its end: expected )"
    );
    for bad in [
        &["--addr", "10.0.0.0/33"][..],
        &["--state", "estab"],
        &["--comm", "("],
        &["--cgroup", "nginx"],
        &["--sport", "0"],
        &["--dport", "65536"],
        &["--uid", "root"],
    ] {
        let args = std::iter::once("socktrace").chain(bad.iter().copied());
        let e = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
    }
}

#[test]
fn filters_in_words() {
    let f = filter(&[
        "--pid",
        "42",
        "--comm",
        "^curl$",
        "--dport",
        "443",
        "--addr",
        "10.0.0.0/8",
        "--state",
        "time-wait",
        "-4",
        "--tcp",
        "dport",
        "=",
        ":443",
    ]);
    assert_eq!(
        f.describe(),
        [
            "pid 42",
            "comm ^curl$",
            "dport 443",
            "addr 10.0.0.0/8",
            "state TIME_WAIT",
            "ipv4",
            "tcp",
            "expression dport = :443"
        ]
    );
}
