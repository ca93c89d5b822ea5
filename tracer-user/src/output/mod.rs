//! Rendering events: columns for people, JSON lines for programs. Renderers
//! append to a caller-owned buffer so a whole batch goes out in one write.
mod json;
mod text;

pub use json::Json;
pub use text::Text;

use crate::event::Event;

pub trait Render {
    /// Appends a line (with its newline) for `event` to `out`.
    fn event(&mut self, event: &Event, out: &mut String);
    /// Appends what goes before the first event, if anything.
    fn preamble(&mut self, _out: &mut String) {}
}
