//! `socktrace listeners`: a line when a listener opens or closes (short
//! ones flagged) or a bind fails, and the table of every port's listen
//! cycles at each `--interval` and at the end. Text or JSON lines.
use std::fmt::Write as _;

use super::{
    Hue, Palette, Render, human_ns,
    json::{common, errno},
    jsonw::Obj,
    text::owner_columns,
};
use crate::{
    analysis::listeners::{Listeners, Note, What},
    clock::{Clock, Style, TimeFormatter},
    escape::escaped,
    event::QueueSample,
    track::Record,
};

pub struct ListenersView {
    analysis: Listeners,
    json: bool,
    palette: Palette,
    time: TimeFormatter,
    scratch: String,
}

const NOTE_COLUMNS: &str =
    "TIME            PID     COMM            PROTO KIND   ADDRESS                  EVENT";
const TABLE_COLUMNS: &str = "PROTO PORT  KIND   COMM            PIDS  CYCLES  SHORT  OPEN  FAILED  QUEUE      DROPS    MIN        MEDIAN     MAX";

impl ListenersView {
    pub fn new(clock: Clock, analysis: Listeners, json: bool, palette: Palette) -> ListenersView {
        let style = if json {
            Style::Rfc3339Utc
        } else {
            Style::LocalTime
        };
        ListenersView {
            analysis,
            json,
            palette,
            time: TimeFormatter::new(clock, style),
            scratch: String::new(),
        }
    }

    pub fn analysis(&self) -> &Listeners {
        &self.analysis
    }

    fn text_note(&mut self, n: &Note, out: &mut String) {
        self.time.write(n.at_ns, out);
        owner_columns(&n.owner, out);
        let _ = write!(out, "{:<5} {:<6} {:<24} ", n.proto, n.kind.name(), n.addr);
        match n.what {
            What::Opened { backlog: Some(b) } => {
                let _ = write!(out, "open backlog {b}");
            }
            What::Opened { backlog: None } => out.push_str("open"),
            What::Closed {
                lifetime_ns: Some(ns),
                short,
            } => {
                let _ = write!(out, "closed after {}", human_ns(ns));
                if short {
                    out.push_str("  ");
                    self.palette.paint(Hue::Short, "SHORT-LIVED", out);
                }
            }
            What::Closed { .. } => out.push_str("closed (opened before start)"),
            What::BindFailed { errno } => {
                self.palette.start(Hue::Failure, out);
                let _ = write!(
                    out,
                    "bind failed {}",
                    errno.name().unwrap_or_else(|| errno.0.to_string())
                );
                self.palette.end(out);
            }
            What::Dropped {
                dropped,
                depth,
                backlog,
            } => {
                self.palette.start(Hue::Failure, out);
                let _ = write!(
                    out,
                    "dropped {dropped}: accept queue full ({depth} waiting, backlog {backlog})"
                );
                self.palette.end(out);
            }
        }
        out.push('\n');
    }

    fn json_note(&mut self, n: &Note, out: &mut String) {
        self.scratch.clear();
        self.time.write(n.at_ns, &mut self.scratch);
        let mut o = Obj::new(out, "listener");
        o.name("time", &self.scratch);
        let event = match n.what {
            What::Opened { .. } => "open",
            What::Closed { .. } => "close",
            What::BindFailed { .. } => "bind_failed",
            What::Dropped { .. } => "drops",
        };
        o.name("event", event);
        common(&mut o, &n.owner, n.proto, &n.addr, n.netns, Some(n.sock));
        o.name("kind", n.kind.name())
            .ip("addr", n.addr.ip())
            .uint("port", n.addr.port().into());
        match n.what {
            What::Opened { backlog } => {
                o.opt("backlog", backlog, |o, k, b| {
                    o.int(k, b.into());
                });
            }
            What::Closed { lifetime_ns, short } => {
                o.opt("lifetime_ms", lifetime_ns, |o, k, ns| {
                    o.millis(k, ns);
                })
                .bool("short", short);
            }
            What::BindFailed { errno: e } => errno(&mut o, e),
            What::Dropped {
                dropped,
                depth,
                backlog,
            } => {
                o.uint("dropped", dropped)
                    .uint("queue", depth.into())
                    .uint("backlog", backlog.into());
            }
        }
        o.end();
    }

    fn table(&mut self, now_ns: u64, out: &mut String) {
        if self.json {
            self.table_json(now_ns, out);
        } else {
            self.table_text(out);
        }
    }

    fn table_json(&mut self, now_ns: u64, out: &mut String) {
        self.scratch.clear();
        self.time.write(now_ns, &mut self.scratch);
        let short_ns = self.analysis.short_ns();
        Obj::new(out, "listeners")
            .name("time", &self.scratch)
            .millis("short_ms", short_ns)
            .array("rows", self.analysis.rows(), |o, (key, row)| {
                o.shown("proto", key.proto)
                    .uint("port", key.port.into())
                    .name("kind", key.kind.name())
                    .opt("comm", key.known.then_some(&key.comm), |o, k, c| {
                        o.string(k, c);
                    })
                    .uints("pids", row.pids.iter().map(|&p| u64::from(p)))
                    .uint("cycles", row.cycles)
                    .uint("short", row.short)
                    .uint("open", row.open)
                    .uint("failed_binds", row.failed_binds)
                    .opt("queue", row.queue, |o, k, (depth, _)| {
                        o.uint(k, depth.into());
                    })
                    .opt("backlog", row.queue, |o, k, (_, backlog)| {
                        o.uint(k, backlog.into());
                    })
                    .uint("drops", row.drops);
                let times = row.lifetimes();
                for (i, key) in ["min_ms", "median_ms", "max_ms"].into_iter().enumerate() {
                    o.opt(key, times, |o, k, t| {
                        o.millis(k, [t.0, t.1, t.2][i]);
                    });
                }
            })
            .end();
    }

    fn table_text(&self, out: &mut String) {
        out.push_str(TABLE_COLUMNS);
        out.push('\n');
        for (key, row) in self.analysis.rows() {
            let _ = write!(
                out,
                "{:<5} {:<5} {:<6} {:<15} {:<5} {:<7} {:<6} {:<5} {:<7} {:<10} {:<8} ",
                key.proto,
                key.port,
                key.kind.name(),
                escaped(&key.comm),
                row.pids.len(),
                row.cycles,
                row.short,
                row.open,
                row.failed_binds,
                row.queue
                    .map_or("-".into(), |(depth, backlog)| format!("{depth}/{backlog}")),
                row.drops
            );
            match row.lifetimes() {
                Some((min, median, max)) => {
                    let _ = write!(
                        out,
                        "{:<10} {:<10} {}",
                        human_ns(min),
                        human_ns(median),
                        human_ns(max)
                    );
                }
                None => out.push_str("-          -          -"),
            }
            out.push('\n');
        }
    }
}

impl Render for ListenersView {
    fn preamble(&mut self, out: &mut String) {
        if !self.json {
            out.push_str(NOTE_COLUMNS);
            out.push('\n');
        }
    }

    fn record(&mut self, record: &Record, out: &mut String) {
        // A recording's queue samples (live ones come through `queues`).
        if let Record::Queues(samples, at) = record {
            self.queues(*at, samples, out);
            return;
        }
        let Some(note) = self.analysis.observe(record) else {
            return;
        };
        if self.json {
            self.json_note(&note, out);
        } else {
            self.text_note(&note, out);
        }
    }

    fn tick(&mut self, now_ns: u64, out: &mut String) {
        self.table(now_ns, out);
    }

    fn finish(&mut self, now_ns: u64, out: &mut String) {
        self.table(now_ns, out);
    }

    fn samples_queues(&self) -> bool {
        true
    }

    fn queues(&mut self, now_ns: u64, samples: &[QueueSample], out: &mut String) -> Vec<Note> {
        let notes = self.analysis.queues(now_ns, samples);
        for note in &notes {
            if self.json {
                self.json_note(note, out);
            } else {
                self.text_note(note, out);
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        escape::{FORGING, FORGING_SHOWN},
        event::{Detail, Errno, Event, Proto, TcpState},
    };

    fn lines(records: &[Record]) -> Vec<serde_json::Value> {
        let clock = Clock::with_offset(0);
        let mut view = ListenersView::new(clock, Listeners::new(1_000_000_000), true, Palette::OFF);
        let mut out = String::new();
        for r in records {
            view.record(r, &mut out);
        }
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn listener_lines_carry_the_socket_and_its_namespace() {
        let addr = "127.0.0.1:5353".parse().unwrap();
        let bind = Event::sample(
            1_000,
            7,
            "nc",
            Proto::Udp,
            Detail::Bind {
                addr,
                requested_port: 5353,
                errno: Errno(0),
            },
        );
        let release = Event {
            mono_ns: 2_000,
            detail: Detail::Release { addr },
            ..bind.clone()
        };
        let failed = Event {
            netns: 0,
            detail: Detail::Bind {
                addr,
                requested_port: 5353,
                errno: Errno(98),
            },
            ..bind.clone()
        };
        let got = lines(&[
            Record::Event(bind),
            Record::Event(release),
            Record::Event(failed),
        ]);
        let fields: Vec<_> = got
            .iter()
            .map(|l| (l["event"].clone(), l["sock"].clone(), l["netns"].clone()))
            .collect();
        assert_eq!(
            fields,
            [
                ("open".into(), "abc".into(), 4026531840u32.into()),
                ("close".into(), "abc".into(), 4026531840u32.into()),
                ("bind_failed".into(), "abc".into(), serde_json::Value::Null),
            ]
        );
    }

    #[test]
    fn a_table_row_of_no_known_owner_has_a_null_comm() {
        let known = || crate::track::Known {
            sock: crate::event::SockId(1),
            netns: 1,
            state: crate::event::TcpState::Listen,
            local: "0.0.0.0:22".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            owner: crate::event::Owner::UNKNOWN,
        };
        let clock = Clock::with_offset(0);
        let mut view = ListenersView::new(clock, Listeners::new(1_000_000_000), true, Palette::OFF);
        let mut out = String::new();
        view.record(&Record::Existing(known(), 5), &mut out);
        view.finish(10, &mut out);
        let table: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&table["rows"][0]["port"], &table["rows"][0]["comm"]),
            (&22.into(), &serde_json::Value::Null)
        );
        // People still read `-`.
        let mut text =
            ListenersView::new(clock, Listeners::new(1_000_000_000), false, Palette::OFF);
        let mut out = String::new();
        text.record(&Record::Existing(known(), 5), &mut out);
        text.finish(10, &mut out);
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with("tcp   22    listen -  "),
            "{out}"
        );
    }

    #[test]
    fn process_names_are_escaped_in_lines_and_the_table() {
        let mut view = ListenersView::new(
            Clock::with_offset(0),
            Listeners::new(1_000_000_000),
            false,
            Palette::OFF,
        );
        let mut out = String::new();
        let addr = "127.0.0.1:7011";
        for (at, detail) in [
            (
                1_000,
                Detail::Listen {
                    addr: addr.parse().unwrap(),
                    backlog: 16,
                    errno: Errno(0),
                },
            ),
            (
                2_000,
                Detail::transition(addr, "0.0.0.0:0", TcpState::Listen, TcpState::Close),
            ),
        ] {
            let e = Event::sample(at, 42, FORGING, Proto::Tcp, detail);
            view.record(&Record::Event(e), &mut out);
        }
        view.finish(3_000, &mut out);
        // The open and close lines, and the table's row.
        assert_eq!(out.matches(FORGING_SHOWN).count(), 3, "{out}");
        assert!(
            !out.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
            "{out:?}"
        );
    }
}
