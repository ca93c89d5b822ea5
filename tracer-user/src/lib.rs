//! socktrace: a real-time socket event tracer. The pipeline, one module a
//! stage: probe (load/attach) -> source (ring) -> event (decode) -> output
//! (render); `watch` wires them.
pub mod cli;
pub mod clock;
pub mod event;
pub mod output;
pub mod probe;
pub mod source;
pub mod summary;
pub mod watch;
