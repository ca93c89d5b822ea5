//! Service names for ports, from services(5).

/// The port of service `name` (TCP or UDP) in /etc/services.
pub fn etc_services(name: &str) -> Option<u16> {
    let table = std::fs::read_to_string("/etc/services").ok()?;
    service_port(&table, name)
}

/// `name` (or an alias) in a services(5) table.
pub(super) fn service_port(table: &str, name: &str) -> Option<u16> {
    table.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let service = fields.next()?;
        let (port, proto) = fields.next()?.split_once('/')?;
        let named = service == name || fields.any(|alias| alias == name);
        (named && matches!(proto, "tcp" | "udp"))
            .then(|| port.parse().ok())
            .flatten()
    })
}
