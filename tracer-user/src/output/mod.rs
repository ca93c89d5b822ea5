//! Rendering records: columns for people, JSON lines for programs.
//! Renderers append to a caller-owned buffer so a whole batch goes out in
//! one write.
mod color;
mod json;
mod jsonw;
mod lifecycles;
mod listeners;
#[cfg(test)]
mod schema;
mod stuck;
mod text;
mod timewait;
pub mod top;

pub use color::{Hue, Palette};
pub use json::{Json, summary_line};
pub use lifecycles::lifecycles;
pub use listeners::ListenersView;
pub use stuck::StuckView;
pub use text::{Text, TextMode};
pub use timewait::TimewaitView;

use std::task::{Context, Poll};

use crate::{analysis::listeners::Note, event::QueueSample, track::Record};

/// The version of the JSON lines' contract, `docs/socktrace.schema.json`
/// (its `$id` ends in it), which `record`'s header carries as `schema`.
/// Raise it when a line changes in a way a reader could notice.
pub const SCHEMA_VERSION: u32 = 2;

pub trait Render {
    /// Appends the line (with its newline) for `record` to `out`, if this
    /// renderer shows such records.
    fn record(&mut self, record: &Record, out: &mut String);
    /// Appends what goes before the first record, if anything.
    fn preamble(&mut self, _out: &mut String) {}
    /// Every `--interval`: appends a periodic report, if this view has one.
    fn tick(&mut self, _now_ns: u64, _out: &mut String) {}
    /// At the end: appends the final report, if this view has one.
    fn finish(&mut self, _now_ns: u64, _out: &mut String) {}
    /// Whether this view shows listeners' accept queues: then they are
    /// sampled before each `tick` and `finish`, and handed to `queues`.
    fn samples_queues(&self) -> bool {
        false
    }
    /// Takes a sample of every listener's accept queue at `now_ns`;
    /// appends what to say of those that dropped, and returns it.
    fn queues(&mut self, _now_ns: u64, _samples: &[QueueSample], _out: &mut String) -> Vec<Note> {
        Vec::new()
    }
    /// A view with a user (`top`) reads their input here: the loop polls
    /// it while it waits. Ready when the user asked to stop, or the
    /// terminal failed.
    fn poll_input(&mut self, _cx: &mut Context<'_>) -> Poll<anyhow::Result<()>> {
        Poll::Pending
    }
}

/// A duration for people: `850 ns`, `44 µs`, `1.25 ms`, `3.40 s`.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{} µs", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// Milliseconds to the microsecond, as tcplife prints them (`12.345`); `-`
/// when unknown.
pub fn millis(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |ns| format!("{:.3}", ns as f64 / 1e6))
}
