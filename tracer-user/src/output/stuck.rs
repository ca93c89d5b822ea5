//! `socktrace stuck`: the table of connections stuck in CLOSE_WAIT,
//! FIN_WAIT2 or SYN_SENT beyond the threshold, every `--interval` and at
//! the end, with their owners and ages; at the end, one line per process
//! that holds some on standard error. Text or JSON lines.
use std::fmt::Write as _;

use super::{
    Render, human_ns,
    json::{common, endpoints},
    jsonw::Obj,
    text::owner_columns,
};
use crate::{
    analysis::stuck::Stuck,
    clock::{Clock, Style, TimeFormatter},
    event::Proto,
    track::Record,
};

const COLUMNS: &str =
    "STATE       AGE         PID     COMM            LOCAL                    REMOTE";

pub struct StuckView {
    analysis: Stuck,
    json: bool,
    time: TimeFormatter,
    scratch: String,
}

impl StuckView {
    pub fn new(clock: Clock, analysis: Stuck, json: bool) -> StuckView {
        let style = if json {
            Style::Rfc3339Utc
        } else {
            Style::LocalTime
        };
        StuckView {
            analysis,
            json,
            time: TimeFormatter::new(clock, style),
            scratch: String::new(),
        }
    }

    fn table(&mut self, now_ns: u64, out: &mut String) {
        self.scratch.clear();
        self.time.write(now_ns, &mut self.scratch);
        let stuck = self.analysis.stuck(now_ns);
        if self.json {
            Obj::new(out, "stuck")
                .name("time", &self.scratch)
                .millis("threshold_ms", self.analysis.threshold_ns())
                .array("rows", stuck, |o, s| {
                    let w = s.waiting;
                    common(o, &w.owner, Proto::Tcp, &w.local, w.netns, Some(s.sock));
                    endpoints(o, &w.local, &w.remote);
                    o.name("state", w.state.name())
                        .millis("age_ms", s.age_ns)
                        .bool("predates_start", w.predates);
                })
                .end();
            return;
        }
        let _ = writeln!(
            out,
            "{} {} stuck over {}",
            self.scratch.trim_end(),
            stuck.len(),
            human_ns(self.analysis.threshold_ns())
        );
        if stuck.is_empty() {
            return;
        }
        out.push_str(COLUMNS);
        out.push('\n');
        for s in stuck {
            let w = s.waiting;
            // At least this old: it was so when we started.
            let at_least = if w.predates { ">" } else { "" };
            let _ = write!(
                out,
                "{:<11} {:<11}",
                w.state.name(),
                format!("{at_least}{}", human_ns(s.age_ns))
            );
            owner_columns(&w.owner, out);
            let _ = writeln!(out, "{:<24} {}", w.local, w.remote);
        }
    }
}

impl Render for StuckView {
    fn record(&mut self, record: &Record, _out: &mut String) {
        self.analysis.observe(record);
    }

    fn tick(&mut self, now_ns: u64, out: &mut String) {
        self.table(now_ns, out);
    }

    fn finish(&mut self, now_ns: u64, out: &mut String) {
        self.table(now_ns, out);
        for row in self.analysis.by_process(now_ns) {
            let who = if row.owner.is_known() {
                format!("pid {} ({})", row.owner.pid, row.owner.comm)
            } else {
                "owner unknown".into()
            };
            say!(
                "socktrace: stuck: {who}: {} in {}, the oldest for {}",
                row.count,
                row.state.name(),
                human_ns(row.oldest_ns)
            );
        }
    }
}
