//! What the loader, the tests and xtask read from procfs alike.

/// The `tw` count on `/proc/net/sockstat`'s `TCP:` line: the TIME_WAIT
/// sockets of the reader's network namespace.
pub fn sockstat_time_waits(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "tw")?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tcp_lines_tw() {
        let sockstat = "sockets: used 190\nTCP: inuse 6 orphan 0 tw 131072 alloc 9 mem 2\n\
                        UDP: inuse 3 mem 4\n";
        assert_eq!(sockstat_time_waits(sockstat), Some(131072));
        assert_eq!(sockstat_time_waits("UDP: inuse 3\n"), None);
        assert_eq!(sockstat_time_waits("TCP: inuse 6 tw x\n"), None);
    }
}
