//! Joining the kernel's reason for a RST to the close it explains. A
//! connection aborted here (closed with unread data, or with `SO_LINGER`
//! 0) sends its RST just after its transition to CLOSE, in the same call:
//! its close record waits for that RST's reason, which comes in the next
//! ring record or few. A RST sent before the close (a keepalive or
//! FIN_WAIT2 timeout) is kept on the connection until it ends.
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Close, Record, Side};
use crate::event::SockId;

/// How long a close waits for its RST's reason before it goes out without
/// one: the kernel traces no RST it failed to allocate.
pub const RESET_WAIT_NS: u64 = 100_000_000;

#[derive(Debug, Default)]
pub struct Resets {
    /// The kernel's names of its reasons, by value; empty where its RSTs
    /// carry none (then no close waits).
    names: Vec<Arc<str>>,
    /// Closes whose RST is yet to come, by socket.
    awaiting: FxHashMap<SockId, Close>,
}

impl Resets {
    /// This kernel's RSTs carry a reason; `names` by value.
    pub fn name(&mut self, names: Vec<String>) {
        self.names = names.into_iter().map(Arc::from).collect();
    }

    /// The name of reason `code`: the kernel's, or its number for a value
    /// it did not name.
    pub fn named(&self, code: u32) -> Arc<str> {
        self.names
            .get(code as usize)
            .cloned()
            .unwrap_or_else(|| code.to_string().into())
    }

    /// Holds `close` until its RST's reason comes, if one is to come; else
    /// it goes to `out` now.
    pub fn close(&mut self, close: Close, out: &mut Vec<Record>) {
        if self.names.is_empty()
            || close.reset_by != Some(Side::Local)
            || close.reset_reason.is_some()
        {
            out.push(Record::Close(close));
            return;
        }
        self.awaiting.insert(close.sock, close);
    }

    /// The RST of `sock`, for reason `code`: its close goes out with it.
    /// Returns the name when no close awaits it (the connection may still
    /// be open).
    pub fn reset(&mut self, sock: SockId, code: u32, out: &mut Vec<Record>) -> Option<Arc<str>> {
        let name = self.named(code);
        match self.awaiting.remove(&sock) {
            Some(mut close) => {
                close.reset_reason = Some(name);
                out.push(Record::Close(close));
                None
            }
            None => Some(name),
        }
    }

    /// Closes that waited [`RESET_WAIT_NS`] by `now_ns` (all, at `None`: the
    /// end) go out without a reason, oldest first.
    pub fn release(&mut self, now_ns: Option<u64>, out: &mut Vec<Record>) {
        if self.awaiting.is_empty() {
            return;
        }
        let due = |c: &Close| now_ns.is_none_or(|now| c.mono_ns + RESET_WAIT_NS <= now);
        let mut released: Vec<Close> = self
            .awaiting
            .extract_if(|_, close| due(close))
            .map(|(_, close)| close)
            .collect();
        released.sort_by_key(|c| c.mono_ns);
        out.extend(released.into_iter().map(Record::Close));
    }
}
