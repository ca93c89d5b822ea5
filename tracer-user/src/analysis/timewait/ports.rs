//! Ephemeral-port pressure: each destination's headroom, the ones past
//! the threshold, and what the host's settings imply.
use rustc_hash::FxHashMap;

use super::{Dest, DestRow, Headroom, Key, Pressure, Role, Timewait, per_sec, sum_by};

impl Timewait {
    /// Every destination, busiest first.
    pub(super) fn destinations(
        &self,
        by_key: &FxHashMap<&Key, (u64, u64)>,
        in_use: &FxHashMap<Dest, u64>,
        interval_ns: u64,
    ) -> Vec<DestRow> {
        let mut grouped = sum_by(by_key, |k| {
            (k.role == Role::Client).then(|| k.destination())
        });
        for dest in in_use.keys() {
            grouped.entry(*dest).or_default();
        }
        let mut rows: Vec<DestRow> = grouped
            .into_iter()
            .map(|(dest, (entries, time_wait))| {
                let in_use = in_use.get(&dest).copied().unwrap_or(0);
                DestRow {
                    dest,
                    per_sec: per_sec(entries, interval_ns),
                    time_wait,
                    in_use,
                    ports: self.headroom(&dest, time_wait, in_use, interval_ns),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.per_sec
                .total_cmp(&a.per_sec)
                .then((b.time_wait + b.in_use).cmp(&(a.time_wait + a.in_use)))
                .then(a.dest.cmp(&b.dest))
        });
        rows
    }

    /// `dest`'s headroom with `time_wait` and `in_use` ports held now.
    pub(super) fn headroom(
        &self,
        dest: &Dest,
        time_wait: u64,
        in_use: u64,
        interval_ns: u64,
    ) -> Headroom {
        let range = self.host.range_size();
        let held = time_wait + in_use;
        let (tw_before, in_use_before) = self.last_held.get(dest).copied().unwrap_or_default();
        let before = tw_before + in_use_before.unwrap_or(in_use);
        let grown = held as f64 - before as f64;
        let rate = grown * 1e9 / interval_ns.max(1) as f64;
        Headroom {
            held,
            range,
            percent: held as f64 * 100.0 / range as f64,
            runs_out_in_s: (rate > 0.0).then(|| range.saturating_sub(held) as f64 / rate),
            tw_reuse: self.host.reuses_towards(dest.remote.ip()),
        }
    }

    /// The destinations (of `all`) holding more than the threshold, with
    /// the process holding most of each.
    pub(super) fn pressure(
        &self,
        by_key: &FxHashMap<&Key, (u64, u64)>,
        all: &[DestRow],
    ) -> Vec<Pressure> {
        let threshold = f64::from(self.settings.threshold_pct);
        let mut out: Vec<Pressure> = all
            .iter()
            .filter(|row| row.ports.percent > threshold)
            .map(|row| {
                let pid = by_key
                    .iter()
                    .filter(|(key, _)| key.role == Role::Client && key.destination() == row.dest)
                    .max_by_key(|(key, (_, population))| (*population, std::cmp::Reverse(key.pid)))
                    .map_or(0, |(key, _)| key.pid);
                Pressure {
                    dest: row.dest,
                    ports: row.ports,
                    pid,
                    comm: self.comm(pid),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.ports
                .percent
                .total_cmp(&a.ports.percent)
                .then(a.dest.cmp(&b.dest))
        });
        out
    }

    pub(super) fn settings_notes(&self, population: u64) -> Vec<String> {
        let mut notes = Vec::new();
        let per_dest = self.host.range_size() / 60;
        notes.push(match self.host.tw_reuse {
            Some(0) => format!(
                "tcp_tw_reuse=0: ports in TIME_WAIT are not reused; one destination runs out \
                 of local ports above about {per_dest} new connections/s"
            ),
            Some(1) => "tcp_tw_reuse=1: new outgoing connections may take ports in TIME_WAIT \
                        (with TCP timestamps), so TIME_WAIT alone does not exhaust ports"
                .into(),
            Some(2) => format!(
                "tcp_tw_reuse=2: ports in TIME_WAIT are reused towards loopback only; another \
                 destination runs out of local ports above about {per_dest} new connections/s"
            ),
            Some(other) => format!("tcp_tw_reuse={other}"),
            None => "tcp_tw_reuse: unknown".into(),
        });
        if let Some(max) = self.host.max_tw_buckets {
            notes.push(format!(
                "tcp_max_tw_buckets={max}: {population} in use ({:.0}%); beyond it closes skip \
                 TIME_WAIT (TcpExtTCPTimeWaitOverflow), risking stray segments on reused ports",
                population as f64 * 100.0 / max.max(1) as f64
            ));
        }
        notes
    }
}
