//! Rendering records: columns for people, JSON lines for programs.
//! Renderers append to a caller-owned buffer so a whole batch goes out in
//! one write.
mod json;
mod jsonw;
mod text;

pub use json::Json;
pub use text::{Text, TextMode};

use crate::track::Record;

pub trait Render {
    /// Appends the line (with its newline) for `record` to `out`, if this
    /// renderer shows such records.
    fn record(&mut self, record: &Record, out: &mut String);
    /// Appends what goes before the first record, if anything.
    fn preamble(&mut self, _out: &mut String) {}
}
