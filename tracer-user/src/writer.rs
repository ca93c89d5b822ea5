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
        match result {
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
mod tests {
    use super::*;

    /// A consumer that takes `room` bytes, then would block.
    struct Slow {
        room: usize,
        got: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.got.borrow_mut().extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_costs_a_bounded_backlog_then_counted_lines() {
        let got = std::rc::Rc::default();
        let mut out = Output::new(Box::new(Slow {
            room: 10,
            got: std::rc::Rc::clone(&got),
        }));
        let line = "x".repeat(1023) + "\n";
        // 20 MiB of lines: 16 MiB wait, the rest is dropped and counted.
        for _ in 0..20 * 1024 {
            out.buf.push_str(&line);
            out.flush_if_full();
        }
        out.flush();
        assert_eq!(got.borrow().len(), 10);
        assert!(out.backlog.len() <= BACKLOG);
        assert_eq!(
            out.dropped_total,
            20 * 1024 - (out.backlog.len() as u64 + 10) / 1024
        );
        assert!(!out.closed);
        out.finish();
        assert_eq!(out.dropped_total, 20 * 1024);
    }

    #[test]
    fn a_reader_that_catches_up_at_exit_gets_every_line() {
        /// Takes 1000 bytes a call, every other call.
        struct Trickle {
            ready: bool,
            got: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
        }
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.ready = !self.ready;
                if !self.ready {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(1000);
                self.got.borrow_mut().extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let got = std::rc::Rc::default();
        let mut out = Output::new(Box::new(Trickle {
            ready: false,
            got: std::rc::Rc::clone(&got),
        }));
        let line = "y".repeat(99) + "\n";
        for _ in 0..1000 {
            out.buf.push_str(&line);
        }
        out.flush();
        out.finish();
        assert_eq!(got.borrow().len(), 100_000);
        assert_eq!(out.dropped_total, 0);
    }

    #[test]
    fn a_closed_reader_stops_the_output() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Output::new(Box::new(Gone));
        out.buf.push_str("line\n");
        out.flush();
        assert!(out.closed);
    }

    type Got = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;
    type Room = std::rc::Rc<std::cell::Cell<usize>>;

    /// A non-blocking pipe whose reader has made `room` bytes free.
    struct Pipe {
        room: Room,
        got: Got,
    }

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room.get());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room.set(self.room.get() - n);
            self.got.borrow_mut().extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An Output on a pipe behind a line buffer, as `io::stdout().lock()`
    /// is: its `flush` fails with WouldBlock while the pipe is full.
    fn line_buffered_pipe() -> (Output, Room, Got) {
        let (room, got) = (Room::default(), Got::default());
        let pipe = Pipe {
            room: std::rc::Rc::clone(&room),
            got: std::rc::Rc::clone(&got),
        };
        let out = Output::new(Box::new(std::io::LineWriter::new(pipe)));
        (out, room, got)
    }

    /// `n` lines of different lengths, each naming its number.
    fn lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("line {i} {}\n", "x".repeat(i * 37 % 500)))
            .collect()
    }

    /// How many whole lines `got` holds, checking each is one of `sent`
    /// (in order, none cut or glued).
    fn whole_lines(got: &[u8], sent: &[String]) -> usize {
        let text = std::str::from_utf8(got).expect("UTF-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a cut line at the end"
        );
        let mut next = 0;
        let mut n = 0;
        for line in text.split_inclusive('\n') {
            let at = sent[next..]
                .iter()
                .position(|s| s == line)
                .unwrap_or_else(|| panic!("not a line sent, or out of order: {line:?}"));
            next += at + 1;
            n += 1;
        }
        n
    }

    #[test]
    fn would_block_in_the_middle_of_a_line_loses_nothing() {
        // The pipe takes part of a line, then is full: the line buffer's
        // flush fails with WouldBlock, which is no closed reader.
        let (mut out, room, got) = line_buffered_pipe();
        let sent = lines(200);
        for (i, line) in sent.iter().enumerate() {
            out.buf.push_str(line);
            room.set([0, 5, 333, 0, 1, 4096][i % 6]);
            out.flush();
            assert!(!out.closed, "line {i}");
        }
        // The reader catches up.
        room.set(usize::MAX);
        out.finish();
        assert!(!out.closed && out.error.is_none());
        assert_eq!(out.dropped_total, 0);
        assert_eq!(whole_lines(&got.borrow(), &sent), sent.len());
    }

    #[test]
    fn lines_received_and_dropped_add_up_to_lines_produced() {
        // However a reader takes its bytes (in bits, stalling, catching
        // up), every line produced is received whole or counted dropped.
        for seed in 1..=20u64 {
            let (mut out, room, got) = line_buffered_pipe();
            let sent = lines(30_000);
            let mut rng = seed;
            let mut next = || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 33) as usize
            };
            for line in &sent {
                out.buf.push_str(line);
                if next() % 50 == 0 {
                    // The reader takes a little, or a lot, or nothing.
                    room.set(room.get() + [0, 1, 300, 70_000, 4 << 20][next() % 5]);
                    out.flush();
                } else {
                    out.flush_if_full();
                }
            }
            room.set(usize::MAX);
            out.finish();
            assert!(!out.closed, "seed {seed}");
            let received = whole_lines(&got.borrow(), &sent) as u64;
            assert_eq!(
                received + out.dropped_total,
                sent.len() as u64,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn another_writers_lines_go_between_whole_lines_of_ours() {
        /// Standard error's queue, for the test.
        struct Queue(Got);
        impl Shared for Queue {
            fn take(&mut self, into: &mut Vec<u8>) {
                into.append(&mut self.0.borrow_mut());
            }
            fn give_back(&mut self, unsent: Vec<u8>) {
                self.0.borrow_mut().splice(0..0, unsent);
            }
        }
        let (room, got, queue) = (Room::default(), Got::default(), Got::default());
        let mut out = Output::new(Box::new(Pipe {
            room: std::rc::Rc::clone(&room),
            got: std::rc::Rc::clone(&got),
        }));
        out.shared = Some(Box::new(Queue(std::rc::Rc::clone(&queue))));
        let ours = lines(100);
        for (i, line) in ours.iter().enumerate() {
            out.buf.push_str(line);
            if i % 7 == 0 {
                let theirs = format!("socktrace: said {i}\n");
                queue.borrow_mut().extend_from_slice(theirs.as_bytes());
            }
            // Odd amounts: ours are cut mid-line, theirs wait for its end.
            room.set(1 + i * 131 % 700);
            out.flush();
        }
        room.set(usize::MAX);
        out.finish();
        assert!(queue.borrow().is_empty());
        let text = String::from_utf8(got.borrow().clone()).unwrap();
        let (theirs, whole): (Vec<&str>, Vec<&str>) = text
            .split_inclusive('\n')
            .partition(|l| l.starts_with("socktrace: said "));
        assert_eq!(theirs.len(), 15);
        let whole: Vec<String> = whole.into_iter().map(String::from).collect();
        assert_eq!(whole, ours, "ours whole and in order, none glued");
    }
}
