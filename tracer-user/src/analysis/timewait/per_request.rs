//! Connection-per-request: one process opening short connections to one
//! place at a high rate.
use rustc_hash::FxHashMap;

use super::{Dest, Key, PerRequest, Role, Timewait, Totals, per_sec};

impl Timewait {
    pub(super) fn per_request(
        &self,
        deltas: &[(&Key, Totals)],
        interval_ns: u64,
    ) -> Vec<PerRequest> {
        let mut grouped: FxHashMap<(u32, Dest), Totals> = FxHashMap::default();
        for (key, d) in deltas {
            if key.role == Role::Client && key.pid != 0 {
                let g = grouped.entry((key.pid, key.destination())).or_default();
                g.closes += d.closes;
                g.short += d.short;
            }
        }
        let mut out: Vec<PerRequest> = grouped
            .into_iter()
            .filter_map(|((pid, dest), t)| {
                let rate = per_sec(t.closes, interval_ns);
                let short_pct = t.short as f64 * 100.0 / t.closes.max(1) as f64;
                (rate >= f64::from(self.settings.per_request_rate) && short_pct >= 90.0).then(
                    || PerRequest {
                        pid,
                        comm: self.comm(pid),
                        dest,
                        per_sec: rate,
                        short_pct,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| b.per_sec.total_cmp(&a.per_sec).then(a.pid.cmp(&b.pid)));
        out.truncate(self.settings.top);
        out
    }
}
