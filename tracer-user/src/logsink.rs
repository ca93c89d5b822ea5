//! Events where operators already look: the systemd journal (`--journal`,
//! structured `SOCKTRACE_*` fields as bcc's `tcpstates -Y` writes) and
//! syslog (`--syslog`, RFC 5424 with the same fields as structured data).
//! One datagram per record: convenient, not cheap (see README).
use std::{collections::BTreeMap, path::Path};

use libsystemd::logging::{Priority, journal_send};
use syslog::{Formatter5424, Logger, LoggerBackend};

use crate::{
    escape::escape,
    event::{Detail, Event},
    track::{Close, Record},
};

/// How loud a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    /// A failure, a reset or lost events.
    Warning,
}

/// One record as a log entry: a sentence for people (names escaped) and
/// named fields (raw).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub level: Level,
    pub message: String,
    /// Lower-case names (`old_state`); the journal upper-cases them.
    pub fields: Vec<(&'static str, String)>,
}

/// The entry for `record`, if it is one that is logged.
pub fn entry(record: &Record) -> Option<Entry> {
    match record {
        Record::Event(e) => Some(event(e)),
        Record::Close(c) => Some(close(c)),
        Record::Loss(k, _) => Some(Entry {
            level: Level::Warning,
            message: format!(
                "lost events: {} (ring buffer full), {} (another BPF program was running)",
                k.ring_drops, k.recursion_misses
            ),
            fields: vec![
                ("type", "loss".into()),
                ("ring_drops", k.ring_drops.to_string()),
                ("recursion_misses", k.recursion_misses.to_string()),
            ],
        }),
        Record::Existing(..) | Record::Queues(..) => None,
    }
}

fn owner_fields(e_type: &'static str, owner: &crate::event::Owner) -> Vec<(&'static str, String)> {
    let mut fields = vec![("type", e_type.to_string())];
    if owner.is_known() {
        fields.push(("pid", owner.pid.to_string()));
        fields.push(("comm", owner.comm.as_str().into_owned()));
        fields.push(("uid", owner.uid.to_string()));
    }
    fields
}

fn who(owner: &crate::event::Owner) -> String {
    if owner.is_known() {
        format!("{} ({})", owner.comm, owner.pid)
    } else {
        "-".into()
    }
}

fn event(e: &Event) -> Entry {
    let mut fields = owner_fields(e.type_name(), &e.owner);
    fields.push(("proto", e.proto.to_string()));
    if let Some(sock) = e.sock {
        fields.push(("sock", sock.to_string()));
    }
    let mut level = Level::Info;
    let message = match &e.detail {
        Detail::State {
            local,
            remote,
            old,
            new,
            ..
        } => {
            fields.extend([
                ("saddr", local.ip().to_string()),
                ("sport", local.port().to_string()),
                ("daddr", remote.ip().to_string()),
                ("dport", remote.port().to_string()),
                ("old_state", old.name().to_string()),
                ("new_state", new.name().to_string()),
            ]);
            format!("{} {local} -> {remote} {old} -> {new}", who(&e.owner))
        }
        Detail::Bind { addr, errno, .. } | Detail::Listen { addr, errno, .. } => {
            fields.push(("addr", addr.ip().to_string()));
            fields.push(("port", addr.port().to_string()));
            let verb = e.type_name();
            match errno.name() {
                Some(name) => {
                    level = Level::Warning;
                    fields.push(("error", name.clone()));
                    format!("{} {verb} {addr} failed: {name}", who(&e.owner))
                }
                None => format!("{} {verb} {addr}", who(&e.owner)),
            }
        }
        Detail::Release { addr } => {
            fields.push(("addr", addr.ip().to_string()));
            fields.push(("port", addr.port().to_string()));
            format!("{} closed {addr} (bound)", who(&e.owner))
        }
    };
    Entry {
        level,
        message,
        fields,
    }
}

fn close(c: &Close) -> Entry {
    let mut fields = owner_fields("close", &c.owner);
    fields.extend([
        ("proto", c.proto.to_string()),
        ("sock", c.sock.to_string()),
        ("saddr", c.local.ip().to_string()),
        ("sport", c.local.port().to_string()),
        ("daddr", c.remote.ip().to_string()),
        ("dport", c.remote.port().to_string()),
        ("duration_us", (c.duration_ns / 1000).to_string()),
        ("time_wait", c.time_wait.to_string()),
        ("bytes_sent", c.bytes_sent.to_string()),
        ("bytes_received", c.bytes_received.to_string()),
    ]);
    let mut level = Level::Info;
    let how = match (c.failure, c.reset_by) {
        (Some(f), _) => {
            level = Level::Warning;
            fields.push(("failure", f.reason.name().to_string()));
            format!("failed: {}", f.reason.name())
        }
        (None, Some(side)) => {
            level = Level::Warning;
            fields.push(("reset_by", side.name().to_string()));
            match c.reset_reason.as_deref() {
                Some(why) => {
                    fields.push(("reset_reason", why.to_string()));
                    format!("reset by the {} side ({})", side.name(), escape(why))
                }
                None => format!("reset by the {} side", side.name()),
            }
        }
        (None, None) if c.time_wait => "closed, TIME_WAIT here".into(),
        (None, None) => "closed".into(),
    };
    let message = format!(
        "{} {} -> {} {how} after {:.3} ms",
        who(&c.owner),
        c.local,
        c.remote,
        c.duration_ns as f64 / 1e6
    );
    Entry {
        level,
        message,
        fields,
    }
}

/// Where entries go.
pub trait Sink {
    /// Sends one entry; a failure is returned for the caller to count.
    fn send(&mut self, entry: &Entry) -> Result<(), String>;
}

/// The systemd journal's native protocol.
pub struct Journal;

impl Sink for Journal {
    fn send(&mut self, entry: &Entry) -> Result<(), String> {
        let priority = match entry.level {
            Level::Info => Priority::Info,
            Level::Warning => Priority::Warning,
        };
        let fields = entry
            .fields
            .iter()
            .map(|(k, v)| (format!("SOCKTRACE_{}", k.to_ascii_uppercase()), v.as_str()))
            .chain([("SYSLOG_IDENTIFIER".to_string(), "socktrace")]);
        journal_send(priority, &entry.message, fields).map_err(|e| e.to_string())
    }
}

/// RFC 5424 over a local syslog socket.
pub struct Syslog {
    logger: Logger<LoggerBackend, Formatter5424>,
}

/// The structured-data id (32473 is the private enterprise number IANA
/// reserves for documentation and examples).
const SD_ID: &str = "socktrace@32473";

impl Syslog {
    pub fn open(socket: &Path) -> Result<Syslog, String> {
        let formatter = Formatter5424 {
            process: "socktrace".into(),
            ..Formatter5424::default()
        };
        let logger = syslog::unix_custom(formatter, socket)
            .map_err(|e| format!("syslog socket {}: {e}", socket.display()))?;
        Ok(Syslog { logger })
    }
}

impl Sink for Syslog {
    /// Syslog ends up in text files read by people: values are escaped
    /// (the journal's fields stay raw: its protocol is binary-safe and
    /// `journalctl` shows unprintable values as blobs).
    fn send(&mut self, entry: &Entry) -> Result<(), String> {
        let params: BTreeMap<String, String> = entry
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), escape(v).into_owned()))
            .collect();
        let data = BTreeMap::from([(SD_ID.to_string(), params)]);
        let message = (0, data, &entry.message);
        match entry.level {
            Level::Info => self.logger.info(message),
            Level::Warning => self.logger.warning(message),
        }
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Errno, Proto, TcpState};

    #[test]
    fn a_transition_names_everything() {
        let e = Event::sample(
            1,
            4242,
            "curl",
            Proto::Tcp,
            Detail::transition(
                "127.0.0.1:43512",
                "10.0.0.2:443",
                TcpState::SynSent,
                TcpState::Established,
            ),
        );
        let entry = entry(&Record::Event(e)).unwrap();
        assert_eq!(entry.level, Level::Info);
        assert_eq!(
            entry.message,
            "curl (4242) 127.0.0.1:43512 -> 10.0.0.2:443 SYN_SENT -> ESTABLISHED"
        );
        let get = |k| {
            entry
                .fields
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("old_state"), Some("SYN_SENT"));
        assert_eq!(get("new_state"), Some("ESTABLISHED"));
        assert_eq!(get("pid"), Some("4242"));
        assert_eq!(get("dport"), Some("443"));
    }

    #[test]
    fn failures_warn() {
        let e = Event::sample(
            1,
            7,
            "srv",
            Proto::Tcp,
            Detail::Bind {
                addr: "0.0.0.0:80".parse().unwrap(),
                requested_port: 80,
                errno: Errno(98),
            },
        );
        let entry = entry(&Record::Event(e)).unwrap();
        assert_eq!(entry.level, Level::Warning);
        assert_eq!(entry.message, "srv (7) bind 0.0.0.0:80 failed: EADDRINUSE");
    }

    #[test]
    fn messages_escape_process_names_and_fields_keep_them() {
        use crate::escape::{FORGING, FORGING_SHOWN};
        let e = Event::sample(
            1,
            7,
            FORGING,
            Proto::Tcp,
            Detail::Release {
                addr: "0.0.0.0:53".parse().unwrap(),
            },
        );
        let entry = entry(&Record::Event(e)).unwrap();
        assert_eq!(
            entry.message,
            format!("{FORGING_SHOWN} (7) closed 0.0.0.0:53 (bound)")
        );
        let comm = entry.fields.iter().find(|(k, _)| *k == "comm").unwrap();
        assert_eq!(comm.1, FORGING, "the journal's field is the raw name");
    }
}
