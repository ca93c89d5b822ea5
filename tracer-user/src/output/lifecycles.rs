//! The lifecycles table (`analyze --report lifecycles`): text or one
//! `lifecycles` JSON line.
use std::fmt::Write as _;

use super::{human_ns, jsonw::Obj};
use crate::{
    analysis::{lifecycles::Lifecycles, timewait::Place},
    escape::escaped,
};

const COLUMNS: &str = "COMM            WHERE                          CONNS    FAILED  RESET   TIME_WAIT  MEDIAN     P99        MAX        TX_KB    RX_KB";

/// The table; as JSON, a line at `time` (RFC 3339).
pub fn lifecycles(l: &Lifecycles, json: bool, time: &str, out: &mut String) {
    if json {
        lifecycles_json(l, time, out);
    } else {
        lifecycles_text(l, out);
    }
}

fn lifecycles_json(l: &Lifecycles, time: &str, out: &mut String) {
    Obj::new(out, "lifecycles")
        .name("time", time)
        .array("rows", l.rows(), |o, (key, row)| {
            let (side, addr) = match key.place {
                Place::To(addr) => ("client", addr),
                Place::Served(addr) => ("server", addr),
            };
            o.opt("comm", key.known.then_some(&key.comm), |o, k, c| {
                o.string(k, c);
            })
            .name("side", side)
            .ip("addr", addr.ip())
            .uint("port", addr.port().into())
            .uint("connections", row.connections)
            .uint("failed", row.failed)
            .uint("reset", row.reset)
            .uint("time_wait", row.time_wait)
            .uint("bytes_sent", row.bytes_sent)
            .uint("bytes_received", row.bytes_received);
            let d = row.durations();
            for (i, key) in ["median_ms", "p99_ms", "max_ms"].into_iter().enumerate() {
                o.opt(key, d, |o, k, d| {
                    o.millis(k, [d.0, d.1, d.2][i]);
                });
            }
        })
        .end();
}

fn lifecycles_text(l: &Lifecycles, out: &mut String) {
    out.push_str(COLUMNS);
    out.push('\n');
    for (key, row) in l.rows() {
        let _ = write!(
            out,
            "{:<15} {:<30} {:<8} {:<7} {:<7} {:<10} ",
            escaped(&key.comm),
            key.place.to_string(),
            row.connections,
            row.failed,
            row.reset,
            row.time_wait
        );
        if let Some((median, p99, max)) = row.durations() {
            let _ = write!(
                out,
                "{:<10} {:<10} {:<10} ",
                human_ns(median),
                human_ns(p99),
                human_ns(max)
            );
        }
        let _ = writeln!(
            out,
            "{:<8} {}",
            row.bytes_sent / 1024,
            row.bytes_received / 1024
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        escape::{FORGING, FORGING_SHOWN},
        event::{Detail, Event, Proto},
        track::{Close, Record},
    };

    #[test]
    fn process_names_are_escaped() {
        let owner = Event::sample(
            0,
            42,
            FORGING,
            Proto::Tcp,
            Detail::Release {
                addr: "0.0.0.0:0".parse().unwrap(),
            },
        )
        .owner;
        let mut l = Lifecycles::default();
        l.observe(&Record::Close(Close::sample(
            1,
            owner,
            "127.0.0.1:40000",
            "127.0.0.1:80",
        )));
        let mut out = String::new();
        lifecycles(&l, false, "", &mut out);
        assert!(out.contains(FORGING_SHOWN), "{out}");
        assert!(
            !out.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
            "{out:?}"
        );
    }
}
