use super::{lex::lex, services::service_port, *};
use crate::event::TcpState;

/// Services the tests know (no /etc/services needed).
fn services(name: &str) -> Option<u16> {
    match name {
        "https" => Some(443),
        "ssh" => Some(22),
        _ => None,
    }
}

fn expr(text: &str) -> Expr {
    parse(text, &services)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .unwrap_or_else(|| panic!("{text}: empty"))
}

fn error(text: &str) -> String {
    match parse(text, &services) {
        Ok(e) => panic!("{text}: parsed as {e:?}"),
        Err(e) => e.to_string(),
    }
}

fn state(s: TcpState) -> Expr {
    Expr::State(StateSet::of(s))
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

fn port(end: End, op: Op, port: u16) -> Expr {
    Expr::Port {
        end,
        op,
        host: Host {
            port: Some(port),
            ..Host::default()
        },
    }
}

fn host(end: End, net: Option<&str>, port: Option<u16>) -> Expr {
    Expr::Host {
        end,
        host: Host {
            family: None,
            net: net.map(|n| Net::parse(n).unwrap()),
            port,
        },
    }
}

#[test]
fn lexes_around_parentheses_and_operators() {
    assert_eq!(
        lex("(dport>=:443)or!src ::1  &&\tdst [::1]:80"),
        [
            "(", "dport", ">=", ":443", ")", "or", "!", "src", "::1", "&&", "dst", "[::1]:80"
        ]
    );
    assert_eq!(lex("((a))"), ["(", "(", "a", ")", ")"]);
    assert!(lex("  \t ").is_empty());
    // Every operator is a token of its own, the longest first.
    let cases: [(&str, &[&str]); 8] = [
        (
            "dport=:443&&!sport=:80",
            &["dport", "=", ":443", "&&", "!", "sport", "=", ":80"],
        ),
        ("!!x", &["!", "!", "x"]),
        ("! ! x", &["!", "!", "x"]),
        (
            "a||!(b)|c&d",
            &["a", "||", "!", "(", "b", ")", "|", "c", "&", "d"],
        ),
        ("sport!=:1", &["sport", "!=", ":1"]),
        (
            "sport<=:1>=:2==:3",
            &["sport", "<=", ":1", ">=", ":2", "==", ":3"],
        ),
        ("&&&", &["&&", "&"]),
        ("=>!==<>", &["=", ">", "!=", "=", "<", ">"]),
    ];
    for (text, tokens) in cases {
        assert_eq!(lex(text), tokens, "{text}");
    }
}

/// What ss accepts parses the same with or without spaces around its
/// operators; what it refuses (a run of operators no rule takes) is
/// refused here too, naming the operator out of place.
#[test]
fn operators_need_no_spaces() {
    use End::*;
    let accepted = [
        (
            "dport=:443&&!sport=:80",
            and(port(Remote, Op::Eq, 443), not(port(Local, Op::Eq, 80))),
        ),
        (
            "dport = :443 && ! sport = :80",
            and(port(Remote, Op::Eq, 443), not(port(Local, Op::Eq, 80))),
        ),
        ("! ! sport = :1", not(not(port(Local, Op::Eq, 1)))),
        ("!!sport=:1", not(not(port(Local, Op::Eq, 1)))),
        ("not not sport = :1", not(not(port(Local, Op::Eq, 1)))),
        ("!(sport=:1)", not(port(Local, Op::Eq, 1))),
        (
            "sport>=:1024&dport!=:22",
            and(port(Local, Op::Ge, 1024), port(Remote, Op::Ne, 22)),
        ),
        (
            "sport<:1||dport>:2",
            or(port(Local, Op::Lt, 1), port(Remote, Op::Gt, 2)),
        ),
        ("dport==:443", port(Remote, Op::Eq, 443)),
        ("sport<=:1", port(Local, Op::Le, 1)),
    ];
    for (text, want) in accepted {
        assert_eq!(expr(text), want, "{text}");
    }
    let term = "expected a filter term: state, exclude, sport, dport, src, dst, cgroup, not or (";
    let refused = [
        (
            "sport = :22 &&& dport = :1",
            format!("bad filter at token 5 ('&'): {term}"),
        ),
        (
            "sport = :22 ||| dport = :1",
            format!("bad filter at token 5 ('|'): {term}"),
        ),
        (
            "sport = :22 & & dport = :1",
            format!("bad filter at token 5 ('&'): {term}"),
        ),
        (
            "sport = :22 | | dport = :1",
            format!("bad filter at token 5 ('|'): {term}"),
        ),
        (
            "sport = :22 & | dport = :1",
            format!("bad filter at token 5 ('|'): {term}"),
        ),
        (
            "sport =! :22",
            "bad filter at token 3 ('!'): expected a port".into(),
        ),
        (
            "sport <> :22",
            "bad filter at token 3 ('>'): expected a port".into(),
        ),
        (
            "sport => :22",
            "bad filter at token 3 ('>'): expected a port".into(),
        ),
        ("sport = :22 !", format!("bad filter at its end: {term}")),
        (
            "sport !:22",
            "bad filter at token 2 ('!'): expected a port".into(),
        ),
    ];
    for (text, message) in refused {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn empty_is_no_filter() {
    assert_eq!(parse("", &services), Ok(None));
    assert_eq!(parse("   ", &services), Ok(None));
}

#[test]
fn states_build_one_set_as_ss_does() {
    use TcpState::*;
    assert_eq!(expr("state time-wait"), state(TimeWait));
    assert_eq!(expr("state TIME_WAIT"), state(TimeWait));
    assert_eq!(
        expr("state established state syn-sent"),
        or(state(Established), state(SynSent))
    );
    assert_eq!(
        expr("exclude listening exclude closed"),
        and(not(state(Listen)), not(state(Close)))
    );
    assert_eq!(
        expr("state connected exclude time-wait"),
        and(
            Expr::State(StateSet::parse("connected").unwrap()),
            not(state(TimeWait))
        )
    );
    // `and` ends a run: two sets, both must hold.
    assert_eq!(
        expr("state established and state syn-sent"),
        and(state(Established), state(SynSent))
    );
}

#[test]
fn ports_with_every_operator_and_form() {
    use End::*;
    let https = port(Remote, Op::Eq, 443);
    for text in [
        "dport = :443",
        "dport == :443",
        "dport eq :443",
        "dport :443",
        "dport 443",
        "dport = 443",
        "dport = :https",
        "dport=:443",
        // Numbers as ss reads them (strtoul, base 0).
        "dport = :0x1bb",
        "dport = :0673",
        "dport 0x1BB",
    ] {
        assert_eq!(expr(text), https, "{text}");
    }
    let ops = [
        ("!=", Op::Ne),
        ("ne", Op::Ne),
        ("neq", Op::Ne),
        ("<", Op::Lt),
        ("lt", Op::Lt),
        (">", Op::Gt),
        ("gt", Op::Gt),
        ("<=", Op::Le),
        ("le", Op::Le),
        ("leq", Op::Le),
        (">=", Op::Ge),
        ("ge", Op::Ge),
        ("geq", Op::Ge),
    ];
    // A leading 0 is octal, as in ss: `:022` is port 18, not 22.
    assert_eq!(expr("sport = :022"), port(Local, Op::Eq, 18));
    for (token, op) in ops {
        assert_eq!(
            expr(&format!("sport {token} :1024")),
            port(Local, op, 1024),
            "{token}"
        );
    }
    assert_eq!(
        expr("sport = *:ssh"),
        port(Local, Op::Eq, 22),
        "any address"
    );
    assert_eq!(
        expr("dport = 10.0.0.1:80"),
        Expr::Port {
            end: Remote,
            op: Op::Eq,
            host: Host {
                family: None,
                net: Some(Net::parse("10.0.0.1").unwrap()),
                port: Some(80),
            },
        }
    );
    assert_eq!(
        expr("dport = inet6::443"),
        Expr::Port {
            end: Remote,
            op: Op::Eq,
            host: Host {
                family: Some(Family::Inet6),
                net: None,
                port: Some(443),
            },
        }
    );
    assert_eq!(
        expr("dport = :*"),
        Expr::Port {
            end: Remote,
            op: Op::Eq,
            host: Host::default()
        }
    );
}

#[test]
fn hosts_with_prefixes_ports_and_brackets() {
    use End::*;
    assert_eq!(
        expr("src 10.0.0.0/8"),
        host(Local, Some("10.0.0.0/8"), None)
    );
    assert_eq!(
        expr("dst = 193.233.7/24"),
        host(Remote, Some("193.233.7.0/24"), None)
    );
    assert_eq!(
        expr("dst 10.1.2.3:80"),
        host(Remote, Some("10.1.2.3"), Some(80))
    );
    assert_eq!(
        expr("dst 10.0.0.0/8:https"),
        host(Remote, Some("10.0.0.0/8"), Some(443))
    );
    assert_eq!(expr("src ::1"), host(Local, Some("::1"), None));
    assert_eq!(
        expr("dst [::1]:8080"),
        host(Remote, Some("::1"), Some(8080))
    );
    assert_eq!(
        expr("dst [fe80::/10]"),
        host(Remote, Some("fe80::/10"), None)
    );
    assert_eq!(expr("dst *:22"), host(Remote, None, Some(22)));
    assert_eq!(expr("dst :22"), host(Remote, None, Some(22)));
    assert_eq!(expr("src *"), host(Local, None, None));
    assert_eq!(
        expr("dst inet6:*"),
        Expr::Host {
            end: Remote,
            host: Host {
                family: Some(Family::Inet6),
                ..Host::default()
            }
        }
    );
    assert_eq!(
        expr("src != 127.0.0.0/8"),
        not(host(Local, Some("127.0.0.0/8"), None))
    );
    assert_eq!(
        expr("cgroup = /system.slice"),
        Expr::Cgroup(CgroupMatch::Path("/system.slice".into()))
    );
    assert_eq!(
        expr("cgroup != 4c0f9e2b"),
        not(Expr::Cgroup(CgroupMatch::Container("4c0f9e2b".into())))
    );
}

#[test]
fn not_binds_tighter_than_and_than_or() {
    use End::*;
    let a = || port(Local, Op::Eq, 1);
    let b = || port(Local, Op::Eq, 2);
    let c = || port(Local, Op::Eq, 3);
    assert_eq!(
        expr("sport = :1 or sport = :2 and sport = :3"),
        or(a(), and(b(), c()))
    );
    assert_eq!(
        expr("sport = :1 and sport = :2 or sport = :3"),
        or(and(a(), b()), c())
    );
    assert_eq!(
        expr("sport = :1 sport = :2 | sport = :3"),
        or(and(a(), b()), c()),
        "juxtaposed terms are an and"
    );
    assert_eq!(expr("not sport = :1 and sport = :2"), and(not(a()), b()));
    assert_eq!(expr("! ! sport = :1"), not(not(a())));
    assert_eq!(
        expr("( sport = :1 || sport = :2 ) sport = :3"),
        and(or(a(), b()), c())
    );
    assert_eq!(expr("!(sport = :1 or sport = :2)"), not(or(a(), b())));
    assert_eq!(
        expr("sport = :1 && sport = :2 & sport = :3"),
        and(and(a(), b()), c())
    );
}

#[test]
fn the_issue_example() {
    use End::*;
    assert_eq!(
        expr("state time-wait and ( dport = :443 or sport = :80 )"),
        and(
            state(TcpState::TimeWait),
            or(port(Remote, Op::Eq, 443), port(Local, Op::Eq, 80))
        )
    );
}

#[test]
fn errors_name_the_token() {
    let term = "expected a filter term: state, exclude, sport, dport, src, dst, cgroup, not or (";
    let cases = [
        (
            "state established dport foo",
            "bad filter at token 4 ('foo'): expected a port".to_string(),
        ),
        (
            "state",
            "bad filter at its end: expected a TCP state".into(),
        ),
        ("dport >", "bad filter at its end: expected a port".into()),
        (
            "dport > :*",
            "bad filter at token 3 (':*'): expected a port to compare with".into(),
        ),
        (
            "sport = :99999",
            "bad filter at token 3 (':99999'): expected a port".into(),
        ),
        (
            // 8 is no octal digit: ss refuses it too.
            "sport = :08",
            "bad filter at token 3 (':08'): expected a port".into(),
        ),
        ("( sport = :80", "bad filter at its end: expected )".into()),
        (
            "sport = :80 )",
            "bad filter at token 4 (')'): a ) without its (".into(),
        ),
        (
            "src localhost",
            "bad filter at token 2 ('localhost'): expected an address or prefix, e.g. \
             10.0.0.0/8 or ::1, not `localhost`"
                .into(),
        ),
        (
            "dst [::1",
            "bad filter at token 2 ('[::1'): expected ] after an address in brackets".into(),
        ),
        (
            "dst [::1]80",
            "bad filter at token 2 ('[::1]80'): expected :PORT after ]".into(),
        ),
        (
            "dst inet:::1",
            "bad filter at token 2 ('inet:::1'): expected an IPv4 address after inet:".into(),
        ),
        (
            "dst inet6:10.0.0.1",
            "bad filter at token 2 ('inet6:10.0.0.1'): expected an IPv6 address after inet6:"
                .into(),
        ),
        (
            "dst 10.0.0.0/40",
            "bad filter at token 2 ('10.0.0.0/40'): prefix length /40 is longer than 32 bits"
                .into(),
        ),
        ("and", format!("bad filter at token 1 ('and'): {term}")),
        ("foo", format!("bad filter at token 1 ('foo'): {term}")),
        (
            "sport = :80 foo",
            format!("bad filter at token 4 ('foo'): {term}"),
        ),
        ("sport = :80 or", format!("bad filter at its end: {term}")),
        ("not", format!("bad filter at its end: {term}")),
        ("( )", format!("bad filter at token 2 (')'): {term}")),
        (
            "dev eth0",
            "bad filter at token 1 ('dev'): dev is an ss filter socktrace cannot apply \
             (the kernel event has no such field)"
                .into(),
        ),
        (
            "cgroup = nginx",
            "bad filter at token 3 ('nginx'): expected a cgroup path (starting with /) or a \
             container id (hex), not `nginx`"
                .into(),
        ),
        ("src", "bad filter at its end: expected an address".into()),
    ];
    for (text, message) in cases {
        assert_eq!(error(text), message, "{text}");
    }
    assert!(
        error("state established exclude estab")
            .starts_with("bad filter at token 4 ('estab'): expected a TCP state (")
    );
}

fn needs(text: &str) -> PortNeeds {
    expr(text).port_needs()
}

fn set(ports: &[u16]) -> Option<BTreeSet<u16>> {
    Some(ports.iter().copied().collect())
}

#[test]
fn port_needs_are_necessary_conditions() {
    assert_eq!(
        needs("dport = :443"),
        PortNeeds {
            dport: set(&[443]),
            ..PortNeeds::default()
        }
    );
    assert_eq!(
        needs("sport = :80 and dport = :443"),
        PortNeeds {
            sport: set(&[80]),
            dport: set(&[443]),
            either: None,
        }
    );
    assert_eq!(
        needs("dport = :443 or dport = :80"),
        PortNeeds {
            dport: set(&[80, 443]),
            ..PortNeeds::default()
        }
    );
    let either = PortNeeds {
        either: set(&[80, 443]),
        ..PortNeeds::default()
    };
    assert_eq!(needs("dport = :443 or sport = :80"), either);
    assert_eq!(
        needs("state time-wait and ( dport = :443 or sport = :80 )"),
        either
    );
    assert_eq!(
        needs("src 10.0.0.1:80"),
        PortNeeds {
            sport: set(&[80]),
            ..PortNeeds::default()
        }
    );
    assert_eq!(
        needs("( dport = :1 or dport = :2 ) dport = :2"),
        PortNeeds {
            dport: set(&[2]),
            ..PortNeeds::default()
        },
        "the smaller set of an and"
    );
    for none in [
        "dport = :443 or state closed",
        "not dport = :443",
        "dport != :443",
        "dport > :1024",
        "dst 10.0.0.0/8",
        "dport = :*",
        "state listening",
    ] {
        assert_eq!(needs(none), PortNeeds::default(), "{none}");
    }
}

#[test]
fn services_from_a_services_table() {
    let table = "# comment\n\
                 ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol\n\
                 http\t\t80/tcp\t\twww\t# WorldWideWeb HTTP\n\
                 domain\t\t53/udp\n\
                 ddp\t\t37/ddp\n";
    assert_eq!(service_port(table, "ssh"), Some(22));
    assert_eq!(service_port(table, "www"), Some(80), "an alias");
    assert_eq!(service_port(table, "domain"), Some(53));
    assert_eq!(service_port(table, "ddp"), None, "neither TCP nor UDP");
    assert_eq!(service_port(table, "SSH"), None);
    assert_eq!(
        service_port(table, "Remote"),
        None,
        "comments are not names"
    );
}
