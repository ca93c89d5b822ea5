//! `socktrace top` on a real terminal: tmux gives it an 80x24 pane, a real
//! loopback listener and connection show up in it, `q` leaves the
//! terminal as it was, and no thread of it keeps a privilege.
mod common;

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{assert_unprivileged, free_port, require_root, socktrace_bin, unique_name};

const TMUX: &str = "/usr/bin/tmux";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A tmux server of our own (never the user's), with one 80x24 session
/// running a shell; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start() -> Tmux {
        assert!(
            Path::new(TMUX).is_file(),
            "this test drives `socktrace top` in tmux, which is not installed ({TMUX}); \
             install it (`apt-get install tmux`; `cargo xtask test` does)"
        );
        let tmux = Tmux {
            socket: unique_name("top"),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "top",
            "sh",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(TMUX)
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Types `text`, then Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "top", "-l", text]);
        self.run(&["send-keys", "-t", "top", "Enter"]);
    }

    /// The screen once `done(screen)` holds; panics after a timeout,
    /// naming `what` it waited for and showing the last screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Quietly: the server is gone already when its last pane exited.
        let _ = Command::new(TMUX)
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The line of `screen` holding all of `words`, in order.
fn line_with<'a>(screen: &'a str, words: &[&str]) -> Option<&'a str> {
    screen.lines().find(|line| {
        let mut rest = *line;
        words.iter().all(|w| match rest.find(w) {
            Some(at) => {
                rest = &rest[at + w.len()..];
                true
            }
            None => false,
        })
    })
}

#[test]
fn top_shows_a_real_listener_and_connection_and_q_restores_the_terminal() {
    require_root();
    let tmux = Tmux::start();
    let port = free_port("127.0.0.1");
    let bin = socktrace_bin();
    tmux.type_line(&format!(
        "{} top --port {port}; echo \"top exited: $?\"",
        bin.display()
    ));
    // Drawn once attached: every pane's title fits in 80x24.
    tmux.wait_for("the view", |s| {
        ["┌ Connections", "┌ Listeners", "┌ TIME_WAIT", "ev/s"]
            .iter()
            .all(|w| s.contains(w))
    });

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listening");
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    let pid = std::process::id().to_string();
    let target = format!("127.0.0.1:{port}");
    let screen = tmux.wait_for("our listener and connection", |s| {
        line_with(s, &["tcp", &port.to_string(), "listen", "1"]).is_some()
            && line_with(s, &[&pid, "ESTABLISHED", &target]).is_some()
    });
    // Both ends of the connection are ours.
    let ends = screen
        .lines()
        .filter(|l| line_with(l, &[&pid, "ESTABLISHED"]).is_some())
        .count();
    assert_eq!(ends, 2, "{screen}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let screen = tmux.wait_for("socktrace to exit", |s| s.contains("top exited: "));
    assert!(screen.contains("top exited: 0"), "{screen}");
    assert!(
        !screen.contains("┌ Connections"),
        "the view is gone with the alternate screen:\n{screen}"
    );
    assert!(
        screen.contains("socktrace: attached in"),
        "what went to stderr is shown afterwards:\n{screen}"
    );
    assert!(
        line_with(&screen, &["socktrace:", "events (state"]).is_some(),
        "the summary:\n{screen}"
    );
    // The terminal is back in cooked mode, echoing.
    tmux.type_line(
        "clear; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e -icanon -e -echo",
    );
    let screen = tmux.wait_for("stty", |s| s.lines().any(|l| l.trim() == "echo"));
    let modes: Vec<&str> = screen
        .lines()
        .map(str::trim)
        .filter(|l| ["icanon", "echo", "-icanon", "-echo"].contains(l))
        .collect();
    assert_eq!(modes, ["icanon", "echo"], "{screen}");
    drop((client, server, listener));
}

#[test]
fn top_gives_up_every_capability_on_every_thread() {
    require_root();
    let tmux = Tmux::start();
    let port = free_port("127.0.0.1");
    // The pane's shell becomes socktrace: the pane's pid is its pid.
    let pid: u32 = tmux
        .run(&["display-message", "-p", "-t", "top", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("the pane's pid");
    tmux.type_line(&format!(
        "exec {} top --port {port}",
        socktrace_bin().display()
    ));
    tmux.wait_for("the view", |s| s.contains("ev/s") && s.contains("LIVE"));
    // The view is drawn from the start; privileges go once attached,
    // before the snapshot of existing sockets and any record is read. A thread that
    // kept them would keep them for good: this waits, the loop below checks.
    let deadline = Instant::now() + TIMEOUT;
    let main_thread = format!("/proc/{pid}/status");
    while !std::fs::read_to_string(&main_thread)
        .unwrap_or_default()
        .contains("CapEff:\t0000000000000000")
    {
        assert!(Instant::now() < deadline, "top kept its capabilities");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The view reads keys on a thread of its own (crossterm's).
    let threads = loop {
        let n = assert_unprivileged(pid, "top");
        if n > 1 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "top never started its key reader"
        );
        thread::sleep(Duration::from_millis(50));
    };
    // Keys still work on it: `q` quits.
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + TIMEOUT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "top ({threads} threads) did not quit on q"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
