//! Around a live loop: say how attaching went, set
//! the reader's priority, and know when to stop (Ctrl-C, SIGTERM,
//! `--duration`).
use std::{io, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    task::JoinHandle,
    time::Sleep,
};

use crate::metrics::{self, Metrics, otlp::Otlp};

/// Reports what `attach` did that the user did not ask for, and what is
/// degraded; then sets the niceness (a failure is said, not fatal).
pub fn announce(mounted_tracefs: bool, degraded: &[String], nice: i32) {
    // SAFETY: setpriority on this process only.
    if nice != 0 && unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        let err = io::Error::last_os_error();
        say!("socktrace: cannot set niceness {nice}: {err}; may drop events under load");
    }
    if mounted_tracefs {
        say!("socktrace: mounted tracefs at /sys/kernel/tracing");
    }
    for what in degraded {
        say!("socktrace: degraded: {what}");
    }
}

/// What exports the metrics, and the metrics to feed (if anything does).
#[derive(Default)]
pub struct Exporters {
    pub metrics: Option<Arc<Metrics>>,
    /// `--metrics`' server, to abort at the end.
    pub server: Option<JoinHandle<()>>,
    /// `--otlp-metrics`, to start once privileges are dropped.
    pub otlp: Option<Otlp>,
}

/// Makes the metrics if `--metrics` or `--otlp-metrics` asks for them,
/// and starts `--metrics`' server.
pub async fn serve_metrics(
    addr: Option<SocketAddr>,
    otlp: Option<&url::Url>,
) -> anyhow::Result<Exporters> {
    let otlp = otlp.map(|url| Otlp::new(url.clone()));
    let metrics = match (&otlp, addr) {
        (Some(otlp), _) => Arc::clone(&otlp.metrics),
        (None, Some(_)) => Arc::new(Metrics::new()),
        (None, None) => return Ok(Exporters::default()),
    };
    let server = match addr {
        Some(addr) => {
            let server = metrics::serve(addr, Arc::clone(&metrics))
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            say!("socktrace: metrics at http://{addr}/metrics");
            Some(server)
        }
        None => None,
    };
    Ok(Exporters {
        metrics: Some(metrics),
        server,
        otlp,
    })
}

/// Fires once: on SIGINT, SIGTERM or when the duration is over.
pub struct Stop {
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Stop {
    pub fn new(duration: Option<Duration>) -> io::Result<Stop> {
        Ok(Stop {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            deadline: duration.map(|d| Box::pin(tokio::time::sleep(d))),
        })
    }

    pub async fn wait(&mut self) {
        let deadline = async {
            match self.deadline.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.sigint.recv() => {}
            _ = self.sigterm.recv() => {}
            _ = deadline => {}
        }
    }
}
