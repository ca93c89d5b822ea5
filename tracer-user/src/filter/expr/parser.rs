//! The recursive-descent parser: tokens into an [`Expr`].
use std::fmt;

use super::{End, Expr, Family, Host, Op, lex::lex};
use crate::filter::terms::{CgroupMatch, Net, StateSet, number};

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
