//! The Prometheus exporter (`--metrics ADDR`): counters and gauges fed by
//! the pipeline, encoded as OpenMetrics text and served by [`http`].
mod http;

use std::{borrow::Cow, sync::Mutex};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

pub use http::serve;

use crate::{
    analysis::stuck::ByProcess,
    event::{Detail, Errno},
    source::KernelCounters,
    track::{Close, Opener, Record},
};

/// Local ports given a `local_port` label of their own; the rest share
/// `other`.
pub const TOP_PORTS: usize = 20;

type GaugeU64 = Gauge<u64, std::sync::atomic::AtomicU64>;

/// The registry and every metric family socktrace exports. All methods take
/// `&self` (the metrics are atomic), so the pipeline and the HTTP server
/// share one `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    transitions: Family<Transition, Counter>,
    timewait_entries: Family<PortLabel, Counter>,
    /// The local ports seen entering TIME_WAIT.
    timewait_ports: FirstPorts,
    connect_durations: Family<ServiceLabel, Histogram, fn() -> Histogram>,
    retransmits: Family<ServiceLabel, Counter>,
    resets: Family<ResetLabel, Counter>,
    /// The services' ports seen in connections' ends.
    service_ports: FirstPorts,
    timewait_sockets: Family<RowLabel, GaugeU64>,
    /// TIME_WAIT sockets in our network namespace and its
    /// `net.ipv4.tcp_max_tw_buckets`, once `timewait` read them.
    netns_timewait: Family<NoLabels, GaugeU64>,
    max_tw_buckets: Family<NoLabels, GaugeU64>,
    binds: Family<Outcome, Counter>,
    listens: Family<Outcome, Counter>,
    durations: Histogram,
    ring_drops: Counter,
    recursion_misses: Counter,
    evictions: Counter,
    listeners_open: GaugeU64,
    short_lived_listeners: Counter,
    listen_drops: Family<PortLabel, Counter>,
    /// The listeners' local ports seen dropping.
    listen_ports: FirstPorts,
    stuck_sockets: Family<StuckLabel, GaugeU64>,
    /// The labels `stuck_sockets` has now.
    stuck_shown: Mutex<Vec<StuckLabel>>,
}

/// One row of the TIME_WAIT analysis: a local port (or `client` for
/// connections this host opened), entries since start, sockets now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimewaitRow {
    pub local_port: String,
    pub entries: u64,
    pub population: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Transition {
    old_state: &'static str,
    new_state: &'static str,
}

/// Who sent the RST that ended a connection, and why (the kernel's reason
/// where it gives one: a bounded set, its `enum sk_rst_reason`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabel {
    by: &'static str,
    reason: String,
}

/// A program and the state its connections are stuck in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StuckLabel {
    comm: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
    local_port: Port,
}

/// A connection's service: `side` (`client`: this host opened it,
/// `server`: it accepted it) and the service's `port` (the remote one of a
/// client, the local one of a server), bounded as [`FirstPorts`] says.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    side: &'static str,
    port: Port,
}

/// Ports given a label of their own: the first [`TOP_PORTS`] seen; the
/// rest share `other`, so that a scan cannot grow the series without end.
#[derive(Default)]
struct FirstPorts(Mutex<Vec<u16>>);

impl FirstPorts {
    fn label(&self, port: u16) -> Port {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&port) {
            Port::Number(port)
        } else if seen.len() < TOP_PORTS {
            seen.push(port);
            Port::Number(port)
        } else {
            Port::Other
        }
    }
}

/// Buckets of handshake times: 10 µs to 42 s, doubling (a SYN sent again
/// waits 1 s, then 2, 4, ...).
fn connect_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 23))
}

/// A series without labels that appears only once it is set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoLabels {}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabel {
    local_port: String,
}

/// A `local_port` label value, without allocating one per event.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Port {
    Number(u16),
    Client,
    Other,
}

impl EncodeLabelValue for Port {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Port::Number(n) => EncodeLabelValue::encode(n, encoder),
            Port::Client => EncodeLabelValue::encode(&"client", encoder),
            Port::Other => EncodeLabelValue::encode(&"other", encoder),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("socktrace"),
            transitions: Family::default(),
            timewait_entries: Family::default(),
            timewait_ports: FirstPorts::default(),
            connect_durations: Family::new_with_constructor(connect_histogram),
            retransmits: Family::default(),
            resets: Family::default(),
            service_ports: FirstPorts::default(),
            timewait_sockets: Family::default(),
            netns_timewait: Family::default(),
            max_tw_buckets: Family::default(),
            binds: Family::default(),
            listens: Family::default(),
            // 100 µs to 105 s, doubling.
            durations: Histogram::new(exponential_buckets(1e-4, 2.0, 21)),
            ring_drops: Counter::default(),
            recursion_misses: Counter::default(),
            evictions: Counter::default(),
            listeners_open: GaugeU64::default(),
            short_lived_listeners: Counter::default(),
            listen_drops: Family::default(),
            listen_ports: FirstPorts::default(),
            stuck_sockets: Family::default(),
            stuck_shown: Default::default(),
        };
        let r = &mut m.registry;
        r.register(
            "tcp_transitions",
            "TCP state transitions (TIME_WAIT as socktrace reports it)",
            m.transitions.clone(),
        );
        r.register(
            "timewait_entries",
            format!(
                "Connections that entered TIME_WAIT, by local port: `client` for \
                 connections this host opened, the first {TOP_PORTS} other ports seen, \
                 then `other`"
            ),
            m.timewait_entries.clone(),
        );
        r.register(
            "timewait_sockets",
            format!(
                "TIME_WAIT sockets now, by local port (top {TOP_PORTS} by entries, then `other`)"
            ),
            m.timewait_sockets.clone(),
        );
        r.register(
            "netns_timewait_sockets",
            "TIME_WAIT sockets in socktrace's network namespace, all of them \
             (/proc/net/sockstat's tw; `timewait` mode)",
            m.netns_timewait.clone(),
        );
        r.register(
            "tcp_max_tw_buckets",
            "net.ipv4.tcp_max_tw_buckets: TIME_WAIT sockets the kernel keeps at most \
             (`timewait` mode); beyond it connections close without TIME_WAIT",
            m.max_tw_buckets.clone(),
        );
        r.register(
            "binds",
            "bind(2) calls on IPv4/IPv6 sockets, by result (`ok` or the errno name)",
            m.binds.clone(),
        );
        r.register(
            "listens",
            "listen(2) calls on IPv4/IPv6 sockets, by result (`ok` or the errno name)",
            m.listens.clone(),
        );
        r.register_with_unit(
            "connection_duration",
            "Duration of finished connections opened after socktrace started, \
             first to last transition",
            Unit::Seconds,
            m.durations.clone(),
        );
        r.register_with_unit(
            "connect_duration",
            format!(
                "Handshake time of connections opened after socktrace started (active: \
                 connect() to ESTABLISHED; passive: the SYN-ACK's round trip), by side \
                 and service port (the first {TOP_PORTS} seen, then `other`)"
            ),
            Unit::Seconds,
            m.connect_durations.clone(),
        );
        r.register(
            "retransmits",
            format!(
                "Segments retransmitted by connections opened after socktrace started, \
                 counted at their end, by side and service port (the first {TOP_PORTS} seen, then `other`)"
            ),
            m.retransmits.clone(),
        );
        r.register(
            "resets",
            "Connections a RST ended, by the side that sent it and the kernel's reason for \
             one sent here (`unknown` for one received, or where the kernel gives none)",
            m.resets.clone(),
        );
        r.register(
            "stuck_sockets",
            "Connections stuck in CLOSE_WAIT (never closed here), FIN_WAIT2 or SYN_SENT \
             for longer than --stuck (10 s unless the mode has the flag), by program and \
             state; updated every second",
            m.stuck_sockets.clone(),
        );
        r.register(
            "ring_drops",
            "Events lost: the kernel found the ring buffer full",
            m.ring_drops.clone(),
        );
        r.register(
            "recursion_misses",
            "Events lost: another BPF program was running on that CPU",
            m.recursion_misses.clone(),
        );
        r.register(
            "owner_map_evictions",
            "Connections dropped from tracking (--track-limit); their close records are lost",
            m.evictions.clone(),
        );
        r.register(
            "listeners_open",
            "Listening sockets open now",
            m.listeners_open.clone(),
        );
        r.register(
            "short_lived_listeners",
            "Listening sockets closed soon after they started listening",
            m.short_lived_listeners.clone(),
        );
        r.register(
            "listen_drops",
            format!(
                "SYNs and connections listeners dropped because their accept queue was \
                 full (`listeners` mode, sampled each interval), by local port (the first \
                 {TOP_PORTS} seen, then `other`)"
            ),
            m.listen_drops.clone(),
        );
        m
    }

    /// Counts `n` SYNs or connections a listener on local `port` dropped.
    pub fn listen_drops(&self, port: u16, n: u64) {
        let local_port = self.listen_ports.label(port);
        self.listen_drops
            .get_or_create(&PortLabel { local_port })
            .inc_by(n);
    }

    /// Counts one pipeline record. A connection that enters TIME_WAIT is
    /// counted from its close record, which says who opened it: `client`
    /// when this host did, else its local port — the first [`TOP_PORTS`]
    /// distinct ones, then `other`.
    pub fn observe(&self, record: &Record) {
        match record {
            Record::Event(event) => match &event.detail {
                Detail::State { old, new, .. } => {
                    let labels = Transition {
                        old_state: old.name(),
                        new_state: new.name(),
                    };
                    self.transitions.get_or_create(&labels).inc();
                }
                Detail::Bind { errno, .. } => {
                    self.binds.get_or_create(&outcome(*errno)).inc();
                }
                Detail::Listen { errno, .. } => {
                    self.listens.get_or_create(&outcome(*errno)).inc();
                }
                // Listener ends feed `listeners_open` and the short-lived count.
                Detail::Release { .. } => {}
            },
            Record::Close(close) => {
                if close.time_wait {
                    let server = (close.opener != Opener::Active).then(|| close.local.port());
                    self.timewait_entries(server, 1);
                }
                // Durations of older connections start at our start: not theirs.
                if !close.predates_us {
                    self.durations.observe(close.duration_ns as f64 / 1e9);
                }
                self.handshake_and_retransmits(close);
                if let Some(side) = close.reset_by {
                    let label = ResetLabel {
                        by: side.name(),
                        reason: close.reset_reason.as_deref().unwrap_or("unknown").into(),
                    };
                    self.resets.get_or_create(&label).inc();
                }
            }
            Record::Existing(..) | Record::Loss(..) => {}
        }
    }

    /// Counts `n` connections entering TIME_WAIT on a server's local port,
    /// or (`None`) on connections this host opened.
    pub fn timewait_entries(&self, server_port: Option<u16>, n: u64) {
        let local_port = match server_port {
            None => Port::Client,
            Some(port) => self.timewait_ports.label(port),
        };
        self.timewait_entries
            .get_or_create(&PortLabel { local_port })
            .inc_by(n);
    }

    /// A finished connection's handshake time and retransmits, by its
    /// service.
    fn handshake_and_retransmits(&self, close: &Close) {
        let (side, port) = match close.opener {
            Opener::Active => ("client", close.remote.port()),
            Opener::Passive => ("server", close.local.port()),
            // Its side is unknown: it predates us (and so its handshake).
            Opener::Listener | Opener::Unknown => return,
        };
        let labels = ServiceLabel {
            side,
            port: self.service_ports.label(port),
        };
        if let Some(ns) = close.connect_ns {
            self.connect_durations
                .get_or_create(&labels)
                .observe(ns as f64 / 1e9);
        }
        if let Some(tcp) = close.tcp {
            self.retransmits
                .get_or_create(&labels)
                .inc_by(tcp.retransmits.into());
        }
    }

    /// Replaces the stuck connections by program and state with `rows`:
    /// the rows gone are removed after the others are set, so that no
    /// scrape sees a moment without them.
    pub fn set_stuck(&self, rows: &[ByProcess]) {
        let mut now: rustc_hash::FxHashMap<StuckLabel, u64> = Default::default();
        for row in rows {
            let label = StuckLabel {
                comm: if row.owner.is_known() {
                    row.owner.comm.as_str().into_owned()
                } else {
                    "unknown".into()
                },
                state: row.state.name(),
            };
            *now.entry(label).or_default() += row.count;
        }
        let mut shown = self.stuck_shown.lock().unwrap_or_else(|e| e.into_inner());
        for (label, count) in &now {
            self.stuck_sockets.get_or_create(label).set(*count);
        }
        for gone in shown.iter().filter(|l| !now.contains_key(*l)) {
            self.stuck_sockets.remove(gone);
        }
        *shown = now.into_keys().collect();
    }

    /// Loss totals so far, from the kernel and the tracker.
    pub fn set_losses(&self, kernel: &KernelCounters, evictions: u64) {
        advance(&self.ring_drops, kernel.ring_drops);
        advance(&self.recursion_misses, kernel.recursion_misses);
        advance(&self.evictions, evictions);
    }

    pub fn set_listeners_open(&self, n: u64) {
        self.listeners_open.set(n);
    }

    pub fn short_lived_listener(&self) {
        self.short_lived_listeners.inc();
    }

    /// Replaces the TIME_WAIT population by local port: the [`TOP_PORTS`]
    /// rows with the most entries keep their label, the rest (and any row
    /// labelled `other`) are summed under `other`. Entries themselves are
    /// counted by [`Metrics::observe`].
    pub fn set_timewait(&self, rows: &[TimewaitRow]) {
        let (mut ranked, others): (Vec<&TimewaitRow>, Vec<&TimewaitRow>) =
            rows.iter().partition(|r| r.local_port != "other");
        ranked.sort_by(|a, b| (b.entries, &a.local_port).cmp(&(a.entries, &b.local_port)));
        let folded = ranked.split_off(ranked.len().min(TOP_PORTS));
        self.timewait_sockets.clear();
        for row in &ranked {
            let labels = RowLabel {
                local_port: row.local_port.clone(),
            };
            self.timewait_sockets
                .get_or_create(&labels)
                .inc_by(row.population);
        }
        if !folded.is_empty() || !others.is_empty() {
            let labels = RowLabel {
                local_port: "other".into(),
            };
            let population = folded.iter().chain(&others).map(|r| r.population).sum();
            self.timewait_sockets.get_or_create(&labels).set(population);
        }
    }

    /// Our network namespace's TIME_WAIT sockets now and its
    /// `tcp_max_tw_buckets`, each where known.
    pub fn set_netns_timewait(&self, sockets: Option<u64>, max_buckets: Option<u64>) {
        for (family, value) in [
            (&self.netns_timewait, sockets),
            (&self.max_tw_buckets, max_buckets),
        ] {
            if let Some(n) = value {
                family.get_or_create(&NoLabels {}).set(n);
            }
        }
    }

    /// The OpenMetrics text exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, nor can our label sets.
        if let Err(err) = text::encode(&mut out, &self.registry) {
            log::warn!("encoding metrics: {err}");
        }
        out
    }
}

fn outcome(errno: Errno) -> Outcome {
    Outcome {
        result: errno.name().map_or(Cow::Borrowed("ok"), Cow::Owned),
    }
}

/// Raises `counter` to `total` (a total that only grows).
fn advance(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests;
