//! What the host's settings and counters say about TIME_WAIT (procfs).
use std::fs;

use crate::analysis::timewait::Host;

/// The settings that decide what TIME_WAIT costs; unreadable ones are
/// `None` (the port range falls back to Linux's default).
pub fn settings() -> Host {
    let read = |name: &str| fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok();
    let port_range = read("ip_local_port_range")
        .and_then(|s| parse_range(&s))
        .unwrap_or((32768, 60999));
    Host {
        port_range,
        tw_reuse: read("tcp_tw_reuse").and_then(|s| s.trim().parse().ok()),
        max_tw_buckets: read("tcp_max_tw_buckets").and_then(|s| s.trim().parse().ok()),
    }
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse);
    match (it.next()?, it.next()?) {
        (Ok(lo), Ok(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// TIME_WAIT sockets in our network namespace now (`/proc/net/sockstat`).
pub fn time_wait_count() -> Option<u64> {
    tracer_common::sockstat_time_waits(&fs::read_to_string("/proc/net/sockstat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_procfs() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("61000 1024"), None);
        assert_eq!(parse_range("x"), None);
    }
}
