//! `--otlp-metrics URL`: every family `/metrics` shows, pushed as
//! OTLP/HTTP (protobuf) every `--otlp-interval`, with the resource a fleet
//! tells hosts apart by (`service.name`, `service.version`, `host.name`,
//! and `service.instance.id`, which receivers such as Prometheus make the
//! `instance` label).
//!
//! The SDK's periodic reader runs its own thread; a thread started before
//! privileges are dropped would keep them (see [`crate::privileges`]). So
//! the provider is read by hand ([`ManualReader`]) from a task on our own
//! runtime, and the HTTP client (async reqwest) is made in
//! [`Otlp::start`], after privileges are gone: whatever thread it starts
//! (a resolver's) starts without any.
use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use anyhow::Context as _;
use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::ResourceMetrics, exporter::PushMetricExporter as _, reader::MetricReader,
    },
};
use tokio::task::JoinHandle;

use super::Metrics;

/// How long one push may take before it counts as failed.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The meter provider behind [`Metrics`]' twins, not yet pushing.
pub struct Otlp {
    url: url::Url,
    provider: SdkMeterProvider,
    reader: Shared,
    pub metrics: Arc<Metrics>,
}

impl Otlp {
    /// The metrics with their OpenTelemetry twins, to push to `url` once
    /// started. Starts no thread, opens no connection.
    pub fn new(url: url::Url) -> Otlp {
        let reader = Shared(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let provider = SdkMeterProvider::builder()
            .with_resource(resource())
            .with_reader(reader.clone())
            .build();
        let metrics = Arc::new(Metrics::with_meter(&provider.meter("socktrace")));
        Otlp {
            url,
            provider,
            reader,
            metrics,
        }
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Pushes every `period` from now on (the first push after one
    /// period), until [`Pusher::finish`].
    pub fn start(self, period: Duration) -> anyhow::Result<Pusher> {
        let client = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .build()
            .context("making the OTLP HTTP client")?;
        let exporter = MetricExporter::builder()
            .with_http()
            .with_http_client(Client(client))
            .with_endpoint(self.url.as_str())
            .with_timeout(PUSH_TIMEOUT)
            .with_temporality(Temporality::Cumulative)
            .build()
            .with_context(|| format!("--otlp-metrics {}", self.url))?;
        let push = Arc::new(Push {
            otlp: self,
            exporter,
            said: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn({
            let push = Arc::clone(&push);
            async move {
                let start = tokio::time::Instant::now() + period;
                let mut ticks = tokio::time::interval_at(start, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    push.once().await;
                }
            }
        });
        Ok(Pusher { task, push })
    }
}

/// The resource every push carries. `OTEL_RESOURCE_ATTRIBUTES` may add
/// attributes; these four are socktrace's own.
fn resource() -> Resource {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    Resource::builder()
        .with_service_name("socktrace")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host.clone()),
            KeyValue::new("service.instance.id", host),
        ])
        .build()
}

/// A running pusher.
pub struct Pusher {
    task: JoinHandle<()>,
    push: Arc<Push>,
}

impl Pusher {
    /// Stops the periodic pushes, pushes the last values once and shuts
    /// the provider down.
    pub async fn finish(self) {
        self.task.abort();
        self.push.once().await;
        if let Err(err) = self.push.otlp.provider.shutdown() {
            log::debug!("otlp: shutting the meter provider down: {err}");
        }
    }
}

struct Push {
    otlp: Otlp,
    exporter: MetricExporter,
    /// Whether a failure was said (once a run; the rest are counted).
    said: std::sync::atomic::AtomicBool,
}

impl Push {
    /// Collects every family and sends it; a failure is counted, and the
    /// first said.
    async fn once(&self) {
        let mut batch = ResourceMetrics::default();
        let result = match self.otlp.reader.0.collect(&mut batch) {
            Ok(()) => self.exporter.export(&batch).await,
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            self.otlp.metrics.otlp_failure();
            if !self.said.swap(true, std::sync::atomic::Ordering::Relaxed) {
                say!(
                    "socktrace: pushing metrics to {} failed (later failures are only \
                     counted, in socktrace_otlp_push_failures_total): {}",
                    self.otlp.url,
                    one_line(&err.to_string())
                );
            }
        }
    }
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// reqwest, its errors said as a chain of causes: the exporter puts an
/// error's `Debug` into the message it returns, and reqwest's is a dump
/// of its structure.
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.0
            .send_bytes(request)
            .await
            .map_err(|err| Box::new(Causes::from(err.as_ref())) as HttpError)
    }
}

/// An error and its sources, `a: b: c`, in `Display` and `Debug` alike.
struct Causes(String);

impl From<&(dyn std::error::Error + Send + Sync + 'static)> for Causes {
    fn from(err: &(dyn std::error::Error + Send + Sync + 'static)) -> Causes {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Causes(text)
    }
}

impl std::fmt::Display for Causes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Causes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Causes {}

/// The reader the provider holds, which [`Push`] collects through too.
#[derive(Clone, Debug)]
struct Shared(Arc<ManualReader>);

impl MetricReader for Shared {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

#[cfg(test)]
impl Otlp {
    /// What a push would send now.
    pub(super) fn collect(&self) -> ResourceMetrics {
        let mut batch = ResourceMetrics::default();
        self.reader.0.collect(&mut batch).expect("collecting");
        batch
    }
}
