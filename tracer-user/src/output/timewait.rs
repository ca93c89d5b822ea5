//! `socktrace timewait` reports: a block of tables per interval for people,
//! one `timewait` JSON line per interval for programs.
use std::fmt::Write as _;

use super::{Hue, Palette, json::netns, jsonw::Obj};
use crate::{
    analysis::timewait::{Dest, Headroom, Report},
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
    headline(r, time, palette, out);
    processes(r, out);
    destinations(r, out);
    local_ports(r, out);
    pressure(r, palette, out);
    per_request(r, palette, out);
    for s in &r.settings {
        let _ = writeln!(out, "  {s}");
    }
}

/// The interval's rate and population, in the heading colour.
fn headline(r: &Report, time: &str, palette: Palette, out: &mut String) {
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
}

fn processes(r: &Report, out: &mut String) {
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
}

fn destinations(r: &Report, out: &mut String) {
    if !r.by_destination.is_empty() {
        out.push_str(
            "  DESTINATION (client side)                          ENTRIES/S  TIME_WAIT  IN_USE  \
             PORTS_HELD/RANGE        RUNS_OUT\n",
        );
        for d in &r.by_destination {
            let h = &d.ports;
            let held = format!("{}/{} {:.1}%", h.held, h.range, h.percent);
            let runs_out = h.runs_out_in_s.map_or("-".into(), human_secs);
            let _ = writeln!(
                out,
                "  {:<50} {:>9.0} {:>10} {:>7}  {held:<23} {runs_out}{}",
                dest_name(&d.dest),
                d.per_sec,
                d.time_wait,
                d.in_use,
                if h.tw_reuse { " *" } else { "" }
            );
        }
        if r.by_destination.iter().any(|d| d.ports.tw_reuse) {
            out.push_str("  * tcp_tw_reuse lets new connections there take ports in TIME_WAIT\n");
        }
    }
}

fn local_ports(r: &Report, out: &mut String) {
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
}

/// A warning per destination short of ephemeral ports.
fn pressure(r: &Report, palette: Palette, out: &mut String) {
    for p in &r.pressure {
        out.push_str("  ");
        palette.start(Hue::Failure, out);
        let _ = write!(
            out,
            "! {} holds {:.0}% of the local ports ({} of {}), most by pid {} ({}): new \
             connections there fail with EADDRNOTAVAIL once none is free{}",
            dest_name(&p.dest),
            p.ports.percent,
            p.ports.held,
            p.ports.range,
            p.pid,
            escaped(&p.comm),
            if p.ports.tw_reuse {
                "; tcp_tw_reuse lets them take ports in TIME_WAIT here"
            } else {
                ""
            }
        );
        palette.end(out);
        out.push('\n');
    }
}

/// A warning per process opening a connection per request.
fn per_request(r: &Report, palette: Palette, out: &mut String) {
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
}

/// When ports run out, for people: `now`, `45 s`, `12 min`, `3.5 h`.
fn human_secs(s: f64) -> String {
    match s {
        ..0.5 => "now".into(),
        ..119.5 => format!("{s:.0} s"),
        ..7170.0 => format!("{:.0} min", s / 60.0),
        _ => format!("{:.1} h", s / 3600.0),
    }
}

/// A destination's ephemeral-port headroom.
fn headroom(o: &mut Obj<'_>, h: &Headroom) {
    o.uint("held", h.held)
        .uint("range", h.range)
        .decimal("percent", h.percent)
        .opt("runs_out_in_s", h.runs_out_in_s, |o, k, s| {
            o.decimal(k, s);
        })
        .bool("tw_reuse_applies", h.tw_reuse);
}

fn dest(o: &mut Obj<'_>, d: &Dest) {
    o.ip("saddr", d.local)
        .ip("daddr", d.remote.ip())
        .uint("dport", d.remote.port().into());
    netns(o, d.netns);
}

/// A row's process; pid 0 is the analysis's row for owners not known
/// (sockets older than us, unowned ends): `null` both.
fn process(o: &mut Obj<'_>, pid: u32, comm: &str) {
    match pid {
        0 => o.null("pid").null("comm"),
        pid => o.uint("pid", pid.into()).string("comm", comm),
    };
}

fn json(r: &Report, time: &str, out: &mut String) {
    let mut o = Obj::new(out, "timewait");
    o.name("time", time)
        .millis("interval_ms", r.interval_ns)
        .uint("entries", r.entries)
        .decimal("entries_per_sec", r.rate())
        .uint("client_side", r.client_entries)
        .uint("server_side", r.server_entries)
        .uint("population", r.population)
        .opt("kernel_population", r.kernel_population, |o, k, v| {
            o.uint(k, v);
        })
        .uint("total_entries", r.total_entries)
        .uint("missed", r.missed)
        .array("by_process", &r.by_process, |o, row| {
            process(o, row.id, &row.comm);
            o.decimal("per_sec", row.per_sec)
                .uint("time_wait", row.population);
        })
        .array("by_destination", &r.by_destination, |o, d| {
            dest(o, &d.dest);
            o.decimal("per_sec", d.per_sec)
                .uint("time_wait", d.time_wait)
                .uint("in_use", d.in_use);
            headroom(o, &d.ports);
        })
        .array("by_local_port", &r.by_local_port, |o, row| {
            o.uint("port", row.id.into())
                .decimal("per_sec", row.per_sec)
                .uint("time_wait", row.population);
        })
        .array("port_pressure", &r.pressure, |o, p| {
            dest(o, &p.dest);
            headroom(o, &p.ports);
            process(o, p.pid, &p.comm);
        })
        .array("per_request", &r.per_request, |o, c| {
            // Only processes known by pid are flagged.
            o.uint("pid", c.pid.into())
                .string("comm", &c.comm)
                .ip("daddr", c.dest.remote.ip())
                .uint("dport", c.dest.remote.port().into())
                .decimal("per_sec", c.per_sec)
                .decimal("short_percent", c.short_pct);
        })
        .array("settings", &r.settings, |o, s| {
            o.string("note", s);
        })
        .end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::timewait::{DestRow, Headroom, PerRequest, Pressure, Row};

    /// A report with a row of every kind.
    fn sample() -> Report {
        let dest = Dest {
            netns: 0,
            local: "127.0.0.1".parse().unwrap(),
            remote: "127.0.0.2:8080".parse().unwrap(),
        };
        let row = |id, comm: &str| Row {
            id,
            comm: comm.into(),
            per_sec: 300.25,
            population: 9,
        };
        Report {
            now_ns: 1_000_000_000,
            interval_ns: 1_000_000_000,
            entries: 1993,
            by_process: vec![row(7, "churn"), row(0, "(unknown)")],
            by_destination: vec![DestRow {
                dest,
                per_sec: 299.96,
                time_wait: 5,
                in_use: 1,
                ports: Headroom {
                    held: 6,
                    range: 10,
                    percent: 60.0,
                    runs_out_in_s: Some(1.25),
                    tw_reuse: true,
                },
            }],
            by_local_port: vec![row(8080, "")],
            pressure: vec![Pressure {
                dest,
                ports: Headroom {
                    held: 6,
                    range: 10,
                    percent: 60.0,
                    runs_out_in_s: None,
                    tw_reuse: false,
                },
                pid: 0,
                comm: "(unknown)".into(),
            }],
            per_request: vec![PerRequest {
                pid: 7,
                comm: "churn".into(),
                dest,
                per_sec: 12.5,
                short_pct: 100.0,
            }],
            ..Report::default()
        }
    }

    #[test]
    fn text_shows_each_destinations_headroom() {
        let mut report = sample();
        report.by_destination.push(DestRow {
            ports: Headroom {
                runs_out_in_s: None,
                tw_reuse: false,
                ..report.by_destination[0].ports
            },
            ..report.by_destination[0].clone()
        });
        let mut out = String::new();
        TimewaitView::new(Clock::with_offset(0), false, Palette::OFF).report(&report, &mut out);
        let table: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("  DESTINATION"))
            .take(4)
            .collect();
        assert_eq!(
            table,
            [
                "  DESTINATION (client side)                          ENTRIES/S  TIME_WAIT  \
                 IN_USE  PORTS_HELD/RANGE        RUNS_OUT",
                "  127.0.0.1 -> 127.0.0.2:8080                              300          5       \
                 1  6/10 60.0%              1 s *",
                "  127.0.0.1 -> 127.0.0.2:8080                              300          5       \
                 1  6/10 60.0%              -",
                "  * tcp_tw_reuse lets new connections there take ports in TIME_WAIT",
            ]
        );
        let when: Vec<String> = [0.2, 44.6, 600.0, 7200.0].map(human_secs).into();
        assert_eq!(when, ["now", "45 s", "10 min", "2.0 h"]);
    }

    #[test]
    fn json_numbers_are_numbers_and_unknown_owners_null() {
        let report = sample();
        let mut out = String::new();
        TimewaitView::new(Clock::with_offset(0), true, Palette::OFF).report(&report, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["entries_per_sec"], 1993.0);
        assert_eq!(v["by_process"][0]["per_sec"], 300.2);
        assert_eq!(
            (&v["by_process"][1]["pid"], &v["by_process"][1]["comm"]),
            (&serde_json::Value::Null, &serde_json::Value::Null)
        );
        assert_eq!(v["by_destination"][0]["per_sec"], 300.0);
        assert_eq!(v["by_destination"][0]["netns"], serde_json::Value::Null);
        assert_eq!(v["by_local_port"][0]["per_sec"], 300.2);
        assert_eq!(
            v["by_destination"][0],
            serde_json::json!({"saddr": "127.0.0.1", "daddr": "127.0.0.2", "dport": 8080,
                "netns": null, "per_sec": 300.0, "time_wait": 5, "in_use": 1, "held": 6,
                "range": 10, "percent": 60.0, "runs_out_in_s": 1.2, "tw_reuse_applies": true})
        );
        assert_eq!(v["port_pressure"][0]["percent"], 60.0);
        assert_eq!(
            v["port_pressure"][0]["runs_out_in_s"],
            serde_json::Value::Null
        );
        assert_eq!(v["port_pressure"][0]["pid"], serde_json::Value::Null);
        assert_eq!(
            (
                &v["per_request"][0]["per_sec"],
                &v["per_request"][0]["short_percent"]
            ),
            (&12.5.into(), &100.0.into())
        );
    }

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
                ports: Headroom {
                    held: 30000,
                    range: 28232,
                    percent: 100.0,
                    runs_out_in_s: Some(0.0),
                    tw_reuse: false,
                },
                pid: 7,
                comm: comm.into(),
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
