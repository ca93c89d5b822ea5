//! The Prometheus exporter (`--metrics ADDR`): counters and gauges fed by
//! the pipeline, encoded as OpenMetrics text and served by [`http`].
mod http;
pub mod otlp;
mod twin;

use std::{borrow::Cow, sync::Mutex};

use opentelemetry::{KeyValue, metrics::Meter};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text},
    metrics::histogram::exponential_buckets,
    registry::Registry,
};

pub use http::serve;
use twin::{
    Attributes, CounterFamily, Families, GaugeFamily, HistogramFamily, PlainCounter, PlainGauge,
    PlainHistogram,
};

use crate::{
    analysis::{stuck::ByProcess, timewait::DestRow},
    event::{Detail, Errno},
    source::KernelCounters,
    track::{Close, Opener, Record},
};

/// Local ports given a `local_port` label of their own; the rest share
/// `other`.
pub const TOP_PORTS: usize = 20;

/// The registry and every metric family socktrace exports, each with its
/// OpenTelemetry twin when pushing (see [`twin`]). All methods take `&self`
/// (the metrics are atomic), so the pipeline, the HTTP server and the
/// OTLP pusher share one `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    transitions: CounterFamily<Transition>,
    timewait_entries: CounterFamily<PortLabel>,
    /// The local ports seen entering TIME_WAIT.
    timewait_ports: FirstPorts,
    connect_durations: HistogramFamily<ServiceLabel>,
    retransmits: CounterFamily<ServiceLabel>,
    resets: CounterFamily<ResetLabel>,
    /// The services' ports seen in connections' ends.
    service_ports: FirstPorts,
    timewait_sockets: GaugeFamily<RowLabel>,
    /// TIME_WAIT sockets in our network namespace and its
    /// `net.ipv4.tcp_max_tw_buckets`, once `timewait` read them.
    netns_timewait: GaugeFamily<NoLabels>,
    max_tw_buckets: GaugeFamily<NoLabels>,
    binds: CounterFamily<Outcome>,
    listens: CounterFamily<Outcome>,
    durations: PlainHistogram,
    ring_drops: PlainCounter,
    recursion_misses: PlainCounter,
    evictions: PlainCounter,
    listeners_open: PlainGauge,
    short_lived_listeners: PlainCounter,
    listen_drops: CounterFamily<PortLabel>,
    /// The listeners' local ports seen dropping.
    listen_ports: FirstPorts,
    stuck_sockets: GaugeFamily<StuckLabel>,
    /// Ephemeral ports each destination holds (TIME_WAIT and in use), and
    /// how many there are (`ip_local_port_range`), in `timewait` mode.
    ports_held: GaugeFamily<DestLabel>,
    port_range: GaugeFamily<NoLabels>,
    /// With `--otlp-metrics` only.
    otlp_failures: Option<PlainCounter>,
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

/// A destination of this host's connections: its local address, the
/// remote one and port.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestLabel {
    saddr: String,
    daddr: String,
    dport: u16,
}

impl Attributes for DestLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("saddr", self.saddr.clone()),
            KeyValue::new("daddr", self.daddr.clone()),
            KeyValue::new("dport", i64::from(self.dport)),
        ]
    }
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
fn connect_buckets() -> Vec<f64> {
    exponential_buckets(1e-5, 2.0, 23).collect()
}

/// Buckets of connection durations: 100 µs to 105 s, doubling.
fn duration_buckets() -> Vec<f64> {
    exponential_buckets(1e-4, 2.0, 21).collect()
}

/// A series without labels that appears only once it is set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoLabels {}

impl Attributes for NoLabels {
    fn attributes(&self) -> Vec<KeyValue> {
        Vec::new()
    }
}

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

impl Port {
    /// The label value, as [`EncodeLabelValue`] writes it.
    fn value(self) -> opentelemetry::Value {
        match self {
            Port::Number(n) => n.to_string().into(),
            Port::Client => "client".into(),
            Port::Other => "other".into(),
        }
    }
}

impl Attributes for Transition {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("old_state", self.old_state),
            KeyValue::new("new_state", self.new_state),
        ]
    }
}

impl Attributes for ResetLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("by", self.by),
            KeyValue::new("reason", self.reason.clone()),
        ]
    }
}

impl Attributes for StuckLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("comm", self.comm.clone()),
            KeyValue::new("state", self.state),
        ]
    }
}

impl Attributes for Outcome {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![KeyValue::new("result", self.result.to_string())]
    }
}

impl Attributes for PortLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![KeyValue::new("local_port", self.local_port.value())]
    }
}

impl Attributes for ServiceLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("side", self.side),
            KeyValue::new("port", self.port.value()),
        ]
    }
}

impl Attributes for RowLabel {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![KeyValue::new("local_port", self.local_port.clone())]
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The families for `/metrics` only.
    pub fn new() -> Metrics {
        Metrics::build(None)
    }

    /// The families, each with its twin on `meter` (`--otlp-metrics`).
    pub fn with_meter(meter: &Meter) -> Metrics {
        Metrics::build(Some(meter))
    }

    fn build(meter: Option<&Meter>) -> Metrics {
        let mut registry = Registry::with_prefix(twin::PREFIX);
        let mut f = Families {
            registry: &mut registry,
            meter,
        };
        let transitions = f.counter_family(
            "tcp_transitions",
            "TCP state transitions (TIME_WAIT as socktrace reports it)",
        );
        let timewait_entries = f.counter_family(
            "timewait_entries",
            format!(
                "Connections that entered TIME_WAIT, by local port: `client` for \
                 connections this host opened, the first {TOP_PORTS} other ports seen, \
                 then `other`"
            ),
        );
        let timewait_sockets = f.gauge_family(
            "timewait_sockets",
            format!(
                "TIME_WAIT sockets now, by local port (top {TOP_PORTS} by entries, then `other`)"
            ),
        );
        let netns_timewait = f.gauge_family(
            "netns_timewait_sockets",
            "TIME_WAIT sockets in socktrace's network namespace, all of them \
             (/proc/net/sockstat's tw; `timewait` mode)",
        );
        let max_tw_buckets = f.gauge_family(
            "tcp_max_tw_buckets",
            "net.ipv4.tcp_max_tw_buckets: TIME_WAIT sockets the kernel keeps at most \
             (`timewait` mode); beyond it connections close without TIME_WAIT",
        );
        let binds = f.counter_family(
            "binds",
            "bind(2) calls on IPv4/IPv6 sockets, by result (`ok` or the errno name)",
        );
        let listens = f.counter_family(
            "listens",
            "listen(2) calls on IPv4/IPv6 sockets, by result (`ok` or the errno name)",
        );
        let durations = f.histogram(
            "connection_duration",
            "Duration of finished connections opened after socktrace started, \
             first to last transition",
            duration_buckets(),
        );
        let connect_durations = f.histogram_family(
            "connect_duration",
            format!(
                "Handshake time of connections opened after socktrace started (active: \
                 connect() to ESTABLISHED; passive: the SYN-ACK's round trip), by side \
                 and service port (the first {TOP_PORTS} seen, then `other`)"
            ),
            connect_buckets(),
        );
        let retransmits = f.counter_family(
            "retransmits",
            format!(
                "Segments retransmitted by connections opened after socktrace started, \
                 counted at their end, by side and service port (the first {TOP_PORTS} seen, then `other`)"
            ),
        );
        let resets = f.counter_family(
            "resets",
            "Connections a RST ended, by the side that sent it and the kernel's reason for \
             one sent here (`unknown` for one received, or where the kernel gives none)",
        );
        let stuck_sockets = f.gauge_family(
            "stuck_sockets",
            "Connections stuck in CLOSE_WAIT (never closed here), FIN_WAIT2 or SYN_SENT \
             for longer than --stuck (10 s unless the mode has the flag), by program and \
             state; updated every second",
        );
        let ports_held = f.gauge_family(
            "ephemeral_ports_held",
            "Local ports this host's connections to a destination hold (in TIME_WAIT or \
             in use), for the destinations `timewait` lists (--top); against \
             socktrace_ephemeral_port_range, how close each is to running out",
        );
        let port_range = f.gauge_family(
            "ephemeral_port_range",
            "Local ports connect() picks from (net.ipv4.ip_local_port_range), in \
             `timewait` mode",
        );
        let ring_drops = f.counter(
            "ring_drops",
            "Events lost: the kernel found the ring buffer full",
        );
        let recursion_misses = f.counter(
            "recursion_misses",
            "Events lost: another BPF program was running on that CPU",
        );
        let evictions = f.counter(
            "owner_map_evictions",
            "Connections dropped from tracking (--track-limit); their close records are lost",
        );
        let listeners_open = f.gauge("listeners_open", "Listening sockets open now");
        let short_lived_listeners = f.counter(
            "short_lived_listeners",
            "Listening sockets closed soon after they started listening",
        );
        let listen_drops = f.counter_family(
            "listen_drops",
            format!(
                "SYNs and connections listeners dropped because their accept queue was \
                 full (`listeners` mode, sampled each interval), by local port (the first \
                 {TOP_PORTS} seen, then `other`)"
            ),
        );
        let otlp_failures = meter.is_some().then(|| {
            f.counter(
                "otlp_push_failures",
                "Pushes to --otlp-metrics that failed (receiver down, refused or too slow)",
            )
        });
        Metrics {
            registry,
            transitions,
            timewait_entries,
            timewait_ports: FirstPorts::default(),
            connect_durations,
            retransmits,
            resets,
            service_ports: FirstPorts::default(),
            timewait_sockets,
            netns_timewait,
            max_tw_buckets,
            binds,
            listens,
            durations,
            ring_drops,
            recursion_misses,
            evictions,
            listeners_open,
            short_lived_listeners,
            listen_drops,
            listen_ports: FirstPorts::default(),
            stuck_sockets,
            ports_held,
            port_range,
            otlp_failures,
        }
    }

    /// Counts `n` SYNs or connections a listener on local `port` dropped.
    pub fn listen_drops(&self, port: u16, n: u64) {
        let local_port = self.listen_ports.label(port);
        self.listen_drops.inc_by(&PortLabel { local_port }, n);
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
                    self.transitions.inc_by(&labels, 1);
                }
                Detail::Bind { errno, .. } => {
                    self.binds.inc_by(&outcome(*errno), 1);
                }
                Detail::Listen { errno, .. } => {
                    self.listens.inc_by(&outcome(*errno), 1);
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
                    self.resets.inc_by(&label, 1);
                }
            }
            // Queue samples are recorded ones (`listeners` counts live drops).
            Record::Existing(..) | Record::Loss(..) | Record::Queues(..) => {}
        }
    }

    /// Counts `n` connections entering TIME_WAIT on a server's local port,
    /// or (`None`) on connections this host opened.
    pub fn timewait_entries(&self, server_port: Option<u16>, n: u64) {
        let local_port = match server_port {
            None => Port::Client,
            Some(port) => self.timewait_ports.label(port),
        };
        self.timewait_entries.inc_by(&PortLabel { local_port }, n);
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
            self.connect_durations.observe(&labels, ns as f64 / 1e9);
        }
        if let Some(tcp) = close.tcp {
            self.retransmits.inc_by(&labels, tcp.retransmits.into());
        }
    }

    /// Replaces the stuck connections by program and state with `rows`.
    pub fn set_stuck(&self, rows: &[ByProcess]) {
        self.stuck_sockets.replace(rows.iter().map(|row| {
            let label = StuckLabel {
                comm: if row.owner.is_known() {
                    row.owner.comm.as_str().into_owned()
                } else {
                    "unknown".into()
                },
                state: row.state.name(),
            };
            (label, row.count)
        }));
    }

    /// Loss totals so far, from the kernel and the tracker.
    pub fn set_losses(&self, kernel: &KernelCounters, evictions: u64) {
        self.ring_drops.advance(kernel.ring_drops);
        self.recursion_misses.advance(kernel.recursion_misses);
        self.evictions.advance(evictions);
    }

    pub fn set_listeners_open(&self, n: u64) {
        self.listeners_open.set(n);
    }

    pub fn short_lived_listener(&self) {
        self.short_lived_listeners.inc_by(1);
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
        let other = (!folded.is_empty() || !others.is_empty()).then(|| {
            let label = RowLabel {
                local_port: "other".into(),
            };
            (
                label,
                folded.iter().chain(&others).map(|r| r.population).sum(),
            )
        });
        let ranked = ranked.iter().map(|row| {
            let label = RowLabel {
                local_port: row.local_port.clone(),
            };
            (label, row.population)
        });
        self.timewait_sockets.replace(ranked.chain(other));
    }

    /// The ephemeral ports each of `rows` holds, and the range's size;
    /// destinations no longer listed go.
    pub fn set_port_headroom(&self, rows: &[DestRow]) {
        self.ports_held.replace(rows.iter().map(|row| {
            let label = DestLabel {
                saddr: row.dest.local.to_string(),
                daddr: row.dest.remote.ip().to_string(),
                dport: row.dest.remote.port(),
            };
            (label, row.ports.held)
        }));
        if let Some(row) = rows.first() {
            self.port_range.replace([(NoLabels {}, row.ports.range)]);
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
                family.replace([(NoLabels {}, n)]);
            }
        }
    }

    /// Counts one failed push to `--otlp-metrics`.
    pub fn otlp_failure(&self) {
        if let Some(failures) = &self.otlp_failures {
            failures.inc_by(1);
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

#[cfg(test)]
mod tests;
