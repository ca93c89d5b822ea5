//! `socktrace timewait` reports: a block of tables per interval for people,
//! one `timewait` JSON line per interval for programs.
use std::fmt::Write as _;

use super::{Hue, Palette, jsonw::Obj};
use crate::{
    analysis::timewait::{Dest, Report},
    clock::{Clock, Style, TimeFormatter},
    escape::escaped,
};

pub struct TimewaitView {
    json: bool,
    palette: Palette,
    time: TimeFormatter,
    scratch: String,
}

impl TimewaitView {
    pub fn new(clock: Clock, json: bool, palette: Palette) -> TimewaitView {
        let style = if json {
            Style::Rfc3339Utc
        } else {
            Style::LocalTime
        };
        TimewaitView {
            json,
            palette,
            time: TimeFormatter::new(clock, style),
            scratch: String::new(),
        }
    }

    pub fn report(&mut self, r: &Report, out: &mut String) {
        self.scratch.clear();
        self.time.write(r.now_ns, &mut self.scratch);
        if self.json {
            json(r, &self.scratch, out);
        } else {
            text(r, &self.scratch, self.palette, out);
        }
    }
}

fn dest_name(d: &Dest) -> String {
    format!("{} -> {}", d.local, d.remote)
}

fn text(r: &Report, time: &str, palette: Palette, out: &mut String) {
    palette.start(Hue::Heading, out);
    let _ = write!(
        out,
        "{time} TIME_WAIT +{:.0}/s (client side {}, server side {}) now {}",
        r.rate(),
        r.client_entries,
        r.server_entries,
        r.population
    );
    if r.missed > 0 {
        let _ = write!(out, " ({} transitions missed so far)", r.missed);
    }
    if let Some(k) = r.kernel_population {
        let _ = write!(out, " (kernel: {k} in this netns)");
    }
    palette.end(out);
    out.push('\n');
    if !r.by_process.is_empty() {
        out.push_str("  PID     COMM              ENTRIES/S  TIME_WAIT\n");
        for row in &r.by_process {
            let pid = if row.id == 0 {
                "-".into()
            } else {
                row.id.to_string()
            };
            let _ = writeln!(
                out,
                "  {pid:<7} {:<16} {:>10.0} {:>10}",
                escaped(&row.comm),
                row.per_sec,
                row.population
            );
        }
    }
    if !r.by_destination.is_empty() {
        out.push_str(
            "  DESTINATION (client side)                          ENTRIES/S  TIME_WAIT  IN_USE\n",
        );
        for d in &r.by_destination {
            let _ = writeln!(
                out,
                "  {:<50} {:>9.0} {:>10} {:>7}",
                dest_name(&d.dest),
                d.per_sec,
                d.time_wait,
                d.in_use
            );
        }
    }
    if !r.by_local_port.is_empty() {
        out.push_str("  LOCAL PORT (server side)  ENTRIES/S  TIME_WAIT\n");
        for row in &r.by_local_port {
            let _ = writeln!(
                out,
                "  {:<25} {:>9.0} {:>10}",
                row.id, row.per_sec, row.population
            );
        }
    }
    for p in &r.pressure {
        out.push_str("  ");
        palette.start(Hue::Failure, out);
        let _ = write!(
            out,
            "! {} holds {:.0}% of the local ports ({} of {}), most by pid {} ({}): new \
             connections there fail with EADDRNOTAVAIL once none is free{}",
            dest_name(&p.dest),
            p.percent,
            p.held,
            p.range,
            p.pid,
            escaped(&p.comm),
            if p.reuse {
                "; tcp_tw_reuse lets them take ports in TIME_WAIT here"
            } else {
                ""
            }
        );
        palette.end(out);
        out.push('\n');
    }
    for c in &r.per_request {
        out.push_str("  ");
        palette.start(Hue::Warning, out);
        let _ = write!(
            out,
            "! pid {} ({}) opens {:.0} connections/s to {}, {:.0}% of them short: a \
             connection per request; keep-alive or a connection pool would end this churn",
            c.pid,
            escaped(&c.comm),
            c.per_sec,
            c.dest.remote,
            c.short_pct
        );
        palette.end(out);
        out.push('\n');
    }
    for s in &r.settings {
        let _ = writeln!(out, "  {s}");
    }
}

fn dest(o: &mut Obj<'_>, d: &Dest) {
    o.ip("saddr", d.local)
        .ip("daddr", d.remote.ip())
        .uint("dport", d.remote.port().into())
        .uint("netns", d.netns.into());
}

fn json(r: &Report, time: &str, out: &mut String) {
    let mut o = Obj::new(out, "timewait");
    o.name("time", time)
        .millis("interval_ms", r.interval_ns)
        .uint("entries", r.entries)
        .shown("entries_per_sec", format_args!("{:.1}", r.rate()))
        .uint("client_side", r.client_entries)
        .uint("server_side", r.server_entries)
        .uint("population", r.population)
        .opt("kernel_population", r.kernel_population, |o, k, v| {
            o.uint(k, v);
        })
        .uint("total_entries", r.total_entries)
        .uint("missed", r.missed)
        .array("by_process", &r.by_process, |o, row| {
            o.uint("pid", row.id.into())
                .string("comm", &row.comm)
                .shown("per_sec", format_args!("{:.1}", row.per_sec))
                .uint("time_wait", row.population);
        })
        .array("by_destination", &r.by_destination, |o, d| {
            dest(o, &d.dest);
            o.shown("per_sec", format_args!("{:.1}", d.per_sec))
                .uint("time_wait", d.time_wait)
                .uint("in_use", d.in_use);
        })
        .array("by_local_port", &r.by_local_port, |o, row| {
            o.uint("port", row.id.into())
                .shown("per_sec", format_args!("{:.1}", row.per_sec))
                .uint("time_wait", row.population);
        })
        .array("port_pressure", &r.pressure, |o, p| {
            dest(o, &p.dest);
            o.uint("held", p.held)
                .uint("range", p.range)
                .shown("percent", format_args!("{:.1}", p.percent))
                .uint("pid", p.pid.into())
                .string("comm", &p.comm)
                .bool("tw_reuse_applies", p.reuse);
        })
        .array("per_request", &r.per_request, |o, c| {
            o.uint("pid", c.pid.into())
                .string("comm", &c.comm)
                .ip("daddr", c.dest.remote.ip())
                .uint("dport", c.dest.remote.port().into())
                .shown("per_sec", format_args!("{:.1}", c.per_sec))
                .shown("short_percent", format_args!("{:.1}", c.short_pct));
        })
        .array("settings", &r.settings, |o, s| {
            o.string("note", s);
        })
        .end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::timewait::{PerRequest, Pressure};

    /// A report with both warnings, about process 7 named `comm`.
    fn warnings(comm: &str) -> Report {
        let dest = Dest {
            netns: 1,
            local: "127.0.0.1".parse().unwrap(),
            remote: "127.0.0.2:8080".parse().unwrap(),
        };
        Report {
            pressure: vec![Pressure {
                dest,
                held: 30000,
                range: 28232,
                percent: 100.0,
                pid: 7,
                comm: comm.into(),
                reuse: false,
            }],
            per_request: vec![PerRequest {
                pid: 7,
                comm: comm.into(),
                dest,
                per_sec: 500.0,
                short_pct: 100.0,
            }],
            ..Report::default()
        }
    }

    #[test]
    fn warnings_and_the_headline_in_colour() {
        let report = warnings("churn");
        let render = |palette| {
            let mut out = String::new();
            TimewaitView::new(Clock::with_offset(0), false, palette).report(&report, &mut out);
            out
        };
        let plain = render(Palette::OFF);
        assert!(!plain.contains('\x1b'));
        let coloured = render(Palette::ON);
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(lines[0].starts_with("\x1b[1m") && lines[0].ends_with("\x1b[0m"));
        assert!(lines[1].starts_with("  \x1b[31m! 127.0.0.1 -> 127.0.0.2:8080 holds"));
        assert!(lines[2].starts_with("  \x1b[1;33m! pid 7 (churn) opens 500"));
        assert!(lines[1].ends_with("\x1b[0m") && lines[2].ends_with("\x1b[0m"));
        // Colour wraps lines; it changes nothing else.
        assert_eq!(
            coloured
                .replace("\x1b[1m", "")
                .replace("\x1b[31m", "")
                .replace("\x1b[1;33m", "")
                .replace("\x1b[0m", ""),
            plain
        );
    }

    #[test]
    fn process_names_are_escaped() {
        use crate::{
            analysis::timewait::Row,
            escape::{FORGING, FORGING_SHOWN},
        };
        let report = Report {
            by_process: vec![Row {
                id: 7,
                comm: FORGING.into(),
                per_sec: 1.0,
                population: 1,
            }],
            ..warnings(FORGING)
        };
        let mut out = String::new();
        TimewaitView::new(Clock::with_offset(0), false, Palette::OFF).report(&report, &mut out);
        assert_eq!(out.matches(FORGING_SHOWN).count(), 3, "{out}");
        assert!(
            !out.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
            "{out:?}"
        );
    }
}
