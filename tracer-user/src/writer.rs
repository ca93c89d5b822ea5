//! Where rendered lines go, in large chunks. A consumer that stops reading
//! (`socktrace --json | sleep 100`) must not stop socktrace draining the
//! kernel's ring: on a pipe or socket the writes do not block; what cannot
//! be written waits in a bounded backlog, and beyond it whole lines are
//! dropped, counted, and reported once the consumer reads again. At exit,
//! what is left goes out as long as the consumer keeps taking it.
use std::{
    io::{self, Write},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// Write out once this much is buffered, even in the middle of a batch.
const CHUNK: usize = 1 << 20;
/// The most kept for a consumer that is not reading.
const BACKLOG: usize = 16 << 20;
/// At exit, how long to wait for a consumer that takes nothing more.
const EXIT_PATIENCE: Duration = Duration::from_secs(1);

pub struct Output {
    writer: Box<dyn Write>,
    /// Where renderers append lines.
    pub buf: String,
    /// Written in part: the rest waits for the consumer.
    backlog: Vec<u8>,
    /// Lines dropped since the consumer last caught up, and in all.
    dropped: u64,
    pub dropped_total: u64,
    /// The consumer is gone (closed pipe): stop quietly.
    pub closed: bool,
}

impl Output {
    /// Standard output; non-blocking if it is a pipe or a socket.
    pub fn stdout() -> Output {
        let stdout = io::stdout();
        set_nonblocking_if_stream(stdout.as_raw_fd());
        Output::new(Box::new(stdout.lock()))
    }

    pub fn new(writer: Box<dyn Write>) -> Output {
        Output {
            writer,
            buf: String::with_capacity(CHUNK + (1 << 12)),
            backlog: Vec::new(),
            dropped: 0,
            dropped_total: 0,
            closed: false,
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
            self.buf.clear();
            return;
        }
        if self.backlog.len() + self.buf.len() > BACKLOG {
            // The consumer is far behind: drop the newest whole lines.
            let lines = self.buf.bytes().filter(|&b| b == b'\n').count() as u64;
            self.dropped += lines;
            self.dropped_total += lines;
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

    /// Writes as much of the backlog as goes; true once it is all out.
    fn write_backlog(&mut self) -> bool {
        let mut written = 0;
        let done = loop {
            if written == self.backlog.len() {
                break self.writer.flush().is_ok() || {
                    self.closed = true;
                    true
                };
            }
            match self.writer.write(&self.backlog[written..]) {
                Ok(0) => {
                    self.closed = true;
                    break true;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => {
                    self.closed = true; // `| head` has exited: stop quietly
                    break true;
                }
            }
        };
        self.backlog.drain(..written);
        if self.closed {
            self.backlog.clear();
        }
        done
    }

    /// At exit: waits while the consumer takes what is left (the kernel
    /// programs are detached by now); what it stops taking for
    /// [`EXIT_PATIENCE`] is counted as dropped.
    pub fn finish(&mut self) {
        self.flush();
        let mut progress = Instant::now();
        while !self.backlog.is_empty() && !self.closed && progress.elapsed() < EXIT_PATIENCE {
            std::thread::sleep(Duration::from_millis(5));
            let before = self.backlog.len();
            self.write_backlog();
            if self.backlog.len() < before {
                progress = Instant::now();
            }
        }
        if !self.backlog.is_empty() {
            let lines = self.backlog.iter().filter(|&&b| b == b'\n').count() as u64;
            self.dropped_total += lines;
            self.backlog.clear();
        }
    }
}

/// O_NONBLOCK on `fd` if it is a FIFO or a socket (never on a terminal or a
/// file, whose description the shell may share).
fn set_nonblocking_if_stream(fd: i32) {
    // SAFETY: fstat/fcntl on our own descriptor with a valid stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return;
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFIFO || kind == libc::S_IFSOCK {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
    }
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
}
