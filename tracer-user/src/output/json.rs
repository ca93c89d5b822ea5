//! JSON lines: one object per record, `type` first, owner fields `null`
//! when the owner is unknown.
use std::net::{IpAddr, SocketAddr};

use serde::{Serialize, Serializer, ser::SerializeMap};

use super::Render;
use crate::{
    clock::{Clock, Style, TimeFormatter},
    event::{Detail, Errno, Event, Owner, Proto, SockId, TcpState, TwEnd},
    track::{Close, Known, Opener, Record, Side},
};

pub struct Json {
    time: TimeFormatter,
    scratch: String,
}

impl Json {
    pub fn new(clock: Clock) -> Json {
        Json {
            time: TimeFormatter::new(clock, Style::Rfc3339Utc),
            scratch: String::new(),
        }
    }
}

/// Fields every line has.
#[derive(Serialize)]
struct Common<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    #[serde(flatten)]
    owner: OwnerFields<'a>,
    proto: Proto,
    family: &'static str,
    netns: u32,
    sock: Option<SockId>,
}

struct OwnerFields<'a>(&'a Owner);

impl Serialize for OwnerFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.0;
        let known = o.is_known();
        let cgroup = o.cgroup.as_deref().filter(|_| known);
        let mut map = s.serialize_map(Some(8))?;
        map.serialize_entry("pid", &known.then_some(o.pid))?;
        map.serialize_entry("tid", &known.then_some(o.tid))?;
        map.serialize_entry("uid", &known.then_some(o.uid))?;
        map.serialize_entry("comm", &known.then(|| o.comm.as_str()))?;
        map.serialize_entry("cgroup_id", &known.then_some(o.cgroup_id))?;
        map.serialize_entry("cgroup", &cgroup.map(|c| &*c.path))?;
        map.serialize_entry("container", &cgroup.and_then(|c| c.container.as_deref()))?;
        map.serialize_entry("owner_source", &o.source)?;
        map.end()
    }
}

#[derive(Serialize)]
struct Line<'a, D: Serialize> {
    #[serde(flatten)]
    common: Common<'a>,
    #[serde(flatten)]
    detail: D,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventDetail {
    State {
        saddr: IpAddr,
        sport: u16,
        daddr: IpAddr,
        dport: u16,
        old_state: TcpState,
        new_state: TcpState,
        #[serde(skip_serializing_if = "Option::is_none")]
        timewait_end: Option<TwEnd>,
    },
    Bind {
        addr: IpAddr,
        port: u16,
        requested_port: u16,
        errno: i32,
        error: Option<String>,
    },
    Listen {
        addr: IpAddr,
        port: u16,
        backlog: i32,
        errno: i32,
        error: Option<String>,
    },
}

#[derive(Serialize)]
struct CloseDetail<'a> {
    saddr: IpAddr,
    sport: u16,
    daddr: IpAddr,
    dport: u16,
    opened: Opener,
    closed_first: Option<Side>,
    reset_by: Option<Side>,
    failure: Option<FailureFields>,
    time_wait: bool,
    duration_ms: f64,
    state_ms: StateMs<'a>,
    bytes_sent: u64,
    bytes_received: u64,
    predates_start: bool,
}

#[derive(Serialize)]
struct FailureFields {
    reason: crate::track::Reason,
    errno: i32,
    error: Option<String>,
}

struct StateMs<'a>(&'a [(TcpState, u64)]);

impl Serialize for StateMs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (state, ns) in self.0 {
            map.serialize_entry(state.name(), &ms(*ns))?;
        }
        map.end()
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

fn family(addr: &SocketAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

fn errno_fields(errno: Errno) -> (i32, Option<String>) {
    (errno.0, errno.name())
}

impl Json {
    fn common<'a>(&'a self, kind: &'static str, e: &'a Event) -> Common<'a> {
        Common {
            kind,
            time: &self.scratch,
            owner: OwnerFields(&e.owner),
            proto: e.proto,
            family: e.family(),
            netns: e.netns,
            sock: e.sock,
        }
    }

    fn event(&mut self, event: &Event, out: &mut String) {
        let detail = match &event.detail {
            Detail::State {
                local,
                remote,
                old,
                new,
                info,
            } => EventDetail::State {
                saddr: local.ip(),
                sport: local.port(),
                daddr: remote.ip(),
                dport: remote.port(),
                old_state: *old,
                new_state: *new,
                timewait_end: info.tw_end,
            },
            Detail::Bind {
                addr,
                requested_port,
                errno,
            } => {
                let (errno, error) = errno_fields(*errno);
                EventDetail::Bind {
                    addr: addr.ip(),
                    port: addr.port(),
                    requested_port: *requested_port,
                    errno,
                    error,
                }
            }
            Detail::Listen {
                addr,
                backlog,
                errno,
            } => {
                let (errno, error) = errno_fields(*errno);
                EventDetail::Listen {
                    addr: addr.ip(),
                    port: addr.port(),
                    backlog: *backlog,
                    errno,
                    error,
                }
            }
        };
        let line = Line {
            common: self.common(event.type_name(), event),
            detail,
        };
        push_json(&line, out);
    }

    fn existing(&mut self, k: &Known, out: &mut String) {
        #[derive(Serialize)]
        struct SocketDetail {
            saddr: IpAddr,
            sport: u16,
            daddr: IpAddr,
            dport: u16,
            state: TcpState,
        }
        let line = Line {
            common: Common {
                kind: "socket",
                time: &self.scratch,
                owner: OwnerFields(&k.owner),
                proto: Proto::Tcp,
                family: family(&k.local),
                netns: 0,
                sock: Some(k.sock),
            },
            detail: SocketDetail {
                saddr: k.local.ip(),
                sport: k.local.port(),
                daddr: k.remote.ip(),
                dport: k.remote.port(),
                state: k.state,
            },
        };
        push_json(&line, out);
    }

    fn close(&mut self, c: &Close, out: &mut String) {
        let line = Line {
            common: Common {
                kind: "close",
                time: &self.scratch,
                owner: OwnerFields(&c.owner),
                proto: c.proto,
                family: family(&c.local),
                netns: c.netns,
                sock: Some(c.sock),
            },
            detail: CloseDetail {
                saddr: c.local.ip(),
                sport: c.local.port(),
                daddr: c.remote.ip(),
                dport: c.remote.port(),
                opened: c.opener,
                closed_first: c.closed_first,
                reset_by: c.reset_by,
                failure: c.failure.map(|f| {
                    let (errno, error) = errno_fields(f.errno);
                    FailureFields {
                        reason: f.reason,
                        errno,
                        error,
                    }
                }),
                time_wait: c.time_wait,
                duration_ms: ms(c.duration_ns),
                state_ms: StateMs(&c.spent),
                bytes_sent: c.bytes_sent,
                bytes_received: c.bytes_received,
                predates_start: c.predates_us,
            },
        };
        push_json(&line, out);
    }
}

fn push_json(line: &impl Serialize, out: &mut String) {
    // Serializing plain structs to a String cannot fail.
    let json = serde_json::to_string(line).expect("serializing a record");
    out.push_str(&json);
    out.push('\n');
}

impl Render for Json {
    fn record(&mut self, record: &Record, out: &mut String) {
        self.scratch.clear();
        let mono_ns = match record {
            Record::Existing(_, at) | Record::Loss(_, at) => *at,
            Record::Event(e) => e.mono_ns,
            Record::Close(c) => c.mono_ns,
        };
        self.time.write(mono_ns, &mut self.scratch);
        match record {
            Record::Existing(known, _) => self.existing(known, out),
            Record::Loss(counters, _) => {
                #[derive(Serialize)]
                struct Loss<'a> {
                    #[serde(rename = "type")]
                    kind: &'static str,
                    time: &'a str,
                    ring_drops: u64,
                    recursion_misses: u64,
                }
                push_json(
                    &Loss {
                        kind: "loss",
                        time: &self.scratch,
                        ring_drops: counters.ring_drops,
                        recursion_misses: counters.recursion_misses,
                    },
                    out,
                );
            }
            Record::Event(e) => self.event(e, out),
            Record::Close(c) => self.close(c, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Errno, StateInfo},
        track::{Failure, Reason},
    };

    fn event(detail: Detail) -> Event {
        Event::sample(5_000_000_007, 7, "nc", Proto::Udp, detail)
    }

    fn render(r: &Record) -> serde_json::Value {
        let clock = Clock::with_offset(1_795_618_501 * 1_000_000_000 - 5_000_000_000);
        let mut out = String::new();
        Json::new(clock).record(r, &mut out);
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1);
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn bind_line() {
        let v = render(&Record::Event(event(Detail::Bind {
            addr: "0.0.0.0:5353".parse().unwrap(),
            requested_port: 5353,
            errno: Errno(98),
        })));
        assert_eq!(
            v,
            serde_json::json!({
                "type": "bind", "time": "2026-11-25T14:55:01.000000007Z",
                "pid": 7, "tid": 7, "uid": 0, "comm": "nc", "cgroup_id": 1,
                "cgroup": null, "container": null,
                "owner_source": "syscall", "proto": "udp", "family": "ipv4",
                "netns": 4026531840u32, "sock": "abc",
                "addr": "0.0.0.0", "port": 5353, "requested_port": 5353,
                "errno": 98, "error": "EADDRINUSE"
            })
        );
    }

    #[test]
    fn state_line_of_an_unknown_owner() {
        let mut e = event(Detail::State {
            local: "[::1]:80".parse().unwrap(),
            remote: "[::1]:5555".parse().unwrap(),
            old: TcpState::SynSent,
            new: TcpState::Established,
            info: StateInfo::default(),
        });
        e.owner = Owner::UNKNOWN;
        let v = render(&Record::Event(e));
        assert_eq!(
            (&v["type"], &v["family"]),
            (&"state".into(), &"ipv6".into())
        );
        assert_eq!((&v["saddr"], &v["sport"]), (&"::1".into(), &80.into()));
        assert_eq!(
            (&v["old_state"], &v["new_state"]),
            (&"SYN_SENT".into(), &"ESTABLISHED".into())
        );
        for field in ["pid", "tid", "uid", "comm", "cgroup_id"] {
            assert_eq!(v[field], serde_json::Value::Null, "{field}");
        }
        assert_eq!(v["owner_source"], "unknown");
        assert!(v.get("timewait_end").is_none());
    }

    #[test]
    fn listen_line_has_null_error_on_success() {
        let v = render(&Record::Event(event(Detail::Listen {
            addr: "127.0.0.1:8080".parse().unwrap(),
            backlog: 128,
            errno: Errno(0),
        })));
        assert_eq!(
            (&v["type"], &v["port"], &v["backlog"]),
            (&"listen".into(), &8080.into(), &128.into())
        );
        assert_eq!(
            (&v["errno"], &v["error"]),
            (&0.into(), &serde_json::Value::Null)
        );
    }

    #[test]
    fn close_line() {
        let e = event(Detail::Bind {
            addr: "127.0.0.1:1".parse().unwrap(),
            requested_port: 1,
            errno: Errno(0),
        });
        let close = Close {
            reset_by: Some(Side::Remote),
            failure: Some(Failure {
                reason: Reason::Refused,
                errno: Errno(111),
            }),
            duration_ns: 1_500_000,
            spent: vec![(TcpState::SynSent, 1_500_000)],
            ..Close::sample(e.mono_ns, e.owner.clone(), "127.0.0.1:40000", "127.0.0.1:9")
        };
        let v = render(&Record::Close(close));
        assert_eq!(
            (&v["type"], &v["sock"], &v["opened"]),
            (&"close".into(), &"10".into(), &"active".into())
        );
        assert_eq!(
            v["failure"],
            serde_json::json!({"reason": "refused", "errno": 111, "error": "ECONNREFUSED"})
        );
        assert_eq!(
            (&v["reset_by"], &v["closed_first"]),
            (&"remote".into(), &serde_json::Value::Null)
        );
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["state_ms"], serde_json::json!({"SYN_SENT": 1.5}));
    }
}
