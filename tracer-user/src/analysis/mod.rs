//! The answers people run socktrace for, computed from records (pure, no
//! I/O): the same code runs live and on a recording.
#[cfg(test)]
mod fixtures;
pub mod lifecycles;
pub mod listeners;
pub mod stuck;
pub mod timewait;
