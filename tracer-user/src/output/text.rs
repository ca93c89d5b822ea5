//! One aligned line per event, for people.
use std::fmt::Write as _;

use super::Render;
use crate::{
    clock::{Clock, Style, TimeFormatter},
    event::{Detail, Event},
};

pub struct Text {
    time: TimeFormatter,
}

impl Text {
    pub fn new(clock: Clock) -> Text {
        Text {
            time: TimeFormatter::new(clock, Style::LocalTime),
        }
    }
}

const COLUMNS: &str = "TIME            PID     COMM            PROTO LOCAL                    REMOTE                   EVENT";

impl Render for Text {
    fn preamble(&mut self, out: &mut String) {
        out.push_str(COLUMNS);
        out.push('\n');
    }

    fn event(&mut self, e: &Event, out: &mut String) {
        self.time.write(e.mono_ns, out);
        let _ = write!(
            out,
            " {:<7} {:<15} {:<5} ",
            e.task.pid, e.task.comm, e.proto
        );
        let _ = match &e.detail {
            Detail::State {
                local,
                remote,
                old,
                new,
            } => write!(out, "{local:<24} {remote:<24} {old} -> {new}"),
            Detail::Bind {
                addr,
                requested_port,
                errno,
            } => {
                let _ = write!(out, "{addr:<24} {:<24} bind", "-");
                match errno.name() {
                    Some(name) => write!(out, " failed {name}"),
                    None if *requested_port == 0 => write!(out, " (port 0: kernel chose)"),
                    None => Ok(()),
                }
            }
            Detail::Listen {
                addr,
                backlog,
                errno,
            } => {
                let _ = write!(out, "{addr:<24} {:<24} listen backlog {backlog}", "-");
                match errno.name() {
                    Some(name) => write!(out, " failed {name}"),
                    None => Ok(()),
                }
            }
        };
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Errno, Proto, TcpState};

    fn event(proto: Proto, detail: Detail) -> Event {
        Event::sample(1_000_250_000, 4242, "curl", proto, detail)
    }

    fn render(e: &Event) -> String {
        let mut out = String::new();
        let mut text = Text::new(Clock::with_offset(0));
        text.event(e, &mut out);
        // Drop the local-time part, which depends on the machine's zone.
        out.split_once('.').unwrap().1.to_string()
    }

    #[test]
    fn state_line() {
        let line = render(&event(
            Proto::Tcp,
            Detail::State {
                local: "127.0.0.1:43512".parse().unwrap(),
                remote: "[::1]:8080".parse().unwrap(),
                old: TcpState::Close,
                new: TcpState::SynSent,
            },
        ));
        assert_eq!(
            line,
            "000250 4242    curl            tcp   127.0.0.1:43512          [::1]:8080               CLOSE -> SYN_SENT\n"
        );
    }

    #[test]
    fn bind_and_listen_lines() {
        let bind = render(&event(
            Proto::Udp,
            Detail::Bind {
                addr: "0.0.0.0:40000".parse().unwrap(),
                requested_port: 0,
                errno: Errno(0),
            },
        ));
        assert!(bind.ends_with("udp   0.0.0.0:40000            -                        bind (port 0: kernel chose)\n"), "{bind}");
        let failed = render(&event(
            Proto::Tcp,
            Detail::Listen {
                addr: "0.0.0.0:80".parse().unwrap(),
                backlog: 5,
                errno: Errno(98),
            },
        ));
        assert!(
            failed.ends_with("listen backlog 5 failed EADDRINUSE\n"),
            "{failed}"
        );
    }
}
