//! `ss(8)`'s filter expressions, by hand: a lexer, a recursive-descent
//! parser and an evaluator over one record.
//!
//! ```text
//! expr    := and ( ("or" | "|" | "||") and )*
//! and     := unary ( [ "and" | "&" | "&&" ] unary )*      juxtaposed: and
//! unary   := ( "not" | "!" ) unary | primary
//! primary := "(" expr ")"
//!          | ( ("state" | "exclude") STATE )+             one set, as ss builds it
//!          | ("sport" | "dport") [OP] [FAMILY:][ADDR]:PORT | ("sport" | "dport") [OP] PORT
//!          | ("src" | "dst") [ "=" | "!=" ] [FAMILY:]ADDR[/LEN][:PORT]
//!          | "cgroup" [ "=" | "!=" ] PATH_OR_CONTAINER_ID
//! OP      := = == eq | != ne neq | < lt | > gt | <= le leq | >= ge geq
//! ```
//!
//! As ss documents: `not` binds tighter than `and`, `and` than `or`.
//! ADDR is an IPv4 or IPv6 address (an IPv6 one in brackets when a port
//! follows), `*` or nothing for any; PORT a number, a service name from
//! /etc/services, or `*`; FAMILY `inet` or `inet6`. A run of juxtaposed
//! `state`/`exclude` terms is one set, as ss builds its state filter:
//! `state established state syn-sent` is either state, `exclude listening
//! exclude closed` neither. Parentheses and operators are tokens of
//! their own and need no spaces around them (`(dport=:443&&!sport=:80)`).
use std::{collections::BTreeSet, net::SocketAddr};

use super::{
    Subject,
    terms::{CgroupMatch, Net, StateSet},
};

mod lex;
mod parser;
mod services;

pub use parser::parse;
pub use services::etc_services;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// The record touches one of these states.
    State(StateSet),
    /// `sport`/`dport`: the port of one end compared, the address (if any)
    /// equal.
    Port {
        end: End,
        op: Op,
        host: Host,
    },
    /// `src`/`dst`: one end is in `host`.
    Host {
        end: End,
        host: Host,
    },
    Cgroup(CgroupMatch),
}

/// Which end of the socket a term looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `src`, `sport`.
    Local,
    /// `dst`, `dport`.
    Remote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    fn from_token(token: &str) -> Option<Op> {
        Some(match token {
            "=" | "==" | "eq" => Op::Eq,
            "!=" | "ne" | "neq" => Op::Ne,
            "<" | "lt" => Op::Lt,
            ">" | "gt" => Op::Gt,
            "<=" | "le" | "leq" => Op::Le,
            ">=" | "ge" | "geq" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, port: u16, wanted: u16) -> bool {
        match self {
            Op::Eq => port == wanted,
            Op::Ne => port != wanted,
            Op::Lt => port < wanted,
            Op::Gt => port > wanted,
            Op::Le => port <= wanted,
            Op::Ge => port >= wanted,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

/// `[FAMILY:]ADDR[/LEN][:PORT]`; what is left out matches anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub family: Option<Family>,
    pub net: Option<Net>,
    pub port: Option<u16>,
}

impl Host {
    fn holds_address(&self, at: &SocketAddr) -> bool {
        let family = match self.family {
            None => true,
            Some(Family::Inet) => at.is_ipv4(),
            Some(Family::Inet6) => at.is_ipv6(),
        };
        family && self.net.is_none_or(|net| net.contains(at.ip()))
    }

    fn holds(&self, at: &SocketAddr) -> bool {
        self.holds_address(at) && self.port.is_none_or(|p| p == at.port())
    }
}

impl Expr {
    pub(super) fn eval(&self, s: &Subject<'_>) -> bool {
        match self {
            Expr::And(a, b) => a.eval(s) && b.eval(s),
            Expr::Or(a, b) => a.eval(s) || b.eval(s),
            Expr::Not(e) => !e.eval(s),
            Expr::State(set) => s.states.intersects(*set),
            Expr::Host { end, host } => host.holds(s.end(*end)),
            Expr::Port { end, op, host } => {
                let at = s.end(*end);
                match op {
                    Op::Eq => host.holds(at),
                    Op::Ne => !host.holds(at),
                    _ => {
                        host.holds_address(at) && host.port.is_some_and(|p| op.holds(at.port(), p))
                    }
                }
            }
            Expr::Cgroup(c) => s.owner.is_known() && c.matches(s.owner),
        }
    }

    /// Ports any matching record must have, for the kernel to check first.
    pub(super) fn port_needs(&self) -> PortNeeds {
        match self {
            Expr::Port {
                end,
                op: Op::Eq,
                host,
            }
            | Expr::Host { end, host } => match host.port {
                Some(port) => PortNeeds::one(*end, port),
                None => PortNeeds::default(),
            },
            Expr::And(a, b) => a.port_needs().and(b.port_needs()),
            Expr::Or(a, b) => a.port_needs().or(b.port_needs()),
            _ => PortNeeds::default(),
        }
    }
}

/// Necessary conditions on ports: the local port is in `sport`, the
/// remote one in `dport`, one of them in `either` (each when set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNeeds {
    pub sport: Option<BTreeSet<u16>>,
    pub dport: Option<BTreeSet<u16>>,
    pub either: Option<BTreeSet<u16>>,
}

impl PortNeeds {
    fn one(end: End, port: u16) -> PortNeeds {
        let set = Some(BTreeSet::from([port]));
        match end {
            End::Local => PortNeeds {
                sport: set,
                ..PortNeeds::default()
            },
            End::Remote => PortNeeds {
                dport: set,
                ..PortNeeds::default()
            },
        }
    }

    /// Both hold: each need stays (the smaller set where both have one).
    fn and(self, other: PortNeeds) -> PortNeeds {
        let smaller = |a: Option<BTreeSet<u16>>, b: Option<BTreeSet<u16>>| match (a, b) {
            (Some(a), Some(b)) => Some(if b.len() < a.len() { b } else { a }),
            (a, b) => a.or(b),
        };
        PortNeeds {
            sport: smaller(self.sport, other.sport),
            dport: smaller(self.dport, other.dport),
            either: smaller(self.either, other.either),
        }
    }

    /// One holds: a need both sides have, widened to both sets; failing
    /// that, one port of either end in any set either side needs.
    fn or(self, other: PortNeeds) -> PortNeeds {
        let union = |a: &Option<BTreeSet<u16>>, b: &Option<BTreeSet<u16>>| match (a, b) {
            (Some(a), Some(b)) => Some(a | b),
            _ => None,
        };
        let sport = union(&self.sport, &other.sport);
        let dport = union(&self.dport, &other.dport);
        let either = match (sport.is_none() && dport.is_none(), self.any(), other.any()) {
            (true, Some(a), Some(b)) => Some(a | b),
            _ => None,
        };
        PortNeeds {
            sport,
            dport,
            either,
        }
    }

    fn any(&self) -> Option<&BTreeSet<u16>> {
        self.either
            .as_ref()
            .or(self.sport.as_ref())
            .or(self.dport.as_ref())
    }
}

#[cfg(test)]
mod tests;
