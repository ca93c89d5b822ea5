//! Aligned lines for people: one per transition, bind and listen, or (with
//! `--lifecycle`) one per finished connection, as tcplife prints them.
use std::fmt::Write as _;

use super::{Hue, Palette, Render, millis};
use crate::{
    clock::{Clock, Style, TimeFormatter},
    escape::escape,
    event::{Detail, Event, Owner, StateInfo, TcpState},
    track::{Close, Known, Opener, Record, Side},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextMode {
    /// Every transition, bind and listen.
    Events,
    /// One line per finished connection.
    Lifecycles,
}

pub struct Text {
    time: TimeFormatter,
    mode: TextMode,
    palette: Palette,
}

impl Text {
    pub fn new(clock: Clock, mode: TextMode, palette: Palette) -> Text {
        Text {
            time: TimeFormatter::new(clock, Style::LocalTime),
            mode,
            palette,
        }
    }
}

const EVENT_COLUMNS: &str = "TIME            PID     COMM            PROTO LOCAL                    REMOTE                   EVENT";
const CLOSE_COLUMNS: &str = "TIME            PID     COMM            LOCAL                    REMOTE                   TX_KB    RX_KB    MS         CONN_MS    RETRANS RTT_MS   OPEN    END";

/// `pid comm` columns (the name escaped); `-` for an owner we do not know.
pub(super) fn owner_columns(owner: &Owner, out: &mut String) {
    let _ = if owner.is_known() {
        write!(out, " {:<7} {:<15} ", owner.pid, owner.comm)
    } else {
        write!(out, " {:<7} {:<15} ", "-", "-")
    };
}

impl Render for Text {
    fn preamble(&mut self, out: &mut String) {
        out.push_str(match self.mode {
            TextMode::Events => EVENT_COLUMNS,
            TextMode::Lifecycles => CLOSE_COLUMNS,
        });
        out.push('\n');
    }

    fn record(&mut self, record: &Record, out: &mut String) {
        match (record, self.mode) {
            (Record::Existing(k, at), TextMode::Events) => self.existing(k, *at, out),
            (Record::Event(e), TextMode::Events) => self.event(e, out),
            (Record::Close(c), TextMode::Lifecycles) => self.close(c, out),
            _ => {}
        }
    }
}

impl Text {
    fn existing(&mut self, k: &Known, at: u64, out: &mut String) {
        self.time.write(at, out);
        owner_columns(&k.owner, out);
        let _ = writeln!(
            out,
            "tcp   {:<24} {:<24} exists: {}",
            k.local, k.remote, k.state
        );
    }

    fn event(&mut self, e: &Event, out: &mut String) {
        self.time.write(e.mono_ns, out);
        owner_columns(&e.owner, out);
        let _ = write!(out, "{:<5} ", e.proto);
        let _ = match &e.detail {
            Detail::State {
                local,
                remote,
                old,
                new,
                info,
            } => {
                let _ = write!(out, "{local:<24} {remote:<24} ");
                let hue = state_hue(*old, *new, info);
                if let Some(hue) = hue {
                    self.palette.start(hue, out);
                }
                let _ = write!(out, "{old} -> {new}");
                if let Some(how) = info.tw_end {
                    let _ = write!(out, " ({})", tw_end_words(how));
                }
                if hue.is_some() {
                    self.palette.end(out);
                }
                Ok(())
            }
            Detail::Bind {
                addr,
                requested_port,
                errno,
            } => {
                let _ = write!(out, "{addr:<24} {:<24} bind", "-");
                match errno.name() {
                    Some(name) => self.failed(&name, out),
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
                    Some(name) => self.failed(&name, out),
                    None => Ok(()),
                }
            }
            Detail::Release { addr } => write!(out, "{addr:<24} {:<24} closed (bound)", "-"),
        };
        out.push('\n');
    }

    fn close(&mut self, c: &Close, out: &mut String) {
        self.time.write(c.mono_ns, out);
        owner_columns(&c.owner, out);
        let kb = |bytes: u64| bytes / 1024; // as tcplife rounds
        let _ = write!(
            out,
            "{:<24} {:<24} {:<8} {:<8} {:<10.3} {:<10} {:<7} {:<8} {:<7} ",
            c.local,
            c.remote,
            kb(c.bytes_sent),
            kb(c.bytes_received),
            c.duration_ns as f64 / 1e6,
            millis(c.connect_ns),
            c.tcp.map_or("-".into(), |t| t.retransmits.to_string()),
            millis(c.tcp.map(|t| u64::from(t.srtt_us) * 1000)),
            match c.opener {
                Opener::Listener | Opener::Unknown => "-",
                known => known.name(),
            },
        );
        let hue = if c.failure.is_some() || c.reset_by.is_some() {
            Some(Hue::Failure)
        } else {
            c.time_wait.then_some(Hue::TimeWait)
        };
        match hue {
            Some(hue) => self.palette.paint(hue, &end_words(c), out),
            None => out.push_str(&end_words(c)),
        }
        out.push('\n');
    }

    /// ` failed EADDRINUSE`, the failure in red.
    fn failed(&self, errno: &str, out: &mut String) -> std::fmt::Result {
        out.push(' ');
        self.palette.start(Hue::Failure, out);
        let result = write!(out, "failed {errno}");
        self.palette.end(out);
        result
    }
}

/// Red for a connection that ended by a reset or an error, yellow in and
/// out of TIME_WAIT.
fn state_hue(old: TcpState, new: TcpState, info: &StateInfo) -> Option<Hue> {
    if new == TcpState::Close && (info.rst_received || info.rst_sent || info.sk_err.0 != 0) {
        Some(Hue::Failure)
    } else if new == TcpState::TimeWait || old == TcpState::TimeWait {
        Some(Hue::TimeWait)
    } else {
        None
    }
}

fn tw_end_words(how: crate::event::TwEnd) -> &'static str {
    match how {
        crate::event::TwEnd::Observed => "seen gone",
        crate::event::TwEnd::Timeout => "60 s expiry",
    }
}

/// How a connection ended, in a few words.
fn end_words(c: &Close) -> String {
    if let Some(f) = c.failure {
        let reason = f.reason.name();
        return match f.errno.name() {
            Some(errno) => format!("{reason} ({errno})"),
            None => reason.to_string(),
        };
    }
    match (c.reset_by, c.time_wait, c.closed_first) {
        (Some(Side::Local), ..) => match c.reset_reason.as_deref() {
            Some(why) => format!("reset sent ({})", escape(why)),
            None => "reset sent".into(),
        },
        (Some(Side::Remote), ..) => "reset received".into(),
        (None, true, _) => "time-wait".into(),
        (None, false, Some(Side::Local)) => "closed".into(),
        (None, false, Some(Side::Remote)) => "peer closed".into(),
        (None, false, None) => "closed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        escape::{FORGING, FORGING_SHOWN},
        event::{Errno, Proto, StateInfo, TcpState},
    };

    fn event(proto: Proto, detail: Detail) -> Event {
        Event::sample(1_000_250_000, 4242, "curl", proto, detail)
    }

    fn render(mode: TextMode, r: &Record) -> String {
        render_in(Palette::OFF, mode, r)
    }

    fn render_in(palette: Palette, mode: TextMode, r: &Record) -> String {
        let mut out = String::new();
        let mut text = Text::new(Clock::with_offset(0), mode, palette);
        text.record(r, &mut out);
        // Drop the local-time part, which depends on the machine's zone.
        out.split_once('.')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn state_line() {
        let mut e = event(
            Proto::Tcp,
            Detail::transition(
                "127.0.0.1:43512",
                "[::1]:8080",
                TcpState::Close,
                TcpState::SynSent,
            ),
        );
        assert_eq!(
            render(TextMode::Events, &Record::Event(e.clone())),
            "000250 4242    curl            tcp   127.0.0.1:43512          [::1]:8080               CLOSE -> SYN_SENT\n"
        );
        e.owner = Owner::UNKNOWN;
        assert!(
            render(TextMode::Events, &Record::Event(e.clone()))
                .starts_with("000250 -       -               tcp")
        );
        assert_eq!(
            render(TextMode::Lifecycles, &Record::Event(e)),
            "",
            "events are not lifecycles"
        );
    }

    #[test]
    fn bind_and_listen_lines() {
        let bind = render(
            TextMode::Events,
            &Record::Event(event(
                Proto::Udp,
                Detail::Bind {
                    addr: "0.0.0.0:40000".parse().unwrap(),
                    requested_port: 0,
                    errno: Errno(0),
                },
            )),
        );
        assert!(
            bind.ends_with("udp   0.0.0.0:40000            -                        bind (port 0: kernel chose)\n"),
            "{bind}"
        );
        let failed = render(
            TextMode::Events,
            &Record::Event(event(
                Proto::Tcp,
                Detail::Listen {
                    addr: "0.0.0.0:80".parse().unwrap(),
                    backlog: 5,
                    errno: Errno(98),
                },
            )),
        );
        assert!(
            failed.ends_with("listen backlog 5 failed EADDRINUSE\n"),
            "{failed}"
        );
    }

    #[test]
    fn lifecycle_line() {
        let e = event(
            Proto::Tcp,
            Detail::Listen {
                addr: "0.0.0.0:80".parse().unwrap(),
                backlog: 5,
                errno: Errno(0),
            },
        );
        let close = Close {
            closed_first: Some(Side::Local),
            duration_ns: 2_500_000,
            bytes_sent: 2048,
            bytes_received: 1,
            time_wait: true,
            ..Close::sample(
                e.mono_ns,
                e.owner.clone(),
                "127.0.0.1:40000",
                "127.0.0.1:80",
            )
        };
        let line = render(TextMode::Lifecycles, &Record::Close(close));
        assert_eq!(
            line,
            "000250 4242    curl            127.0.0.1:40000          127.0.0.1:80             2        0        2.500      -          -       -        active  time-wait\n"
        );
    }

    #[test]
    fn colours_failures_and_time_wait() {
        let state = |old, new, info| {
            Record::Event(event(
                Proto::Tcp,
                Detail::State {
                    local: "127.0.0.1:43512".parse().unwrap(),
                    remote: "127.0.0.1:9".parse().unwrap(),
                    old,
                    new,
                    info,
                },
            ))
        };
        let refused = StateInfo {
            sk_err: Errno(111),
            ..StateInfo::default()
        };
        let line = render_in(
            Palette::ON,
            TextMode::Events,
            &state(TcpState::SynSent, TcpState::Close, refused),
        );
        assert!(
            line.ends_with(" \x1b[31mSYN_SENT -> CLOSE\x1b[0m\n"),
            "{line:?}"
        );
        let line = render_in(
            Palette::ON,
            TextMode::Events,
            &state(TcpState::FinWait2, TcpState::TimeWait, StateInfo::default()),
        );
        assert!(
            line.ends_with(" \x1b[33mFIN_WAIT2 -> TIME_WAIT\x1b[0m\n"),
            "{line:?}"
        );
        let plain = state(
            TcpState::SynSent,
            TcpState::Established,
            StateInfo::default(),
        );
        assert!(!render_in(Palette::ON, TextMode::Events, &plain).contains('\x1b'));
        let bind = Record::Event(event(
            Proto::Tcp,
            Detail::Bind {
                addr: "0.0.0.0:80".parse().unwrap(),
                requested_port: 80,
                errno: Errno(13),
            },
        ));
        let line = render_in(Palette::ON, TextMode::Events, &bind);
        assert!(
            line.ends_with(" bind \x1b[31mfailed EACCES\x1b[0m\n"),
            "{line:?}"
        );
        assert!(render(TextMode::Events, &bind).ends_with(" bind failed EACCES\n"));
        let e = event(
            Proto::Tcp,
            Detail::Release {
                addr: "0.0.0.0:80".parse().unwrap(),
            },
        );
        let reset = Close {
            reset_by: Some(Side::Remote),
            ..Close::sample(
                e.mono_ns,
                e.owner.clone(),
                "127.0.0.1:40000",
                "127.0.0.1:80",
            )
        };
        let line = render_in(Palette::ON, TextMode::Lifecycles, &Record::Close(reset));
        assert!(
            line.ends_with(" \x1b[31mreset received\x1b[0m\n"),
            "{line:?}"
        );
    }

    #[test]
    fn process_names_are_escaped_in_every_line() {
        let e = Event::sample(
            1_000_250_000,
            4242,
            FORGING,
            Proto::Tcp,
            Detail::transition(
                "127.0.0.1:43512",
                "127.0.0.1:80",
                TcpState::SynSent,
                TcpState::Established,
            ),
        );
        let close = Close::sample(
            e.mono_ns,
            e.owner.clone(),
            "127.0.0.1:43512",
            "127.0.0.1:80",
        );
        let known = Known {
            owner: e.owner.clone(),
            sock: crate::event::SockId(7),
            netns: 1,
            state: TcpState::Listen,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
        };
        for (mode, record) in [
            (TextMode::Events, Record::Event(e)),
            (TextMode::Lifecycles, Record::Close(close)),
            (TextMode::Events, Record::Existing(known, 0)),
        ] {
            let line = render(mode, &record);
            assert!(line.contains(FORGING_SHOWN), "{line:?}");
            let body = &line[..line.len() - 1];
            assert!(!body.bytes().any(|b| b.is_ascii_control()), "{line:?}");
        }
    }
}
