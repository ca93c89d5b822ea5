//! Kernel timestamps (CLOCK_MONOTONIC) to wall-clock text, formatted fast:
//! the date and time down to the second are cached, only the fraction is
//! formatted per event.
use chrono::{DateTime, Local, Utc};
use nix::time::{ClockId, clock_gettime};

/// Maps monotonic nanoseconds to wall-clock nanoseconds since the epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, in nanoseconds, taken once.
    offset_ns: i128,
}

impl Clock {
    /// The running system's clocks, read now.
    pub fn system() -> Clock {
        let ns = |id| {
            let ts = clock_gettime(id).expect("clock_gettime cannot fail for standard clocks");
            ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128
        };
        let mono = ns(ClockId::CLOCK_MONOTONIC);
        let real = ns(ClockId::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset, for tests.
    pub fn with_offset(offset_ns: i128) -> Clock {
        Clock { offset_ns }
    }

    /// CLOCK_MONOTONIC now, in nanoseconds: the kernel's event clock.
    pub fn mono_now(&self) -> u64 {
        mono_now()
    }

    /// Wall-clock (seconds, nanoseconds) since the epoch.
    pub fn wall(&self, mono_ns: u64) -> (i64, u32) {
        let wall = mono_ns as i128 + self.offset_ns;
        (
            wall.div_euclid(1_000_000_000) as i64,
            wall.rem_euclid(1_000_000_000) as u32,
        )
    }
}

/// `d` in nanoseconds, as events count time (saturating at `u64::MAX`,
/// 584 years).
pub fn nanos(d: std::time::Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

/// CLOCK_MONOTONIC now, in nanoseconds: the kernel's event clock.
pub fn mono_now() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// How a timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `2026-11-25T14:55:01.123456789Z`
    Rfc3339Utc,
    /// `14:55:01.123456`, local time
    LocalTime,
}

/// Formats timestamps, caching the part that changes once a second.
pub struct TimeFormatter {
    clock: Clock,
    style: Style,
    cached_sec: Option<i64>,
    prefix: String,
}

impl TimeFormatter {
    pub fn new(clock: Clock, style: Style) -> TimeFormatter {
        TimeFormatter {
            clock,
            style,
            cached_sec: None,
            prefix: String::new(),
        }
    }

    /// Appends the formatted time of `mono_ns` to `out`.
    pub fn write(&mut self, mono_ns: u64, out: &mut String) {
        use std::fmt::Write as _;
        let (sec, nsec) = self.clock.wall(mono_ns);
        if self.cached_sec != Some(sec) {
            let utc = DateTime::<Utc>::from_timestamp(sec, 0).unwrap_or_default();
            self.prefix = match self.style {
                Style::Rfc3339Utc => utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
                Style::LocalTime => utc.with_timezone(&Local).format("%H:%M:%S").to_string(),
            };
            self.cached_sec = Some(sec);
        }
        out.push_str(&self.prefix);
        let _ = match self.style {
            Style::Rfc3339Utc => write!(out, ".{nsec:09}Z"),
            Style::LocalTime => write!(out, ".{:06}", nsec / 1000),
        };
    }
}

/// The RFC 3339 (UTC, nanoseconds) text of `mono_ns`, for a line written
/// once (a summary, a table), where no formatter is kept.
pub fn rfc3339(clock: Clock, mono_ns: u64) -> String {
    let mut out = String::new();
    TimeFormatter::new(clock, Style::Rfc3339Utc).write(mono_ns, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_nanoseconds() {
        // 2026-11-25T14:55:01Z is 1_795_618_501 s after the epoch.
        let clock = Clock::with_offset(1_795_618_501 * 1_000_000_000 - 5_000_000_000);
        let mut f = TimeFormatter::new(clock, Style::Rfc3339Utc);
        let mut out = String::new();
        f.write(5_000_000_007, &mut out);
        assert_eq!(out, "2026-11-25T14:55:01.000000007Z");
        out.clear();
        f.write(6_123_456_789, &mut out);
        assert_eq!(out, "2026-11-25T14:55:02.123456789Z");
    }

    #[test]
    fn wall_handles_offsets_below_the_epoch() {
        let clock = Clock::with_offset(-1_500_000_000);
        assert_eq!(clock.wall(1_000_000_000), (-1, 500_000_000));
    }
}
