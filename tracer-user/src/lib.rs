//! socktrace: a real-time socket event tracer. The pipeline, one module a
//! stage: probe (load/attach) -> source (ring) -> event (decode) -> track
//! (lifecycles, owners, TIME_WAIT) -> output (render); diag and proc look
//! at sockets that predate us; `metrics` exports counts for Prometheus;
//! `watch` wires them.
pub mod cli;
pub mod clock;
pub mod diag;
pub mod event;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod proc;
pub mod source;
pub mod summary;
pub mod track;
pub mod watch;
