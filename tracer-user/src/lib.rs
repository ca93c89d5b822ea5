//! socktrace: a real-time socket event tracer. The pipeline, one module a
//! stage: probe (load/attach) -> source (ring) -> event (decode) -> track
//! (lifecycles, owners, TIME_WAIT) -> output (render); diag and proc look
//! at sockets that predate us; `watch` wires them. `input` reads the JSON
//! lines back into the same records, for offline analyses.
pub mod cli;
pub mod clock;
pub mod diag;
pub mod event;
pub mod input;
pub mod output;
pub mod probe;
pub mod proc;
pub mod source;
pub mod summary;
pub mod track;
pub mod watch;
