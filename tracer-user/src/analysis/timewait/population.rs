//! How many TIME_WAIT sockets exist: entries of the last 60 s, and those
//! that predate counting, until their timers fire.
use rustc_hash::FxHashMap;

use super::{Key, Report, Role, Timewait, Totals};
use crate::track::TW_LEN_NS;

impl Timewait {
    pub(super) fn expire(&mut self, now_ns: u64) {
        while let Some((at, _, _)) = self.window.front() {
            if at + TW_LEN_NS > now_ns {
                break;
            }
            let Some((_, key, n)) = self.window.pop_front() else {
                break;
            };
            if let Some(left) = self.population.get_mut(&key) {
                *left = left.saturating_sub(n);
                if *left == 0 {
                    self.population.remove(&key);
                }
            }
        }
    }

    /// Those that predate counting and are still there at `now_ns`: each
    /// ends when its timer fires.
    pub(super) fn before_now(&self, now_ns: u64) -> Vec<(Key, u64)> {
        self.before
            .iter()
            .map(|(k, ends)| {
                let ended = ends.partition_point(|&end| end <= now_ns);
                (k.clone(), (ends.len() - ended) as u64)
            })
            .collect()
    }

    /// Each key's (entries this interval, population now), and the
    /// population in `report`: counted ones and those from `before`.
    pub(super) fn by_key<'a>(
        &'a self,
        report: &mut Report,
        deltas: &[(&'a Key, Totals)],
        before: &'a [(Key, u64)],
    ) -> FxHashMap<&'a Key, (u64, u64)> {
        report.population =
            self.population.values().sum::<u64>() + before.iter().map(|(_, n)| n).sum::<u64>();
        let mut by_key: FxHashMap<&Key, (u64, u64)> = FxHashMap::default();
        for (key, d) in deltas {
            by_key.entry(key).or_default().0 += d.time_waits;
        }
        for (key, n) in self
            .population
            .iter()
            .chain(before.iter().map(|(k, n)| (k, n)))
        {
            by_key.entry(key).or_default().1 += n;
            match key.role {
                Role::Server => report.server_population += n,
                _ => report.client_population += n,
            }
        }
        by_key
    }
}
