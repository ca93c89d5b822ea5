//! JSON lines: one object per event, `type` first.
use std::net::IpAddr;

use serde::Serialize;

use super::Render;
use crate::{
    clock::{Clock, Style, TimeFormatter},
    event::{Comm, Detail, Event, OwnerSource, Proto, SockId, TcpState},
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

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    pid: u32,
    tid: u32,
    uid: u32,
    comm: &'a Comm,
    owner_source: OwnerSource,
    proto: Proto,
    family: &'static str,
    sock: SockId,
    #[serde(flatten)]
    detail: LineDetail,
}

#[derive(Serialize)]
#[serde(untagged)]
enum LineDetail {
    State {
        saddr: IpAddr,
        sport: u16,
        daddr: IpAddr,
        dport: u16,
        old_state: TcpState,
        new_state: TcpState,
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

impl Render for Json {
    fn event(&mut self, event: &Event, out: &mut String) {
        self.scratch.clear();
        self.time.write(event.mono_ns, &mut self.scratch);
        let detail = match &event.detail {
            Detail::State {
                local,
                remote,
                old,
                new,
            } => LineDetail::State {
                saddr: local.ip(),
                sport: local.port(),
                daddr: remote.ip(),
                dport: remote.port(),
                old_state: *old,
                new_state: *new,
            },
            Detail::Bind {
                addr,
                requested_port,
                errno,
            } => LineDetail::Bind {
                addr: addr.ip(),
                port: addr.port(),
                requested_port: *requested_port,
                errno: errno.0,
                error: errno.name(),
            },
            Detail::Listen {
                addr,
                backlog,
                errno,
            } => LineDetail::Listen {
                addr: addr.ip(),
                port: addr.port(),
                backlog: *backlog,
                errno: errno.0,
                error: errno.name(),
            },
        };
        let line = Line {
            kind: event.type_name(),
            time: &self.scratch,
            pid: event.task.pid,
            tid: event.task.tid,
            uid: event.task.uid,
            comm: &event.task.comm,
            owner_source: event.task.source,
            proto: event.proto,
            family: event.family(),
            sock: event.sock,
            detail,
        };
        // SAFETY of unwrap: serializing plain structs to a String cannot fail.
        let json = serde_json::to_string(&line).expect("serializing an event");
        out.push_str(&json);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Errno;

    fn event(detail: Detail) -> Event {
        Event::sample(5_000_000_007, 7, "nc", Proto::Udp, detail)
    }

    fn render(e: &Event) -> serde_json::Value {
        let clock = Clock::with_offset(1_795_618_501 * 1_000_000_000 - 5_000_000_000);
        let mut out = String::new();
        Json::new(clock).event(e, &mut out);
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1);
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn bind_line() {
        let v = render(&event(Detail::Bind {
            addr: "0.0.0.0:5353".parse().unwrap(),
            requested_port: 5353,
            errno: Errno(98),
        }));
        assert_eq!(
            v,
            serde_json::json!({
                "type": "bind", "time": "2026-11-25T14:55:01.000000007Z",
                "pid": 7, "tid": 7, "uid": 0, "comm": "nc", "owner_source": "syscall",
                "proto": "udp", "family": "ipv4", "sock": "0000000000000abc",
                "addr": "0.0.0.0", "port": 5353, "requested_port": 5353,
                "errno": 98, "error": "EADDRINUSE"
            })
        );
    }

    #[test]
    fn state_line() {
        let v = render(&event(Detail::State {
            local: "[::1]:80".parse().unwrap(),
            remote: "[::1]:5555".parse().unwrap(),
            old: TcpState::SynSent,
            new: TcpState::Established,
        }));
        assert_eq!(v["type"], "state");
        assert_eq!(v["family"], "ipv6");
        assert_eq!((&v["saddr"], &v["sport"]), (&"::1".into(), &80.into()));
        assert_eq!(
            (&v["old_state"], &v["new_state"]),
            (&"SYN_SENT".into(), &"ESTABLISHED".into())
        );
    }

    #[test]
    fn listen_line_has_null_error_on_success() {
        let v = render(&event(Detail::Listen {
            addr: "127.0.0.1:8080".parse().unwrap(),
            backlog: 128,
            errno: Errno(0),
        }));
        assert_eq!(
            (&v["type"], &v["port"], &v["backlog"]),
            (&"listen".into(), &8080.into(), &128.into())
        );
        assert_eq!(
            (&v["errno"], &v["error"]),
            (&0.into(), &serde_json::Value::Null)
        );
    }
}
