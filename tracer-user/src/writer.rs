//! Where rendered lines go, in large chunks. A consumer that stops reading
//! (`socktrace --json | sleep 100`) must not stop socktrace draining the
//! kernel's ring: on a pipe or socket the writes do not block; what cannot
//! be written waits in a bounded backlog, and beyond it whole lines are
//! dropped, counted, and reported once the consumer reads again. At exit,
//! what is left goes out as long as the consumer keeps taking it.
//!
//! "Do not block" is asked per write (`RWF_NOWAIT`), never set on the open
//! file description (`O_NONBLOCK`): that one is shared with whoever holds
//! the same pipe, standard error first of all under `2>&1` or systemd,
//! whose writes would then fail and lose lines. When standard error is the
//! same stream, socktrace's own lines go out through here, between whole
//! lines of ours (see [`crate::stderr`]).
use bytes::{Buf as _, BytesMut};
use std::{
    io::{self, Write},
    os::fd::RawFd,
    time::{Duration, Instant},
};

/// Write out once this much is buffered, even in the middle of a batch.
const CHUNK: usize = 1 << 20;
/// The most kept for a consumer that is not reading.
const BACKLOG: usize = 16 << 20;
/// At exit, how long to wait for a consumer that takes nothing more.
pub const EXIT_PATIENCE: Duration = Duration::from_secs(1);

pub struct Output {
    writer: Box<dyn Write>,
    /// Where renderers append lines.
    pub buf: String,
    /// Written in part: the rest waits for the consumer. A partial write
    /// advances its start (no copy of what is left, up to `BACKLOG`).
    backlog: BytesMut,
    /// Lines dropped since the consumer last caught up, and in all.
    dropped: u64,
    pub dropped_total: u64,
    /// The consumer is gone (closed pipe), or writing failed: stop.
    pub closed: bool,
    /// Why writing failed, if not because the consumer went away (a full
    /// disk): the run ends with it.
    pub error: Option<io::Error>,
    /// Another writer's lines on this stream (standard error's), sent
    /// between ours.
    shared: Option<Box<dyn Shared>>,
    /// Lines taken from it, going out before the backlog.
    stderr_lines: Vec<u8>,
    /// What was written last ended a line (or nothing was written yet).
    at_line_start: bool,
}

impl Output {
    /// Standard output; never blocking if it is a pipe or a socket.
    pub fn stdout() -> Output {
        let mut out = Output::new(Box::new(NoWait(libc::STDOUT_FILENO)));
        if same_stream(libc::STDOUT_FILENO, libc::STDERR_FILENO) {
            crate::stderr::merge(true, Vec::new());
            out.shared = Some(Box::new(Stderr));
        }
        out
    }

    pub fn new(writer: Box<dyn Write>) -> Output {
        Output {
            writer,
            buf: String::with_capacity(CHUNK + (1 << 12)),
            backlog: BytesMut::new(),
            dropped: 0,
            dropped_total: 0,
            closed: false,
            error: None,
            shared: None,
            stderr_lines: Vec::new(),
            at_line_start: true,
        }
    }

    /// Lines wait for a consumer that is not taking them: they go out as
    /// the loop comes round, so it must not sleep.
    pub fn behind(&self) -> bool {
        !self.backlog.is_empty() || !self.stderr_lines.is_empty()
    }

    pub fn flush_if_full(&mut self) {
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    /// Writes what the consumer takes now; keeps or drops the rest.
    pub fn flush(&mut self) {
        if self.closed {
            if self.error.is_some() {
                // Lost, not refused: counted.
                self.drop_lines_of_buf();
            }
            self.buf.clear();
            return;
        }
        if self.backlog.len() + self.buf.len() > BACKLOG {
            // The consumer is far behind: drop the newest whole lines.
            self.drop_lines_of_buf();
        } else {
            self.backlog.extend_from_slice(self.buf.as_bytes());
        }
        self.buf.clear();
        if self.write_backlog() && self.dropped > 0 {
            say!(
                "socktrace: the output reader fell behind: {} lines dropped ({} in all)",
                self.dropped,
                self.dropped_total
            );
            self.dropped = 0;
        }
    }

    fn drop_lines_of_buf(&mut self) {
        let lines = lines_in(self.buf.as_bytes());
        self.dropped += lines;
        self.dropped_total += lines;
    }

    /// Empties the backlog, counting its lines dropped.
    fn drop_backlog(&mut self) {
        self.dropped_total += lines_in(&self.backlog);
        self.backlog.clear();
    }

    /// Writes as much of the backlog (and of standard error's lines, when
    /// they share the stream) as goes; true once it is all out.
    fn write_backlog(&mut self) -> bool {
        match self.send_backlog() {
            Ok(done) => done,
            Err(err) => {
                self.closed = true;
                // `| head` has exited: stop quietly. Anything else is said,
                // and what was waiting is counted.
                if err.kind() == io::ErrorKind::BrokenPipe {
                    self.backlog.clear();
                } else {
                    self.drop_backlog();
                    self.error = Some(err);
                }
                true
            }
        }
    }

    /// The writing half of [`Self::write_backlog`]: sends until all is out
    /// (`Ok(true)`), the stream would block (`Ok(false)`) or fails.
    fn send_backlog(&mut self) -> io::Result<bool> {
        let Output {
            writer,
            backlog,
            stderr_lines,
            at_line_start,
            shared,
            ..
        } = self;
        let mut written = 0;
        let result = loop {
            if let Some(shared) = shared
                && *at_line_start
                && stderr_lines.is_empty()
            {
                shared.take(stderr_lines);
            }
            let ours = stderr_lines.is_empty();
            let data = if ours {
                &backlog[written..]
            } else {
                &stderr_lines[..]
            };
            if data.is_empty() {
                break match writer.flush() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    other => other.map(|()| true),
                };
            }
            match writer.write(data) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *at_line_start = data[n - 1] == b'\n';
                    if ours {
                        written += n;
                    } else {
                        stderr_lines.drain(..n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        self.backlog.advance(written);
        result
    }

    /// At exit: waits while the consumer takes what is left (the kernel
    /// programs are detached by now); what it stops taking for
    /// [`EXIT_PATIENCE`] is counted as dropped.
    pub fn finish(&mut self) {
        self.flush();
        let mut progress = Instant::now();
        let waiting = |out: &Output| out.backlog.len() + out.stderr_lines.len();
        while waiting(self) > 0 && !self.closed && progress.elapsed() < EXIT_PATIENCE {
            std::thread::sleep(Duration::from_millis(5));
            let before = waiting(self);
            self.write_backlog();
            if waiting(self) < before {
                progress = Instant::now();
            }
        }
        self.drop_backlog();
    }
}

fn lines_in(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl Drop for Output {
    /// The other writer's lines go out by themselves again, those we took
    /// and could not write first.
    fn drop(&mut self) {
        if let Some(shared) = &mut self.shared {
            shared.give_back(std::mem::take(&mut self.stderr_lines));
        }
    }
}

/// Another writer on the same stream, whose whole lines an [`Output`]
/// sends between its own.
pub trait Shared {
    /// Moves the whole lines waiting into `into`.
    fn take(&mut self, into: &mut Vec<u8>);
    /// The writer sends its lines itself again, `unsent` first.
    fn give_back(&mut self, unsent: Vec<u8>);
}

/// socktrace's own lines on standard error.
struct Stderr;

impl Shared for Stderr {
    fn take(&mut self, into: &mut Vec<u8>) {
        crate::stderr::take(into);
    }

    fn give_back(&mut self, unsent: Vec<u8>) {
        crate::stderr::merge(false, unsent);
    }
}

/// Writes `out` to `stream`, blocking, and empties it: `Ok(false)` when
/// the reader has gone (`| head`: stop quietly); any other failure (a full
/// disk) is the run's.
pub fn write_out(stream: &mut impl Write, out: &mut String) -> anyhow::Result<bool> {
    let result = stream
        .write_all(out.as_bytes())
        .and_then(|()| stream.flush());
    out.clear();
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing the output")),
    }
}

/// A file descriptor written without ever blocking on a pipe or socket.
pub struct NoWait(pub RawFd);

impl Write for NoWait {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_nowait(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes what `fd` takes now (`WouldBlock` if nothing): `RWF_NOWAIT`,
/// for this one call. What has no such mode (a terminal, a file) is
/// written as usual.
pub fn write_nowait(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over `buf`, which outlives the call; offset -1 is
    // the file's own position, as write(2).
    let n = unsafe { libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // SAFETY: write(2) from `buf`.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n >= 0 {
        Ok(n as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `a` and `b` are the same pipe or socket (`2>&1`; systemd's
/// journal stream): writes to one can land in the middle of a line of the
/// other.
fn same_stream(a: RawFd, b: RawFd) -> bool {
    let stat = |fd| {
        // SAFETY: fstat into a zeroed stat buffer.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(fd, &mut st) == 0).then_some(st)
        }
    };
    let (Some(a), Some(b)) = (stat(a), stat(b)) else {
        return false;
    };
    let kind = a.st_mode & libc::S_IFMT;
    (kind == libc::S_IFIFO || kind == libc::S_IFSOCK)
        && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

#[cfg(test)]
mod tests;
