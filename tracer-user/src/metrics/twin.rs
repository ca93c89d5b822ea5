//! Each metric family twice, updated in one call: once in the Prometheus
//! registry `/metrics` encodes, once as an OpenTelemetry instrument that
//! `--otlp-metrics` pushes. A family is declared once, through
//! [`Families`], so both carry the same name, help and buckets; Prometheus's
//! OTLP translation then names the instrument as `/metrics` does (`_total`
//! for a counter, `_seconds` for the unit `s`).
//!
//! Without `--otlp-metrics` there is no meter and the twins are `None`:
//! no attributes are built per event.
use std::{
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

use opentelemetry::{KeyValue, metrics::Meter};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};

/// What every family's name starts with (Prometheus's registry adds it).
pub const PREFIX: &str = "socktrace";

type GaugeU64 = Gauge<u64, std::sync::atomic::AtomicU64>;
type OtelCounter = opentelemetry::metrics::Counter<u64>;
type OtelHistogram = opentelemetry::metrics::Histogram<f64>;

/// A label set as OpenTelemetry attributes: the same keys and values as
/// its `EncodeLabelSet`.
pub trait Attributes {
    fn attributes(&self) -> Vec<KeyValue>;
}

/// A label set both sides take.
pub trait Labels: Attributes + EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug {}
impl<L: Attributes + EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug> Labels for L {}

/// Where families are declared: the registry, and the meter when pushing.
pub struct Families<'a> {
    pub registry: &'a mut Registry,
    pub meter: Option<&'a Meter>,
}

impl Families<'_> {
    fn otel_name(name: &str) -> String {
        format!("{PREFIX}_{name}")
    }

    pub fn counter_family<L: Labels + Send + Sync + 'static>(
        &mut self,
        name: &str,
        help: impl Into<String>,
    ) -> CounterFamily<L> {
        let help = help.into();
        let prom = Family::default();
        self.registry.register(name, help.clone(), prom.clone());
        CounterFamily {
            prom,
            otel: self.meter.map(|m| otel_counter(m, name, help)),
        }
    }

    pub fn counter(&mut self, name: &str, help: impl Into<String>) -> PlainCounter {
        let help = help.into();
        let prom = Counter::default();
        self.registry.register(name, help.clone(), prom.clone());
        let otel = self.meter.map(|m| otel_counter(m, name, help));
        // Shown from the start, at 0, as on /metrics.
        if let Some(otel) = &otel {
            otel.add(0, &[]);
        }
        PlainCounter { prom, otel }
    }

    /// A histogram family in seconds, with `buckets`' upper bounds.
    pub fn histogram_family<L: Labels + Send + Sync + 'static>(
        &mut self,
        name: &str,
        help: impl Into<String>,
        buckets: Vec<f64>,
    ) -> HistogramFamily<L> {
        let help = help.into();
        let prom = Family::new_with_constructor(Buckets(buckets.clone().into()));
        self.registry
            .register_with_unit(name, help.clone(), Unit::Seconds, prom.clone());
        HistogramFamily {
            prom,
            otel: self.meter.map(|m| otel_histogram(m, name, help, buckets)),
        }
    }

    /// A histogram in seconds, with `buckets`' upper bounds.
    pub fn histogram(
        &mut self,
        name: &str,
        help: impl Into<String>,
        buckets: Vec<f64>,
    ) -> PlainHistogram {
        let help = help.into();
        let prom = Histogram::new(buckets.clone());
        self.registry
            .register_with_unit(name, help.clone(), Unit::Seconds, prom.clone());
        PlainHistogram {
            prom,
            otel: self.meter.map(|m| otel_histogram(m, name, help, buckets)),
        }
    }

    pub fn gauge(&mut self, name: &str, help: impl Into<String>) -> PlainGauge {
        let help = help.into();
        let prom = GaugeU64::default();
        self.registry.register(name, help.clone(), prom.clone());
        if let Some(meter) = self.meter {
            let read = prom.clone();
            meter
                .u64_observable_gauge(Self::otel_name(name))
                .with_description(help)
                .with_callback(move |o| o.observe(read.get(), &[]))
                .build();
        }
        PlainGauge { prom }
    }

    /// A gauge family whose rows are replaced whole ([`GaugeFamily::replace`]):
    /// a row gone is gone from both sides.
    pub fn gauge_family<L: Labels + Send + Sync + 'static>(
        &mut self,
        name: &str,
        help: impl Into<String>,
    ) -> GaugeFamily<L> {
        let help = help.into();
        let prom = Family::default();
        self.registry.register(name, help.clone(), prom.clone());
        let rows: Arc<Mutex<Vec<(L, u64)>>> = Arc::default();
        if let Some(meter) = self.meter {
            let read = Arc::clone(&rows);
            meter
                .u64_observable_gauge(Self::otel_name(name))
                .with_description(help)
                .with_callback(move |o| {
                    for (labels, value) in
                        read.lock().unwrap_or_else(PoisonError::into_inner).iter()
                    {
                        o.observe(*value, &labels.attributes());
                    }
                })
                .build();
        }
        GaugeFamily { prom, rows }
    }
}

fn otel_counter(meter: &Meter, name: &str, help: String) -> OtelCounter {
    meter
        .u64_counter(Families::otel_name(name))
        .with_description(help)
        .build()
}

fn otel_histogram(meter: &Meter, name: &str, help: String, buckets: Vec<f64>) -> OtelHistogram {
    meter
        .f64_histogram(Families::otel_name(name))
        .with_description(help)
        .with_unit("s")
        .with_boundaries(buckets)
        .build()
}

pub struct CounterFamily<L: Labels> {
    prom: Family<L, Counter>,
    otel: Option<OtelCounter>,
}

impl<L: Labels> CounterFamily<L> {
    pub fn inc_by(&self, labels: &L, n: u64) {
        self.prom.get_or_create(labels).inc_by(n);
        if let Some(otel) = &self.otel {
            otel.add(n, &labels.attributes());
        }
    }
}

pub struct PlainCounter {
    prom: Counter,
    otel: Option<OtelCounter>,
}

impl PlainCounter {
    pub fn inc_by(&self, n: u64) {
        self.prom.inc_by(n);
        if let Some(otel) = &self.otel {
            otel.add(n, &[]);
        }
    }

    /// Raises the count to `total` (a total that only grows).
    pub fn advance(&self, total: u64) {
        let now = self.prom.get();
        if total > now {
            self.inc_by(total - now);
        }
    }
}

/// The upper bounds each histogram of a family starts with.
#[derive(Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

pub struct HistogramFamily<L: Labels> {
    prom: Family<L, Histogram, Buckets>,
    otel: Option<OtelHistogram>,
}

impl<L: Labels> HistogramFamily<L> {
    pub fn observe(&self, labels: &L, v: f64) {
        self.prom.get_or_create(labels).observe(v);
        if let Some(otel) = &self.otel {
            otel.record(v, &labels.attributes());
        }
    }
}

pub struct PlainHistogram {
    prom: Histogram,
    otel: Option<OtelHistogram>,
}

impl PlainHistogram {
    pub fn observe(&self, v: f64) {
        self.prom.observe(v);
        if let Some(otel) = &self.otel {
            otel.record(v, &[]);
        }
    }
}

/// A gauge: OpenTelemetry reads it when it collects.
pub struct PlainGauge {
    prom: GaugeU64,
}

impl PlainGauge {
    pub fn set(&self, n: u64) {
        self.prom.set(n);
    }
}

pub struct GaugeFamily<L: Labels> {
    prom: Family<L, GaugeU64>,
    /// The rows now, for OpenTelemetry's callback.
    rows: Arc<Mutex<Vec<(L, u64)>>>,
}

impl<L: Labels> GaugeFamily<L> {
    /// Replaces the rows with `rows` (values of a label repeated are
    /// summed): the rows gone are removed after the others are set, so no
    /// scrape sees a moment without them.
    pub fn replace(&self, rows: impl IntoIterator<Item = (L, u64)>) {
        let mut now: rustc_hash::FxHashMap<L, u64> = Default::default();
        for (labels, value) in rows {
            *now.entry(labels).or_default() += value;
        }
        let mut shown = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        for (labels, value) in &now {
            self.prom.get_or_create(labels).set(*value);
        }
        for (gone, _) in shown.iter().filter(|(l, _)| !now.contains_key(l)) {
            self.prom.remove(gone);
        }
        *shown = now.into_iter().collect();
    }
}
