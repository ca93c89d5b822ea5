//! socktrace's own lines on standard error (`say!`): start-up, degraded
//! features, losses, the summary. None may be lost, and none may stall the
//! reader of the kernel's ring: standard error is often a pipe or the
//! journal's socket, shared with standard output (`2>&1`, systemd), and its
//! reader may be slow. So a line goes out as far as the stream takes it now,
//! never blocking ([`write_nowait`]); the rest waits here, in order, and goes out
//! with the next line, at each turn of the event loop ([`flush`]) and at exit
//! ([`finish`], as long as the reader keeps taking it). When standard output
//! shares the stream, its [`Output`](crate::writer::Output) sends these
//! lines itself, between its own ([`take`]), so neither cuts a line of the
//! other.
use std::{
    fmt,
    io::{self, Write as _},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::writer::{EXIT_PATIENCE, write_nowait};

/// The most kept for a reader that does not read (some 10000 lines);
/// beyond it lines are counted, and said once it reads again.
const MAX_WAITING: usize = 1 << 20;

struct Waiting {
    /// Whole lines, the first perhaps partly written already.
    bytes: Vec<u8>,
    /// Lines beyond `MAX_WAITING`, not said yet.
    dropped: u64,
    /// Standard output's `Output` shares the stream and sends `bytes`.
    merged: bool,
}

static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
    bytes: Vec::new(),
    dropped: 0,
    merged: false,
});

fn waiting() -> MutexGuard<'static, Waiting> {
    WAITING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line (the newline is added): what `say!` calls.
pub fn line(args: fmt::Arguments<'_>) {
    let mut w = waiting();
    let start = w.bytes.len();
    let _ = writeln!(w.bytes, "{args}");
    w.keep_from(start);
}

/// Bytes written by something that writes whole lines (the logger).
pub fn bytes(text: &[u8]) {
    let mut w = waiting();
    let start = w.bytes.len();
    w.bytes.extend_from_slice(text);
    w.keep_from(start);
}

/// Writes what waits, as far as the stream takes it now.
pub fn flush() {
    let mut w = waiting();
    if !w.merged {
        w.write_out();
    }
}

/// At exit: waits while the reader takes what is left; gives up after
/// [`EXIT_PATIENCE`] without progress.
pub fn finish() {
    let mut progress = Instant::now();
    let mut left = usize::MAX;
    loop {
        let now_left = {
            let mut w = waiting();
            w.merged = false;
            w.write_out();
            w.bytes.len()
        };
        if now_left == 0 {
            return;
        }
        if now_left < left {
            left = now_left;
            progress = Instant::now();
        } else if progress.elapsed() >= EXIT_PATIENCE {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// For standard output's `Output` when the two share a stream: from now
/// on it sends these lines (`on`), or no longer does, and `unsent`, which
/// it took and could not write, goes first again.
pub(crate) fn merge(on: bool, unsent: Vec<u8>) {
    let mut w = waiting();
    w.merged = on;
    if !unsent.is_empty() {
        let rest = std::mem::replace(&mut w.bytes, unsent);
        w.bytes.extend_from_slice(&rest);
    }
}

/// Moves the whole lines waiting into `into` (standard output's `Output`
/// writes them, at a line boundary of its own).
pub(crate) fn take(into: &mut Vec<u8>) {
    let mut w = waiting();
    w.say_dropped();
    into.append(&mut w.bytes);
}

impl Waiting {
    /// Keeps what was appended from `start` on if there is room (else
    /// counts the line), then writes what goes now.
    fn keep_from(&mut self, start: usize) {
        if self.bytes.len() > MAX_WAITING {
            self.bytes.truncate(start);
            self.dropped += 1;
        }
        if !self.merged {
            self.write_out();
        }
    }

    /// Once the lines that did not fit are out, says how many there were.
    fn say_dropped(&mut self) {
        if self.dropped > 0 && self.bytes.len() < MAX_WAITING / 2 {
            let _ = writeln!(
                self.bytes,
                "socktrace: the reader of standard error fell behind: {} of our lines dropped",
                self.dropped
            );
            self.dropped = 0;
        }
    }

    fn write_out(&mut self) {
        self.say_dropped();
        let mut written = 0;
        while written < self.bytes.len() {
            match write_nowait(libc::STDERR_FILENO, &self.bytes[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Gone (`2>&1 | head`): nowhere to say anything.
                Err(_) => written = self.bytes.len(),
            }
        }
        self.bytes.drain(..written);
    }
}

/// The logger's output, into the same queue.
pub struct Lines;

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
