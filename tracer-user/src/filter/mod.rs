//! What users filter on, and which records pass: the flags (`--pid`,
//! `--port`, `--state`, ... AND across flags, OR across a flag's values)
//! and an `ss`-style expression, all of which must hold.
//!
//! The filter runs in userspace on every record the pipeline renders or
//! counts, after tracking (so connections are still followed whole). What
//! the kernel can decide before building a record (pid, uid, ports,
//! family, protocol) it also decides there ([`Filter::kernel`]): that part
//! is a necessary condition of the whole, never more selective.
mod expr;
mod flags;
mod terms;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tracer_common::{
    FAMILY_IPV4, FAMILY_IPV6, IdSet, KernelFilter, MAX_FILTER_IDS, MAX_FILTER_PORTS, PROTO_TCP,
    PROTO_UDP, PortSet,
};

pub use self::flags::Flags;
use self::{
    expr::{End, Expr},
    terms::StateSet,
};
use crate::{
    event::{Detail, Owner, Proto, TcpState},
    track::Record,
};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    flags: Flags,
    /// The `--state` values, together.
    states: Option<StateSet>,
    expr: Option<Expr>,
}

impl Filter {
    /// The filter `flags` ask for; a bad expression or too many values of
    /// a kernel-checked flag is an error (one line).
    pub fn new(flags: &Flags) -> Result<Filter, String> {
        let limits = [
            ("--pid", flags.pids.len(), MAX_FILTER_IDS),
            ("--uid", flags.uids.len(), MAX_FILTER_IDS),
            ("--port", flags.ports.len(), MAX_FILTER_PORTS),
            ("--sport", flags.sports.len(), MAX_FILTER_PORTS),
            ("--dport", flags.dports.len(), MAX_FILTER_PORTS),
        ];
        for (flag, n, max) in limits {
            if n > max {
                return Err(format!("at most {max} {flag} values, got {n}"));
            }
        }
        let expr = expr::parse(&flags.expression.join(" "), &expr::etc_services)
            .map_err(|err| err.to_string())?;
        Ok(Filter {
            flags: flags.clone(),
            states: flags.states.iter().copied().reduce(StateSet::union),
            expr,
        })
    }

    /// Whether `record` is to be shown and counted. Losses always are.
    pub fn matches(&self, record: &Record) -> bool {
        match Subject::of(record) {
            Some(s) => {
                self.socket(s.proto, &s.local, &s.remote)
                    && self.matches_owner(s.owner)
                    && self.states.is_none_or(|set| s.states.intersects(set))
                    && self.expr.as_ref().is_none_or(|e| e.eval(&s))
            }
            None => true,
        }
    }

    /// Whether a TCP socket with these ends may have records that match:
    /// what does not change in a socket's life (ports, addresses, family)
    /// holds. For sockets found by sock_diag.
    pub fn may_match_socket(&self, local: &SocketAddr, remote: &SocketAddr) -> bool {
        self.socket(Proto::Tcp, local, remote)
    }

    /// Whether `owner` passes the owner filters (pid, uid, command name,
    /// cgroup); an unknown owner passes none of them.
    pub fn matches_owner(&self, owner: &Owner) -> bool {
        let f = &self.flags;
        let asked =
            !(f.pids.is_empty() && f.uids.is_empty() && f.comms.is_empty() && f.cgroups.is_empty());
        !asked
            || (owner.is_known()
                && any(&f.pids, |p| *p == owner.pid)
                && any(&f.uids, |u| *u == owner.uid)
                && any(&f.comms, |re| re.is_match(&owner.comm.as_str()))
                && any(&f.cgroups, |c| c.matches(owner)))
    }

    /// Whether a `timewait` row (counts of one owner towards one
    /// destination; the kernel checked ports and family) matches. Pid 0 is
    /// an unknown owner. Filters `timewait` rejects are not looked at.
    pub fn matches_row(&self, pid: u32, comm: &str, local: IpAddr, remote: IpAddr) -> bool {
        let f = &self.flags;
        any(&f.pids, |p| pid != 0 && *p == pid)
            && any(&f.comms, |re| pid != 0 && re.is_match(comm))
            && any(&f.nets, |net| net.contains(local) || net.contains(remote))
            && self.family(local)
    }

    /// What `timewait` cannot apply to its rows (it counts TCP connection
    /// ends by owner pid and destination), if the user asked for it.
    pub fn unsupported_by_timewait(&self) -> Option<&'static str> {
        let f = &self.flags;
        [
            (!f.states.is_empty(), "--state"),
            (!f.uids.is_empty(), "--uid"),
            (!f.cgroups.is_empty(), "--cgroup"),
            (f.udp, "--udp"),
            (self.expr.is_some(), "a filter expression"),
        ]
        .into_iter()
        .find_map(|(asked, what)| asked.then_some(what))
    }

    /// The part the kernel checks before building a record: the flags it
    /// can check, and ports the expression needs where no flag of their
    /// kind is given (and no more than it holds).
    pub fn kernel(&self) -> KernelFilter {
        let f = &self.flags;
        let needs = self.expr.as_ref().map(Expr::port_needs).unwrap_or_default();
        // What does not fit is not checked there.
        let ports = |given: &[u16], needed: Option<BTreeSet<u16>>| {
            let needed: Vec<u16> = needed.unwrap_or_default().into_iter().collect();
            PortSet::from_slice(if given.is_empty() { &needed } else { given }).unwrap_or_default()
        };
        let bits = |pairs: [(bool, u32); 2]| {
            pairs
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |mask, (_, bit)| mask | bit)
        };
        KernelFilter {
            ports: ports(&f.ports, needs.either),
            sports: ports(&f.sports, needs.sport),
            dports: ports(&f.dports, needs.dport),
            pids: IdSet::from_slice(&f.pids).unwrap_or_default(),
            uids: IdSet::from_slice(&f.uids).unwrap_or_default(),
            families: bits([(f.ipv4, FAMILY_IPV4), (f.ipv6, FAMILY_IPV6)]),
            protocols: bits([(f.tcp, PROTO_TCP), (f.udp, PROTO_UDP)]),
        }
    }

    /// Each filter in words (`record`'s header).
    pub fn describe(&self) -> Vec<String> {
        fn each<T: std::fmt::Display>(out: &mut Vec<String>, name: &str, values: &[T]) {
            out.extend(values.iter().map(|v| format!("{name} {v}")));
        }
        let f = &self.flags;
        let mut out = Vec::new();
        each(&mut out, "pid", &f.pids);
        each(&mut out, "uid", &f.uids);
        each(&mut out, "comm", &f.comms);
        each(&mut out, "cgroup", &f.cgroups);
        each(&mut out, "port", &f.ports);
        each(&mut out, "sport", &f.sports);
        each(&mut out, "dport", &f.dports);
        each(&mut out, "addr", &f.nets);
        each(&mut out, "state", &f.states);
        for (on, name) in [
            (f.ipv4, "ipv4"),
            (f.ipv6, "ipv6"),
            (f.tcp, "tcp"),
            (f.udp, "udp"),
        ] {
            if on {
                out.push(name.into());
            }
        }
        if self.expr.is_some() {
            out.push(format!("expression {}", f.expression.join(" ")));
        }
        out
    }

    /// Ports, addresses, family and protocol.
    fn socket(&self, proto: Proto, local: &SocketAddr, remote: &SocketAddr) -> bool {
        let f = &self.flags;
        any(&f.ports, |p| *p == local.port() || *p == remote.port())
            && any(&f.sports, |p| *p == local.port())
            && any(&f.dports, |p| *p == remote.port())
            && any(&f.nets, |net| {
                net.contains(local.ip()) || net.contains(remote.ip())
            })
            && self.family(local.ip())
            && ((!f.tcp && !f.udp)
                || (f.tcp && proto == Proto::Tcp)
                || (f.udp && proto == Proto::Udp))
    }

    fn family(&self, ip: IpAddr) -> bool {
        let f = &self.flags;
        (!f.ipv4 && !f.ipv6) || (f.ipv4 && ip.is_ipv4()) || (f.ipv6 && ip.is_ipv6())
    }
}

/// True when `values` is empty (no such filter), else whether one holds.
fn any<T>(values: &[T], holds: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(holds)
}

/// What the filters look at in one record.
struct Subject<'a> {
    owner: &'a Owner,
    proto: Proto,
    local: SocketAddr,
    /// The peer; the unspecified address and port 0 for a socket without
    /// one (bind, listen, release), as `ss` shows it.
    remote: SocketAddr,
    /// The states the record touches.
    states: StateSet,
}

impl<'a> Subject<'a> {
    /// `None` for a loss record, and for queue samples: each belongs to a
    /// listener, which the analyses take only if it passed.
    fn of(record: &'a Record) -> Option<Subject<'a>> {
        let (owner, proto, local, remote, states) = match record {
            Record::Loss(..) | Record::Queues(..) => return None,
            Record::Existing(k, _) => (
                &k.owner,
                Proto::Tcp,
                k.local,
                k.remote,
                StateSet::of(k.state),
            ),
            Record::Close(c) => {
                let end = if c.time_wait {
                    TcpState::TimeWait
                } else {
                    TcpState::Close
                };
                let states = c
                    .spent
                    .iter()
                    .fold(StateSet::of(end), |set, (state, _)| set.with(*state));
                (&c.owner, c.proto, c.local, c.remote, states)
            }
            Record::Event(e) => {
                let (remote, states) = match e.detail {
                    Detail::State {
                        remote, old, new, ..
                    } => (remote, StateSet::of(old).with(new)),
                    Detail::Listen { errno, .. } if errno.0 == 0 => {
                        (unconnected(e.local()), StateSet::of(TcpState::Listen))
                    }
                    Detail::Bind { .. } | Detail::Listen { .. } | Detail::Release { .. } => {
                        (unconnected(e.local()), StateSet::of(TcpState::Close))
                    }
                };
                (&e.owner, e.proto, *e.local(), remote, states)
            }
        };
        Some(Subject {
            owner,
            proto,
            local,
            remote,
            states,
        })
    }

    fn end(&self, end: End) -> &SocketAddr {
        match end {
            End::Local => &self.local,
            End::Remote => &self.remote,
        }
    }
}

/// The peer of a socket that has none, in the family of `local`.
fn unconnected(local: &SocketAddr) -> SocketAddr {
    let ip: IpAddr = if local.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests;
