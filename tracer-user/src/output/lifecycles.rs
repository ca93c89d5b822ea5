//! The lifecycles table (`analyze --report lifecycles`): text or one
//! `lifecycles` JSON line.
use std::fmt::Write as _;

use super::{human_ns, jsonw::Obj};
use crate::{
    analysis::{lifecycles::Lifecycles, timewait::Place},
    escape::escaped,
};

const COLUMNS: &str = "COMM            WHERE                          CONNS    FAILED  RESET   TIME_WAIT  MEDIAN     P99        MAX        CONN_MED   CONN_P99   RETRANS  TX_KB    RX_KB";

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
            let c = row.connects();
            for (i, key) in ["connect_median_ms", "connect_p99_ms"]
                .into_iter()
                .enumerate()
            {
                o.opt(key, c, |o, k, c| {
                    o.millis(k, [c.0, c.1][i]);
                });
            }
            o.uint("retransmits", row.retransmits)
                .object("reset_reasons", |o| {
                    for (why, n) in &row.reset_reasons {
                        o.uint(why, *n);
                    }
                });
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
        let shown = |ns: Option<u64>| ns.map_or("-".into(), human_ns);
        let d = row.durations();
        let c = row.connects();
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<10} {:<10} {:<10} {:<8} {:<8} {}",
            shown(d.map(|d| d.0)),
            shown(d.map(|d| d.1)),
            shown(d.map(|d| d.2)),
            shown(c.map(|c| c.0)),
            shown(c.map(|c| c.1)),
            row.retransmits,
            row.bytes_sent / 1024,
            row.bytes_received / 1024
        );
    }
    resets_text(l, out);
}

/// Below the table, where any were sent: the RSTs sent by reason.
fn resets_text(l: &Lifecycles, out: &mut String) {
    let rows: Vec<_> = l
        .rows()
        .into_iter()
        .flat_map(|(key, row)| row.reset_reasons.iter().map(move |(why, n)| (key, why, n)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "RESETS SENT BY  WHERE                          REASON                         COUNT\n",
    );
    for (key, why, n) in rows {
        let _ = writeln!(
            out,
            "{:<15} {:<30} {:<30} {n}",
            escaped(&key.comm),
            key.place.to_string(),
            escaped(why.as_ref()),
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

    #[test]
    fn resets_sent_are_counted_by_reason() {
        let owner = Event::sample(
            0,
            42,
            "nginx",
            Proto::Tcp,
            Detail::Release {
                addr: "0.0.0.0:0".parse().unwrap(),
            },
        )
        .owner;
        let mut l = Lifecycles::default();
        for why in ["tcp_abort_on_close", "tcp_abort_on_close", "tcp_state"] {
            let mut c = Close::sample(1, owner.clone(), "127.0.0.1:40000", "127.0.0.1:80");
            c.reset_by = Some(crate::track::Side::Local);
            c.reset_reason = Some(why.into());
            l.observe(&Record::Close(c));
        }
        l.observe(&Record::Close(Close::sample(
            2,
            owner,
            "127.0.0.1:40001",
            "127.0.0.1:80",
        )));
        let mut out = String::new();
        lifecycles(&l, true, "t", &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["rows"][0]["reset_reasons"],
            serde_json::json!({"tcp_abort_on_close": 2, "tcp_state": 1}),
            "{out}"
        );
        let mut out = String::new();
        lifecycles(&l, false, "", &mut out);
        let lines: Vec<&str> = out.lines().skip(2).collect();
        assert!(lines[0].starts_with("RESETS SENT BY"), "{out}");
        let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            words(lines[1]),
            ["nginx", "to", "127.0.0.1:80", "tcp_abort_on_close", "2"]
        );
        assert_eq!(
            words(lines[2]),
            ["nginx", "to", "127.0.0.1:80", "tcp_state", "1"]
        );
    }
}
