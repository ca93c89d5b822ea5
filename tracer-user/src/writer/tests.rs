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
