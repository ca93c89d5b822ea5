//! The values filters compare against: address prefixes, sets of TCP
//! states, cgroups. Each parses from what users type (as a flag or inside
//! an expression) and says in one line what was expected instead.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use crate::event::{Owner, TcpState};

/// An address prefix (CIDR); a bare address is a /32 or /128. An IPv4
/// prefix also holds the IPv4-mapped IPv6 addresses of dual-stack sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    len: u8,
}

impl Net {
    /// `10.0.0.0/8`, `::1`, `fe80::/10`; as `ss` and `ip` take them, an
    /// IPv4 prefix may leave out trailing zero bytes (`192.168/16`), and
    /// its length may be a netmask (`10.0.0.0/255.0.0.0`) or a number
    /// the way ss reads one (`/0x8`).
    pub fn parse(text: &str) -> Result<Net, String> {
        let bad = || format!("expected an address or prefix, e.g. 10.0.0.0/8 or ::1, not `{text}`");
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr = match (addr.parse::<IpAddr>(), len) {
            (Ok(addr), _) => addr,
            (Err(_), Some(_)) => short_v4(addr).ok_or_else(bad)?,
            (Err(_), None) => return Err(bad()),
        };
        let max: u64 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => match (number(len), len.parse::<IpAddr>()) {
                (Some(n), _) => n,
                (None, Ok(mask)) if mask.is_ipv4() == addr.is_ipv4() => mask_len(mask)
                    .ok_or_else(|| format!("netmask {mask} is not contiguous ones, then zeros"))?,
                _ => return Err(bad()),
            },
        };
        if len > max {
            return Err(format!("prefix length /{len} is longer than {max} bits"));
        }
        Ok(Net {
            addr,
            len: len as u8,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                (u32::from(net) ^ u32::from(ip)) & mask == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                (u128::from(net) ^ u128::from(ip)) & mask == 0
            }
            _ => false,
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The prefix length of a netmask (`255.255.0.0` -> 16), if its ones
/// come first.
fn mask_len(mask: IpAddr) -> Option<u64> {
    let (bits, width) = match mask {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then(|| u64::from(ones.min(width)))
}

/// A number the way ss reads one (C's `strtoul`, base 0): `0x16` is
/// hexadecimal, `026` octal, `22` decimal.
pub fn number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if text.len() > 1 && text.starts_with('0') => (&text[1..], 8),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `192.168` -> 192.168.0.0: one to three dotted bytes.
fn short_v4(text: &str) -> Option<IpAddr> {
    let mut bytes = [0u8; 4];
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    for (byte, part) in bytes.iter_mut().zip(&parts) {
        *byte = part.parse().ok()?;
    }
    Some(Ipv4Addr::from(bytes).into())
}

/// A set of TCP states. A record matches it when it touches one of them:
/// a transition leaves or enters it, a close record went through it, a
/// snapshot socket is in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSet(u32);

/// What `ss` and our output call states, lower case, without `-` and `_`.
const STATE_NAMES: [(&str, TcpState); 17] = [
    ("established", TcpState::Established),
    ("synsent", TcpState::SynSent),
    ("synrecv", TcpState::SynRecv),
    ("synrcv", TcpState::SynRecv),
    ("finwait1", TcpState::FinWait1),
    ("finwait2", TcpState::FinWait2),
    ("timewait", TcpState::TimeWait),
    ("close", TcpState::Close),
    ("closed", TcpState::Close),
    ("unconnected", TcpState::Close),
    ("closewait", TcpState::CloseWait),
    ("lastack", TcpState::LastAck),
    ("listen", TcpState::Listen),
    ("listening", TcpState::Listen),
    ("closing", TcpState::Closing),
    ("newsynrecv", TcpState::NewSynRecv),
    ("boundinactive", TcpState::BoundInactive),
];

impl StateSet {
    /// Every state the kernel names (1..=13).
    pub const ALL: StateSet = StateSet(((1 << 14) - 1) & !1);

    pub fn of(state: TcpState) -> StateSet {
        match state.raw() {
            n @ 1..=13 => StateSet(1 << n),
            _ => StateSet(0),
        }
    }

    pub fn with(self, state: TcpState) -> StateSet {
        self.union(StateSet::of(state))
    }

    pub fn union(self, other: StateSet) -> StateSet {
        StateSet(self.0 | other.0)
    }

    pub fn intersects(self, other: StateSet) -> bool {
        self.0 & other.0 != 0
    }

    fn without(self, states: &[TcpState]) -> StateSet {
        let drop = states.iter().fold(StateSet(0), |set, s| set.with(*s));
        StateSet(self.0 & !drop.0)
    }

    /// A state as `ss` or our output names it, in any case, with `-` or
    /// `_` (`time-wait`, `TIME_WAIT`, `fin-wait-1`, `listening`), or one
    /// of `ss`'s groups: `all`, `connected` (all but listening and
    /// closed), `synchronized` (connected but syn-sent), `bucket`
    /// (time-wait and syn-recv, the kernel's mini-sockets) and `big` (all
    /// but bucket).
    pub fn parse(text: &str) -> Result<StateSet, String> {
        let key: String = text
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        let unconnected = [TcpState::Listen, TcpState::Close, TcpState::BoundInactive];
        let bucket = StateSet::of(TcpState::SynRecv)
            .with(TcpState::NewSynRecv)
            .with(TcpState::TimeWait);
        let set = match key.as_str() {
            "all" => StateSet::ALL,
            "connected" => StateSet::ALL.without(&unconnected),
            "synchronized" => StateSet::ALL
                .without(&unconnected)
                .without(&[TcpState::SynSent]),
            "bucket" => bucket,
            "big" => StateSet(StateSet::ALL.0 & !bucket.0),
            _ => STATE_NAMES
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, state)| StateSet::of(*state))
                .ok_or_else(|| {
                    format!(
                        "expected a TCP state (established, syn-sent, syn-recv, fin-wait-1, \
                         fin-wait-2, time-wait, closed, close-wait, last-ack, listening, \
                         closing) or all, connected, synchronized, bucket, big; not `{text}`"
                    )
                })?,
        };
        Ok(set)
    }
}

impl fmt::Display for StateSet {
    /// `TIME_WAIT,CLOSE`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (1..=13)
            .map(TcpState::from_raw)
            .filter(|s| self.intersects(StateSet::of(*s)))
            .map(|s| s.name())
            .collect();
        f.write_str(&names.join(","))
    }
}

/// An owner's cgroup: a path below the cgroup v2 root (it or anything
/// under it), or the start of a container id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMatch {
    Path(String),
    Container(String),
}

impl CgroupMatch {
    /// `/system.slice/nginx.service`, or a container id (or its first
    /// characters, as `docker ps` shows 12 of them).
    pub fn parse(text: &str) -> Result<CgroupMatch, String> {
        if text.starts_with('/') {
            let path = text.trim_end_matches('/');
            return Ok(CgroupMatch::Path(
                if path.is_empty() { "/" } else { path }.into(),
            ));
        }
        if !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(CgroupMatch::Container(text.to_ascii_lowercase()));
        }
        Err(format!(
            "expected a cgroup path (starting with /) or a container id (hex), not `{text}`"
        ))
    }

    pub fn matches(&self, owner: &Owner) -> bool {
        let Some(cgroup) = owner.cgroup.as_deref() else {
            return false;
        };
        match self {
            CgroupMatch::Path(prefix) => {
                prefix == "/"
                    || cgroup
                        .path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            CgroupMatch::Container(id) => cgroup
                .container
                .as_deref()
                .is_some_and(|c| c.starts_with(id.as_str())),
        }
    }
}

impl fmt::Display for CgroupMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupMatch::Path(path) => f.write_str(path),
            CgroupMatch::Container(id) => f.write_str(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Cgroup;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes() {
        let net = Net::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "v4-mapped");
        assert!(!net.contains(ip("::1")));
        let host = Net::parse("127.0.0.1").unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6 = Net::parse("fe80::/10").unwrap();
        assert!(v6.contains(ip("fe80::1")) && !v6.contains(ip("fec0::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert_eq!(Net::parse("::1").unwrap().to_string(), "::1/128");
        let all = Net::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(Net::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        // ss's short IPv4 prefixes; host bits beyond the prefix are ignored.
        assert_eq!(
            Net::parse("193.233.7/24").unwrap().to_string(),
            "193.233.7.0/24"
        );
        assert!(Net::parse("10.1.2.3/8").unwrap().contains(ip("10.9.9.9")));
        // Lengths as ss reads them: a netmask, a number in any base.
        for (text, net) in [
            ("127.0.0.0/255.0.0.0", "127.0.0.0/8"),
            ("10.0.0.0/255.255.255.255", "10.0.0.0/32"),
            ("10.0.0.0/0.0.0.0", "10.0.0.0/0"),
            ("fe80::/ffc0::", "fe80::/10"),
            ("10.0.0.0/0x8", "10.0.0.0/8"),
            ("10.0.0.0/010", "10.0.0.0/8"),
        ] {
            assert_eq!(Net::parse(text).unwrap().to_string(), net, "{text}");
        }
        assert_eq!(
            Net::parse("10.0.0.0/255.0.255.0").unwrap_err(),
            "netmask 255.0.255.0 is not contiguous ones, then zeros"
        );
        assert_eq!(
            [
                number("22"),
                number("026"),
                number("0x16"),
                number("0X16"),
                number("0")
            ],
            [Some(22), Some(22), Some(22), Some(22), Some(0)]
        );
        for not_a_number in ["", "0x", "08", "1e3", "-1", "+1", " 1", "0x1g"] {
            assert_eq!(number(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn bad_prefixes_say_what_was_expected() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.1/",
            "nope",
            "1.2.3.4.5/8",
            "10/x",
            "::1/-1",
            "10.0.0.0/ffff::",
            "::/255.0.0.0",
        ] {
            let err = Net::parse(bad).unwrap_err();
            assert!(
                err.starts_with("expected an address or prefix"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            Net::parse("10.0.0.0/33").unwrap_err(),
            "prefix length /33 is longer than 32 bits"
        );
        assert!(Net::parse("::/129").is_err());
        assert_eq!(
            Net::parse("10.0.0.0/300").unwrap_err(),
            "prefix length /300 is longer than 32 bits"
        );
    }

    #[test]
    fn state_names_as_ss_and_we_write_them() {
        let tw = StateSet::of(TcpState::TimeWait);
        for name in [
            "time-wait",
            "TIME_WAIT",
            "TIME-WAIT",
            "timewait",
            "Time_Wait",
        ] {
            assert_eq!(StateSet::parse(name), Ok(tw), "{name}");
        }
        let pairs = [
            ("fin-wait-1", TcpState::FinWait1),
            ("FIN_WAIT1", TcpState::FinWait1),
            ("syn-rcv", TcpState::SynRecv),
            ("closed", TcpState::Close),
            ("unconnected", TcpState::Close),
            ("listening", TcpState::Listen),
            ("LISTEN", TcpState::Listen),
            ("new_syn_recv", TcpState::NewSynRecv),
        ];
        for (name, state) in pairs {
            assert_eq!(StateSet::parse(name), Ok(StateSet::of(state)), "{name}");
        }
        // Every name our output uses reads back.
        for n in 1..=13 {
            let state = TcpState::from_raw(n);
            assert_eq!(StateSet::parse(state.name()), Ok(StateSet::of(state)));
        }
        let err = StateSet::parse("estab").unwrap_err();
        assert!(err.starts_with("expected a TCP state") && err.ends_with("not `estab`"));
    }

    #[test]
    fn ss_groups() {
        let has = |group: &str, state| {
            StateSet::parse(group)
                .unwrap()
                .intersects(StateSet::of(state))
        };
        use TcpState::*;
        for state in [Established, SynSent, TimeWait, Listen, Close, BoundInactive] {
            assert!(has("all", state));
        }
        assert!(has("connected", Established) && has("connected", SynSent));
        assert!(!has("connected", Listen) && !has("connected", Close));
        assert!(has("synchronized", FinWait1) && !has("synchronized", SynSent));
        assert!(has("bucket", TimeWait) && has("bucket", SynRecv) && !has("bucket", Established));
        assert!(has("big", Established) && !has("big", TimeWait));
        assert_eq!(
            StateSet::parse("bucket").unwrap().to_string(),
            "SYN_RECV,TIME_WAIT,NEW_SYN_RECV"
        );
        assert!(!StateSet::of(TcpState::Unknown(40)).intersects(StateSet::ALL));
    }

    fn owner_in(path: &str, container: Option<&str>) -> Owner {
        Owner {
            cgroup: Some(Arc::new(Cgroup {
                path: path.into(),
                container: container.map(Into::into),
            })),
            ..Owner::UNKNOWN
        }
    }

    #[test]
    fn cgroups_by_path_prefix_or_container_id() {
        let id = "4c0f9e2b8f1d3a5b6c7d8e9f00112233445566778899aabbccddeeff00112233";
        let docker = owner_in(&format!("/system.slice/docker-{id}.scope"), Some(id));
        let sshd = owner_in("/system.slice/ssh.service", None);
        let slice = CgroupMatch::parse("/system.slice/").unwrap();
        assert_eq!(slice, CgroupMatch::Path("/system.slice".into()));
        assert!(slice.matches(&docker) && slice.matches(&sshd));
        let ssh = CgroupMatch::parse("/system.slice/ssh.service").unwrap();
        assert!(ssh.matches(&sshd) && !ssh.matches(&docker));
        // A prefix of a path component is not the cgroup.
        assert!(!CgroupMatch::parse("/system").unwrap().matches(&sshd));
        assert!(CgroupMatch::parse("/").unwrap().matches(&sshd));
        let short = CgroupMatch::parse("4C0F9E2B8F1D").unwrap();
        assert!(short.matches(&docker) && !short.matches(&sshd));
        assert!(!CgroupMatch::parse("4c0f0").unwrap().matches(&docker));
        assert!(!slice.matches(&Owner::UNKNOWN), "no cgroup known");
        for bad in ["", "nginx", "xyz", &"a".repeat(65)] {
            let err = CgroupMatch::parse(bad).unwrap_err();
            assert!(err.starts_with("expected a cgroup path"), "{bad}: {err}");
        }
    }
}
