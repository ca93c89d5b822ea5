//! socktrace: a real-time socket event tracer. The pipeline, one module a
//! stage: probe (load/attach) -> source (ring) -> event (decode) -> track
//! (lifecycles, owners, TIME_WAIT) -> filter -> output (render); diag and
//! proc look at sockets that predate us; `watch` wires them. `analysis` holds the
//! answers (listeners, TIME_WAIT churn, lifecycles), pure; `tallies` feeds
//! the TIME_WAIT one from the kernel's counters; `input` reads JSON lines
//! back into records and `offline` runs the analyses on them; `metrics`
//! exports counts for Prometheus; `top` is the live terminal view.
//! `escape` is how text a process controls is shown to people; `writer`
//! (the output) and `stderr` (our own lines) are where lines go, neither
//! blocking nor losing one unsaid.
/// A line on standard error that neither panics nor blocks nor is lost
/// to a slow reader (see [`stderr`]): with standard error gone (`socktrace
/// 2>&1 | head`) the message is dropped and socktrace stops as quietly as
/// when standard output goes.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::line(format_args!($($arg)*))
    };
}

pub mod analysis;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod escape;
pub mod event;
pub mod filter;
pub mod host;
pub mod input;
pub mod logsink;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod plot;
pub mod privileges;
pub mod probe;
pub mod source;
pub mod stderr;
pub mod summary;
pub mod track;
pub mod writer;
