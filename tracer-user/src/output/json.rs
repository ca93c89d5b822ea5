//! JSON lines: one object per record, `type` first, owner fields `null`
//! when the owner is unknown. Written by hand into the output buffer (the
//! hot path of `--json`); the tests parse every kind of line back.
use std::net::SocketAddr;

use super::{Render, jsonw::Obj};
use crate::{
    analysis::listeners::Note,
    analysis::timewait::Place,
    clock::{Clock, Style, TimeFormatter},
    event::{Detail, Errno, Event, Owner, Proto, QueueSample, SockId, family_name},
    source::KernelCounters,
    summary::{Summary, top},
    track::{Close, Known, Record},
};

pub struct Json {
    time: TimeFormatter,
    scratch: String,
    /// Also a `queues` line of every listener's accept queue each
    /// interval (`record`: what `analyze --report listeners` reads).
    queues: bool,
}

impl Json {
    pub fn new(clock: Clock) -> Json {
        Json {
            time: TimeFormatter::new(clock, Style::Rfc3339Utc),
            scratch: String::new(),
            queues: false,
        }
    }

    /// The stream `record` writes: [`Json::new`]'s, with queue samples.
    pub fn recording(clock: Clock) -> Json {
        Json {
            queues: true,
            ..Json::new(clock)
        }
    }

    fn queues_line(&mut self, samples: &[QueueSample], out: &mut String) {
        Obj::new(out, "queues")
            .name("time", &self.scratch)
            .array("listeners", samples, |o, s| {
                o.hex("sock", s.sock.0)
                    .uint("queue", s.depth.into())
                    .uint("backlog", s.backlog.into())
                    .uint("drops", s.drops.into());
            })
            .end();
    }
}

/// What every line has after `type` and `time`.
pub(super) fn common(
    o: &mut Obj<'_>,
    owner: &Owner,
    proto: Proto,
    addr: &SocketAddr,
    netns: u32,
    sock: Option<SockId>,
) {
    let known = owner.is_known();
    let cgroup = owner.cgroup.as_deref().filter(|_| known);
    o.opt("pid", known.then_some(owner.pid), uint)
        .opt("tid", known.then_some(owner.tid), uint)
        .opt("uid", known.then_some(owner.uid), uint);
    match known {
        true => o.string("comm", &owner.comm.as_str()),
        false => o.null("comm"),
    };
    o.opt("cgroup_id", known.then_some(owner.cgroup_id), uint);
    match cgroup {
        Some(c) => o.string("cgroup", &c.path),
        None => o.null("cgroup"),
    };
    match cgroup.and_then(|c| c.container.as_deref()) {
        Some(id) => o.string("container", id),
        None => o.null("container"),
    };
    o.name("owner_source", owner.source.name());
    match proto {
        Proto::Tcp => o.name("proto", "tcp"),
        Proto::Udp => o.name("proto", "udp"),
        Proto::Other(_) => o.shown("proto", proto),
    };
    o.name("family", family_name(addr));
    self::netns(o, netns);
    match sock {
        Some(sock) => o.hex("sock", sock.0),
        None => o.null("sock"),
    };
}

/// A network namespace inode; 0 is what we hold when it is not known
/// (the kernel's namespace inodes are never 0): `null`.
pub(super) fn netns(o: &mut Obj<'_>, netns: u32) {
    o.opt("netns", (netns != 0).then_some(netns), uint);
}

pub(super) fn uint<T: Into<u64>>(o: &mut Obj<'_>, key: &str, v: T) {
    o.uint(key, v.into());
}

pub(super) fn endpoints(o: &mut Obj<'_>, local: &SocketAddr, remote: &SocketAddr) {
    o.ip("saddr", local.ip())
        .uint("sport", local.port().into())
        .ip("daddr", remote.ip())
        .uint("dport", remote.port().into());
}

pub(super) fn errno(o: &mut Obj<'_>, errno: Errno) {
    o.int("errno", errno.0.into());
    match errno.name() {
        Some(name) => o.name("error", &name),
        None => o.null("error"),
    };
}

impl Json {
    fn event(&mut self, e: &Event, out: &mut String) {
        let mut o = Obj::new(out, e.type_name());
        o.name("time", &self.scratch);
        common(&mut o, &e.owner, e.proto, e.local(), e.netns, e.sock);
        match &e.detail {
            Detail::State {
                local,
                remote,
                old,
                new,
                info,
            } => {
                endpoints(&mut o, local, remote);
                o.name("old_state", old.name())
                    .name("new_state", new.name());
                if let Some(how) = info.tw_end {
                    o.name("timewait_end", how.name());
                }
            }
            Detail::Bind {
                addr,
                requested_port,
                errno: e,
            } => {
                o.ip("addr", addr.ip())
                    .uint("port", addr.port().into())
                    .uint("requested_port", (*requested_port).into());
                errno(&mut o, *e);
            }
            Detail::Listen {
                addr,
                backlog,
                errno: e,
            } => {
                o.ip("addr", addr.ip())
                    .uint("port", addr.port().into())
                    .int("backlog", (*backlog).into());
                errno(&mut o, *e);
            }
            Detail::Release { addr } => {
                o.ip("addr", addr.ip()).uint("port", addr.port().into());
            }
        }
        o.end();
    }

    fn existing(&mut self, k: &Known, out: &mut String) {
        let mut o = Obj::new(out, "socket");
        o.name("time", &self.scratch);
        common(
            &mut o,
            &k.owner,
            Proto::Tcp,
            &k.local,
            k.netns,
            Some(k.sock),
        );
        endpoints(&mut o, &k.local, &k.remote);
        o.name("state", k.state.name());
        o.end();
    }

    fn close(&mut self, c: &Close, out: &mut String) {
        let mut o = Obj::new(out, "close");
        o.name("time", &self.scratch);
        common(&mut o, &c.owner, c.proto, &c.local, c.netns, Some(c.sock));
        endpoints(&mut o, &c.local, &c.remote);
        o.name("opened", c.opener.name())
            .opt("closed_first", c.closed_first, |o, k, side| {
                o.name(k, side.name());
            })
            .opt("reset_by", c.reset_by, |o, k, side| {
                o.name(k, side.name());
            })
            .opt("reset_reason", c.reset_reason.as_deref(), |o, k, why| {
                o.string(k, why);
            })
            .opt("failure", c.failure, |o, k, f| {
                o.object(k, |o| {
                    o.name("reason", f.reason.name());
                    errno(o, f.errno);
                });
            })
            .bool("time_wait", c.time_wait)
            .millis("duration_ms", c.duration_ns)
            .object("state_ms", |o| {
                for (state, ns) in &c.spent {
                    o.millis(state.name(), *ns);
                }
            })
            .uint("bytes_sent", c.bytes_sent)
            .uint("bytes_received", c.bytes_received)
            .opt("connect_ms", c.connect_ns, |o, k, ns| {
                o.millis(k, ns);
            })
            .opt("syn_retransmits", c.syn_retransmits, |o, k, n| {
                o.uint(k, n.into());
            })
            .opt("retransmits", c.tcp.map(|t| t.retransmits), |o, k, n| {
                o.uint(k, n.into());
            })
            .opt("srtt_ms", c.tcp.map(|t| t.srtt_us), |o, k, us| {
                o.millis(k, u64::from(us) * 1000);
            })
            .opt("rttvar_ms", c.tcp.map(|t| t.rttvar_us), |o, k, us| {
                o.millis(k, u64::from(us) * 1000);
            })
            .bool("predates_start", c.predates_us);
        o.end();
    }

    fn loss(&mut self, k: &KernelCounters, out: &mut String) {
        Obj::new(out, "loss")
            .name("time", &self.scratch)
            .uint("ring_drops", k.ring_drops)
            .uint("recursion_misses", k.recursion_misses)
            .end();
    }
}

/// The end-of-run summary as one `summary` line, at `time` (RFC 3339).
pub fn summary_line(s: &Summary, time: &str, out: &mut String) {
    Obj::new(out, "summary")
        .name("time", time)
        .object("events", |o| {
            o.uint("state", s.state)
                .uint("bind", s.bind)
                .uint("listen", s.listen)
                .uint("release", s.release)
                .uint("close", s.close)
                .uint("filtered", s.filtered)
                .uint("kernel_emitted", s.kernel.emitted);
        })
        .array(
            "time_wait_destinations",
            top(&s.time_waits, 10),
            |o, (place, n)| {
                let (side, addr) = match place {
                    Place::To(addr) => ("client", addr),
                    Place::Served(addr) => ("server", addr),
                };
                o.name("side", side)
                    .ip("addr", addr.ip())
                    .uint("port", addr.port().into())
                    .uint("entries", n);
            },
        )
        .uint("listeners_closed", s.listeners_closed)
        .array(
            "short_lived_listeners",
            top(&s.short_listeners, 10),
            |o, (what, n)| {
                o.string("listener", &what).uint("count", n);
            },
        )
        .object("lost", |o| {
            o.uint("ring_drops", s.kernel.ring_drops)
                .uint("recursion_misses", s.kernel.recursion_misses)
                .uint("malformed", s.malformed)
                .uint("unpaired", s.kernel.unpaired)
                .uint("owner_failed", s.kernel.owner_failed)
                .uint("untracked", s.untracked)
                .uint("output_dropped", s.output_dropped)
                .uint("tally_overflow", s.kernel.tally_overflow)
                .uint("bound_full", s.kernel.bound_full);
        })
        .end();
}

impl Render for Json {
    fn record(&mut self, record: &Record, out: &mut String) {
        self.scratch.clear();
        self.time.write(record.at(), &mut self.scratch);
        match record {
            Record::Existing(known, _) => self.existing(known, out),
            Record::Loss(counters, _) => self.loss(counters, out),
            Record::Event(e) => self.event(e, out),
            Record::Close(c) => self.close(c, out),
            Record::Queues(samples, _) => self.queues_line(samples, out),
        }
    }

    fn samples_queues(&self) -> bool {
        self.queues
    }

    fn queues(&mut self, now_ns: u64, samples: &[QueueSample], out: &mut String) -> Vec<Note> {
        self.scratch.clear();
        self.time.write(now_ns, &mut self.scratch);
        self.queues_line(samples, out);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::TcpState,
        track::{Failure, Reason, Side},
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
        let mut e = event(Detail::transition(
            "[::1]:80",
            "[::1]:5555",
            TcpState::SynSent,
            TcpState::Established,
        ));
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
    fn socket_line_has_its_namespace_and_an_unknown_one_is_null() {
        let known = Known {
            sock: SockId(0x1f),
            netns: 4026531833,
            state: TcpState::Listen,
            local: "0.0.0.0:22".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            owner: Owner::UNKNOWN,
        };
        let v = render(&Record::Existing(known.clone(), 5_000_000_000));
        assert_eq!(
            (&v["type"], &v["netns"], &v["sock"], &v["state"]),
            (
                &"socket".into(),
                &4026531833u32.into(),
                &"1f".into(),
                &"LISTEN".into()
            )
        );
        let unknown = Known { netns: 0, ..known };
        let v = render(&Record::Existing(unknown, 5_000_000_000));
        assert_eq!(v["netns"], serde_json::Value::Null);
    }

    #[test]
    fn summary_line_has_type_and_time() {
        let clock = Clock::with_offset(1_795_618_501 * 1_000_000_000 - 5_000_000_000);
        let time = crate::clock::rfc3339(clock, 5_000_000_007);
        let mut out = String::new();
        summary_line(&Summary::default(), &time, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["type"], &v["time"]),
            (&"summary".into(), &"2026-11-25T14:55:01.000000007Z".into())
        );
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
