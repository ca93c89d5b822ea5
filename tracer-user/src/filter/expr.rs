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
use std::{collections::BTreeSet, fmt, net::SocketAddr};

use super::{
    Subject,
    terms::{CgroupMatch, Net, StateSet, number},
};

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

/// Where an expression went wrong: the token (1-based) and what was
/// expected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// `None`: at the end of the expression.
    pub token: Option<(usize, String)>,
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some((n, text)) => write!(f, "bad filter at token {n} ('{text}'): {}", self.expected),
            None => write!(f, "bad filter at its end: {}", self.expected),
        }
    }
}

/// ss's operators, longest first where one begins another: each is a
/// token of its own, wherever it stands.
const OPERATORS: [&str; 12] = [
    "&&", "||", "!=", "==", "<=", ">=", "&", "|", "!", "=", "<", ">",
];

/// Splits on white space, and around parentheses and operators (none of
/// which appear in addresses, ports or paths), taking the longest
/// operator at each place: `dport=:443&&!sport=:80` is `dport`, `=`,
/// `:443`, `&&`, `!`, `sport`, `=`, `:80`, and `!!x` is `!`, `!`, `x`.
/// A run ss refuses (`=>`, `&&&`) lexes into operators the parser then
/// refuses, naming the one out of place.
fn lex(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut rest = word;
        while !rest.is_empty() {
            let len = if rest.starts_with(['(', ')']) {
                1
            } else if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
                op.len()
            } else {
                rest.find(|c: char| "()&|!=<>".contains(c))
                    .unwrap_or(rest.len())
            };
            let (token, after) = rest.split_at(len);
            tokens.push(token);
            rest = after;
        }
    }
    tokens
}

/// Parses `text`; `None` when it holds no token. `services` names ports
/// (`https` -> 443).
pub fn parse(
    text: &str,
    services: &dyn Fn(&str) -> Option<u16>,
) -> Result<Option<Expr>, ParseError> {
    let tokens = lex(text);
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        tokens,
        next: 0,
        services,
    };
    let expr = p.or()?;
    // `or` stops only at the end or at a `)`.
    if p.next < p.tokens.len() {
        return Err(p.error_at(p.next, "a ) without its ("));
    }
    Ok(Some(expr))
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    /// Index of the next token.
    next: usize,
    services: &'a dyn Fn(&str) -> Option<u16>,
}

const TERM: &str =
    "expected a filter term: state, exclude, sport, dport, src, dst, cgroup, not or (";

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.next).copied()
    }

    /// Takes the next token if it is one of `words`.
    fn eat(&mut self, words: &[&str]) -> bool {
        let found = self.peek().is_some_and(|t| words.contains(&t));
        self.next += usize::from(found);
        found
    }

    /// Takes the next token, or fails saying what was `expected`.
    fn take(&mut self, expected: &str) -> Result<(usize, &'a str), ParseError> {
        let at = self.next;
        let token = self.peek().ok_or_else(|| ParseError {
            token: None,
            expected: expected.into(),
        })?;
        self.next += 1;
        Ok((at, token))
    }

    fn error_at(&self, index: usize, expected: impl Into<String>) -> ParseError {
        ParseError {
            token: Some((index + 1, self.tokens[index].into())),
            expected: expected.into(),
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.and()?;
        while self.eat(&["or", "|", "||"]) {
            expr = Expr::Or(Box::new(expr), Box::new(self.and()?));
        }
        Ok(expr)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.unary()?;
        loop {
            let explicit = self.eat(&["and", "&", "&&"]);
            if !explicit && matches!(self.peek(), None | Some(")" | "or" | "|" | "||")) {
                return Ok(expr);
            }
            expr = Expr::And(Box::new(expr), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat(&["not", "!"]) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (at, token) = self.take(TERM)?;
        match token {
            "(" => {
                let expr = self.or()?;
                // `or` stops only at the end or at a `)`.
                self.take("expected )")?;
                Ok(expr)
            }
            "state" | "exclude" => self.states(token),
            "sport" | "dport" => self.port(end_of(token)),
            "src" | "dst" | "cgroup" => {
                let negated = self.negated();
                let expr = if token == "cgroup" {
                    let (at, text) = self.take("expected a cgroup path or container id")?;
                    Expr::Cgroup(CgroupMatch::parse(text).map_err(|e| self.error_at(at, e))?)
                } else {
                    let (at, text) = self.take("expected an address")?;
                    let host = self.host(text).map_err(|e| self.error_at(at, e))?;
                    Expr::Host {
                        end: end_of(token),
                        host,
                    }
                };
                Ok(if negated { Expr::Not(Box::new(expr)) } else { expr })
            }
            "dev" | "fwmark" | "autobound" => Err(self.error_at(
                at,
                format!("{token} is an ss filter socktrace cannot apply (the kernel event has no such field)"),
            )),
            _ => Err(self.error_at(at, TERM)),
        }
    }

    /// `state A` / `exclude A`, and those juxtaposed after it: `state`
    /// adds to the set, `exclude` takes away.
    fn states(&mut self, first: &str) -> Result<Expr, ParseError> {
        let set = self.state_set()?;
        let mut expr = match first {
            "state" => set,
            _ => Expr::Not(Box::new(set)),
        };
        while let Some(keyword @ ("state" | "exclude")) = self.peek() {
            self.next += 1;
            let set = self.state_set()?;
            expr = match keyword {
                "state" => Expr::Or(Box::new(expr), Box::new(set)),
                _ => Expr::And(Box::new(expr), Box::new(Expr::Not(Box::new(set)))),
            };
        }
        Ok(expr)
    }

    fn state_set(&mut self) -> Result<Expr, ParseError> {
        let (at, name) = self.take("expected a TCP state")?;
        let set = StateSet::parse(name).map_err(|e| self.error_at(at, e))?;
        Ok(Expr::State(set))
    }

    /// An optional `=` or `!=` (src, dst, cgroup); true for `!=`.
    fn negated(&mut self) -> bool {
        let negated = self.eat(&["!=", "ne", "neq"]);
        if !negated {
            self.eat(&["=", "==", "eq"]);
        }
        negated
    }

    /// `sport`/`dport` `[OP] SPEC`.
    fn port(&mut self, end: End) -> Result<Expr, ParseError> {
        let op = match self.peek().and_then(Op::from_token) {
            Some(op) => {
                self.next += 1;
                op
            }
            None => Op::Eq,
        };
        let (at, text) = self.take("expected a port")?;
        let host = self.port_spec(text).map_err(|e| self.error_at(at, e))?;
        if op != Op::Eq && op != Op::Ne && host.port.is_none() {
            return Err(self.error_at(at, "expected a port to compare with"));
        }
        Ok(Expr::Port { end, op, host })
    }

    /// `:PORT`, `PORT` (as ss takes them), or `[FAMILY:]ADDR:PORT`.
    fn port_spec(&self, text: &str) -> Result<Host, String> {
        let (family, rest) = family(text);
        if let Some(port) = rest.strip_prefix(':') {
            return Ok(Host {
                family,
                port: self.port_number(port)?,
                ..Host::default()
            });
        }
        if !rest.contains(':') && !rest.starts_with('[') {
            return Ok(Host {
                family,
                port: self.port_number(rest)?,
                ..Host::default()
            });
        }
        self.host(text)
    }

    /// `[FAMILY:]ADDR[/LEN][:PORT]`, `[ADDR[/LEN]][:PORT]`, `*`.
    fn host(&self, text: &str) -> Result<Host, String> {
        let (family, rest) = family(text);
        let (addr, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or("expected ] after an address in brackets")?;
            match after {
                "" => (addr, None),
                _ => (
                    addr,
                    Some(after.strip_prefix(':').ok_or("expected :PORT after ]")?),
                ),
            }
        } else if rest == "*" || Net::parse(rest).is_ok() {
            (rest, None)
        } else {
            match rest.rsplit_once(':') {
                Some((addr, port)) => (addr, Some(port)),
                None => (rest, None),
            }
        };
        let net = match addr {
            "" | "*" => None,
            addr => Some(Net::parse(addr)?),
        };
        match (family, net) {
            (Some(Family::Inet), Some(net)) if !net.is_ipv4() => {
                return Err("expected an IPv4 address after inet:".into());
            }
            (Some(Family::Inet6), Some(net)) if net.is_ipv4() => {
                return Err("expected an IPv6 address after inet6:".into());
            }
            _ => {}
        }
        Ok(Host {
            family,
            net,
            port: match port {
                Some(port) => self.port_number(port)?,
                None => None,
            },
        })
    }

    /// A number (as ss reads one: `0x1bb`, `0673` octal), a service name
    /// or `*` (any: `None`).
    fn port_number(&self, text: &str) -> Result<Option<u16>, String> {
        if text == "*" {
            return Ok(None);
        }
        number(text)
            .and_then(|n| u16::try_from(n).ok())
            .or_else(|| (self.services)(text))
            .map(Some)
            .ok_or_else(|| "expected a port".into())
    }
}

fn end_of(keyword: &str) -> End {
    match keyword {
        "src" | "sport" => End::Local,
        _ => End::Remote,
    }
}

/// Splits off `inet:` / `inet6:`.
fn family(text: &str) -> (Option<Family>, &str) {
    if let Some(rest) = text.strip_prefix("inet6:") {
        (Some(Family::Inet6), rest)
    } else if let Some(rest) = text.strip_prefix("inet:") {
        (Some(Family::Inet), rest)
    } else {
        (None, text)
    }
}

/// The port of service `name` (TCP or UDP) in /etc/services.
pub fn etc_services(name: &str) -> Option<u16> {
    let table = std::fs::read_to_string("/etc/services").ok()?;
    service_port(&table, name)
}

/// `name` (or an alias) in a services(5) table.
fn service_port(table: &str, name: &str) -> Option<u16> {
    table.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let service = fields.next()?;
        let (port, proto) = fields.next()?.split_once('/')?;
        let named = service == name || fields.any(|alias| alias == name);
        (named && matches!(proto, "tcp" | "udp"))
            .then(|| port.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests;
