//! `top` without a terminal: records and keys drive the App, ratatui's
//! TestBackend takes the frames, and the tests read the cells.
use std::io::BufReader;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    style::{Color, Modifier},
};

use super::{
    app::{App, Flow},
    ui,
};
use crate::{
    analysis::listeners::What,
    event::QueueSample,
    event::{Detail, Event, Owner, Proto, SockId, TcpState, TcpStats},
    input::Reader,
    source::KernelCounters,
    track::{Known, Record},
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const RECORDING: &str = include_str!("../../../fixtures/listeners-and-churn.jsonl");
/// 2026-11-25T17:26:52Z, in the recording's clock (wall time): the second
/// after its last connection ended in TIME_WAIT.
const AFTER_CHURN: u64 = 1_795_627_612 * S;

/// The frame of `app` at `width` x `height`.
fn draw(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(app, frame)).unwrap();
    terminal.backend().buffer().clone()
}

/// The text of each line of `buffer`.
fn lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// The line holding all of `words` (in order, any spacing); its index.
fn find(lines: &[String], words: &[&str]) -> Option<usize> {
    lines.iter().position(|line| {
        let mut rest = line.as_str();
        words.iter().all(|w| match rest.find(w) {
            Some(at) => {
                rest = &rest[at + w.len()..];
                true
            }
            None => false,
        })
    })
}

fn line_of(lines: &[String], words: &[&str]) -> usize {
    find(lines, words).unwrap_or_else(|| panic!("no line with {words:?} in\n{}", lines.join("\n")))
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        assert_eq!(app.key(key(KeyCode::Char(c))), Flow::Continue, "{c:?}");
    }
}

/// Socket `sock` of `pid` `comm` going `old -> new`.
fn state(
    at: u64,
    sock: u64,
    (pid, comm): (u32, &str),
    (local, remote): (&str, &str),
    (old, new): (TcpState, TcpState),
) -> Record {
    let mut e = Event::sample(
        at,
        pid,
        comm,
        Proto::Tcp,
        Detail::transition(local, remote, old, new),
    );
    e.sock = Some(SockId(sock));
    Record::Event(e)
}

/// An established connection of `pid` `comm` from local port `port`,
/// since `at`.
fn established(at: u64, sock: u64, pid: u32, comm: &str, port: u16, remote: &str) -> Record {
    state(
        at,
        sock,
        (pid, comm),
        (&format!("10.0.0.1:{port}"), remote),
        (TcpState::SynSent, TcpState::Established),
    )
}

/// The recording's records, up to (not including) the first at or after
/// `until_ns`, and the rest.
fn recording(until_ns: u64) -> (Vec<Record>, Vec<Record>) {
    let records: Vec<Record> = Reader::new(BufReader::new(RECORDING.as_bytes()))
        .map(|r| r.expect("a valid line"))
        .collect();
    records.into_iter().partition(|r| r.at() < until_ns)
}

#[test]
fn the_recording_at_80x24() {
    let mut app = App::new(1000 * MS, 10 * S);
    let (churn, ends) = recording(AFTER_CHURN);
    assert_eq!(ends.len(), 16, "the TIME_WAIT ends, a minute later");
    for r in &churn {
        app.record(r);
    }
    app.tick(AFTER_CHURN);
    let frame = draw(&mut app, 80, 24);
    let text = lines(&frame);
    let all = text.join("\n");

    // 170 events in 17:26:51, the last whole second.
    assert!(
        text[0].starts_with(" 170 ev/s │ dropped 0 │ LIVE │ sort age │ filter: -"),
        "{all}"
    );
    for title in [
        "┌ Connections 0 ─",
        "┌ Listeners 5 (0 open) ─",
        "┌ TIME_WAIT 3 (16 now) ─",
    ] {
        assert!(all.contains(title), "{title} in\n{all}");
    }
    // Every listener closed within a second but the failed bind's row.
    let restarts = line_of(
        &text,
        &[
            "tcp", "47001", "listen", "sockops", "0", "-", "5", "5", "0", "2.0",
        ],
    );
    let failed = line_of(
        &text,
        &["tcp", "47004", "bound", "python3", "0", "-", "0", "0", "1"],
    );
    let udp = line_of(
        &text,
        &[
            "udp",
            "47002",
            "bound",
            "python3",
            "0",
            "-",
            "1",
            "1",
            "0",
            "300.22 ms",
        ],
    );
    // The cells of the program column.
    let style = |y: usize| {
        let cell = &frame[(10, y as u16)];
        (cell.fg, cell.modifier)
    };
    for y in [restarts, udp] {
        assert_eq!(
            style(y),
            (Color::Yellow, Modifier::BOLD),
            "short-lived: {}",
            text[y]
        );
    }
    assert_eq!(
        style(failed),
        (Color::Reset, Modifier::empty()),
        "{}",
        text[failed]
    );

    // Servers that closed first by local port, clients by destination.
    let port = line_of(&text, &["local port 47003", "6", "6"]);
    let to_1 = line_of(&text, &["→ 127.0.0.1:47003", "5", "5"]);
    let to_2 = line_of(&text, &["→ 127.0.0.2:47003", "5", "5"]);
    assert!(port < to_1 && to_1 < to_2, "{all}");
    // Two seconds of history (51, 52), full both.
    assert!(
        text[port].trim_end_matches([' ', '│']).ends_with("██"),
        "{}",
        text[port]
    );
    assert!(
        text[23].contains("q quit  p pause"),
        "the keys, at the bottom: {all}"
    );

    // A minute later they have all ended; the history keeps them.
    for r in &ends {
        app.record(r);
    }
    app.tick(AFTER_CHURN + 61 * S);
    let text = lines(&draw(&mut app, 80, 24));
    let port = line_of(&text, &["local port 47003", "0", "6"]);
    assert!(text[port].contains('█'), "{}", text[port]);
    assert!(
        find(&text, &["TIME_WAIT 3 (0 now)"]).is_some(),
        "{}",
        text.join("\n")
    );
}

#[test]
fn a_connection_shows_its_owner_state_and_age() {
    let mut app = App::new(1000 * MS, 10 * S);
    app.record(&state(
        10 * S,
        1,
        (4242, "curl"),
        ("10.0.0.1:0", "93.184.216.34:443"),
        (TcpState::Close, TcpState::SynSent),
    ));
    app.record(&established(
        10 * S + MS,
        1,
        4242,
        "curl",
        50000,
        "93.184.216.34:443",
    ));
    app.tick(11 * S + 500 * MS);
    let text = lines(&draw(&mut app, 80, 24));
    assert!(
        text[0].starts_with(" 2 ev/s "),
        "two in second 10: {}",
        text[0]
    );
    app.tick(13 * S + 500 * MS);
    let text = lines(&draw(&mut app, 80, 24));
    assert!(
        text[0].starts_with(" 0 ev/s "),
        "none in second 12: {}",
        text[0]
    );
    let header = line_of(&text, &["PID", "COMM", "STATE", "AGE", "LOCAL", "REMOTE"]);
    let row = line_of(
        &text,
        &[
            "4242",
            "curl",
            "ESTABLISHED",
            "3s",
            "10.0.0.1:50000",
            "93.184.216.34:443",
        ],
    );
    assert_eq!(row, header + 1);
    assert!(find(&text, &["Connections 1"]).is_some());
    // Gone once it closes.
    app.record(&state(
        14 * S,
        1,
        (4242, "curl"),
        ("10.0.0.1:50000", "93.184.216.34:443"),
        (TcpState::Established, TcpState::Close),
    ));
    let text = lines(&draw(&mut app, 80, 24));
    assert!(find(&text, &["4242", "curl"]).is_none());
    assert!(find(&text, &["Connections 0"]).is_some());
}

/// Connection 1 of curl (pid 4242) to 93.184.216.34:443: connect() at
/// 10 s, ESTABLISHED 12.5 ms later after one SYN sent again.
fn handshake(app: &mut App) {
    app.record(&state(
        10 * S,
        1,
        (4242, "curl"),
        ("10.0.0.1:0", "93.184.216.34:443"),
        (TcpState::Close, TcpState::SynSent),
    ));
    let Record::Event(mut e) = established(
        10 * S + 12_500_000,
        1,
        4242,
        "curl",
        50000,
        "93.184.216.34:443",
    ) else {
        unreachable!()
    };
    if let Detail::State { info, .. } = &mut e.detail {
        info.tcp = Some(TcpStats {
            retransmits: 1,
            srtt_us: 11_000,
            rttvar_us: 500,
        });
    }
    app.record(&Record::Event(e));
}

#[test]
fn a_connection_shows_its_handshake_once_established() {
    let mut app = App::new(1000 * MS, 10 * S);
    app.record(&state(
        10 * S,
        2,
        (4243, "wget"),
        ("10.0.0.1:0", "10.0.0.3:80"),
        (TcpState::Close, TcpState::SynSent),
    ));
    handshake(&mut app);
    app.tick(13 * S);
    let text = lines(&draw(&mut app, 80, 24));
    let header = line_of(
        &text,
        &[
            "PID", "COMM", "STATE", "AGE", "LOCAL", "REMOTE", "CONN_MS", "RETR",
        ],
    );
    let row = line_of(
        &text,
        &[
            "4242",
            "curl",
            "ESTABLISHED",
            "2s",
            "10.0.0.1:50000",
            "93.184.216.34:443",
            "12.500",
            "1",
        ],
    );
    assert_eq!(row, header + 2, "{}", text.join("\n"));
    // Still connecting (and the oldest in its state): not known yet.
    let connecting = line_of(
        &text,
        &["4243", "wget", "SYN_SENT", "3s", "10.0.0.3:80", "-", "-"],
    );
    assert_eq!(connecting, header + 1);
}

#[test]
fn narrow_panes_drop_the_handshake_before_the_addresses() {
    let mut app = App::new(1000 * MS, 10 * S);
    handshake(&mut app);
    app.record(&established(
        11 * S,
        3,
        4_194_303,
        "systemd-resolve",
        40000,
        "[2001:db8::53]:53",
    ));
    app.tick(13 * S);
    let text = lines(&draw(&mut app, 80, 24));
    let all = text.join("\n");
    assert!(find(&text, &["CONN_MS"]).is_none(), "{all}");
    // The program's name cut at 12 columns, both addresses whole.
    line_of(
        &text,
        &[
            "4194303",
            "systemd-reso",
            "ESTABLISHED",
            "2s",
            "10.0.0.1:40000",
            "[2001:db8::53]:53",
        ],
    );
    line_of(
        &text,
        &[
            "4242",
            "curl",
            "ESTABLISHED",
            "10.0.0.1:50000",
            "93.184.216.34:443",
        ],
    );
    // Wider, it is back.
    let text = lines(&draw(&mut app, 120, 30));
    line_of(&text, &["4242", "curl", "93.184.216.34:443", "12.500", "1"]);
    line_of(
        &text,
        &["4194303", "systemd-resolve", "[2001:db8::53]:53", "-", "-"],
    );
}

#[test]
fn listeners_show_their_accept_queue_and_a_dropping_one_stands_out() {
    let mut app = App::new(1000 * MS, 10 * S);
    for (sock, port, comm) in [(1, 8080, "nginx"), (2, 9090, "api")] {
        app.record(&state(
            S,
            sock,
            (7, comm),
            (&format!("0.0.0.0:{port}"), "0.0.0.0:0"),
            (TcpState::Close, TcpState::Listen),
        ));
    }
    let sample = |sock, depth, drops| QueueSample {
        sock: SockId(sock),
        depth,
        backlog: 4096,
        drops,
    };
    // The first sample of a listener we saw open: all it dropped is news.
    let notes = app.queues(2 * S, &[sample(1, 0, 0), sample(2, 0, 0)]);
    assert!(notes.is_empty(), "{notes:?}");
    let notes = app.queues(3 * S, &[sample(1, 2, 0), sample(2, 4096, 12)]);
    assert_eq!(notes.len(), 1, "returned for the metrics: {notes:?}");
    assert_eq!(
        (notes[0].sock, notes[0].what),
        (
            SockId(2),
            What::Dropped {
                dropped: 12,
                depth: 4096,
                backlog: 4096
            }
        )
    );
    app.tick(3 * S);
    let frame = draw(&mut app, 80, 24);
    let text = lines(&frame);
    let all = text.join("\n");
    line_of(
        &text,
        &[
            "PROTO", "PORT", "KIND", "COMM", "OPEN", "QUEUE", "DROPS", "CYCLES", "SHORT", "FAILED",
            "MEDIAN",
        ],
    );
    let quiet = line_of(
        &text,
        &[
            "tcp", "8080", "listen", "nginx", "1", "2/4096", "0", "0", "0", "0", "-",
        ],
    );
    let dropping = line_of(
        &text,
        &[
            "tcp",
            "9090",
            "listen",
            "api",
            "1",
            "4096/4096",
            "12",
            "0",
            "0",
            "0",
            "-",
        ],
    );
    let style = |y: usize| {
        let cell = &frame[(3, y as u16)];
        (cell.fg, cell.modifier)
    };
    assert_eq!(style(dropping), (Color::Red, Modifier::BOLD), "{all}");
    assert_eq!(style(quiet), (Color::Reset, Modifier::empty()), "{all}");
    // Drops stay counted; the queue is what the last sample said.
    app.queues(4 * S, &[sample(1, 0, 0), sample(2, 0, 12)]);
    let text = lines(&draw(&mut app, 80, 24));
    line_of(&text, &["9090", "listen", "api", "1", "0/4096", "12"]);
}

#[test]
fn stuck_connections_have_a_pane_and_are_marked_among_the_connections() {
    use crate::escape::{FORGING, FORGING_SHOWN};
    let mut app = App::new(1000 * MS, 10 * S);
    let to = |sock, at, (pid, comm), local: &str, new| {
        let old = match new {
            TcpState::SynSent => TcpState::Close,
            TcpState::FinWait2 => TcpState::FinWait1,
            _ => TcpState::Established,
        };
        state(at, sock, (pid, comm), (local, "10.0.0.2:443"), (old, new))
    };
    // Already in CLOSE_WAIT at start (5 s): at least 20 s at 25 s.
    app.record(&Record::Existing(
        Known {
            sock: SockId(1),
            netns: 1,
            state: TcpState::CloseWait,
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: "10.0.0.9:41000".parse().unwrap(),
            owner: Owner::UNKNOWN,
        },
        5 * S,
    ));
    for r in [
        to(
            2,
            8 * S,
            (300, "leaky"),
            "10.0.0.1:40002",
            TcpState::CloseWait,
        ),
        to(
            3,
            12 * S,
            (301, FORGING),
            "10.0.0.1:40003",
            TcpState::FinWait2,
        ),
        to(4, 14 * S, (302, "curl"), "10.0.0.1:0", TcpState::SynSent),
        // Not long enough, or not a state to stick in.
        to(
            5,
            20 * S,
            (303, "leaky"),
            "10.0.0.1:40005",
            TcpState::CloseWait,
        ),
        established(6 * S, 6, 304, "ssh", 40006, "10.0.0.2:22"),
    ] {
        app.record(&r);
    }
    app.tick(25 * S);
    let frame = draw(&mut app, 80, 24);
    let text = lines(&frame);
    let all = text.join("\n");
    let title = line_of(&text, &["┌ Stuck 4 over 10.00 s"]);
    let header = line_of(&text, &["PID", "COMM", "STATE", "AGE", "LOCAL", "REMOTE"]);
    assert!(header < title, "the connections pane first: {all}");
    // The oldest first; the name escaped, cut to fit.
    let rows: Vec<usize> = [
        vec![
            "-",
            "-",
            "CLOSE_WAIT",
            ">20s",
            "10.0.0.1:8080",
            "10.0.0.9:41000",
        ],
        vec![
            "300",
            "leaky",
            "CLOSE_WAIT",
            "17s",
            "10.0.0.1:40002",
            "10.0.0.2:443",
        ],
        vec![
            "301",
            &FORGING_SHOWN[..15],
            "FIN_WAIT2",
            "13s",
            "10.0.0.1:40003",
        ],
        vec![
            "302",
            "curl",
            "SYN_SENT",
            "11s",
            "10.0.0.1:0",
            "10.0.0.2:443",
        ],
    ]
    .iter()
    .map(|words| {
        let below: Vec<String> = text[title..].to_vec();
        title + line_of(&below, words)
    })
    .collect();
    assert_eq!(rows, [title + 2, title + 3, title + 4, title + 5], "{all}");
    assert!(text[23].contains("q quit  p pause"), "the keys: {all}");
    assert!(!all.contains("mXFAKE"), "{all}");

    // Among the connections (all of them on a taller terminal), the
    // stuck ones in red.
    let frame = draw(&mut app, 80, 30);
    let text = lines(&frame);
    let all = text.join("\n");
    let title = line_of(&text, &["┌ Stuck 4"]);
    let style = |words: &[&str]| {
        let y = line_of(&text[..title], words);
        let cell = &frame[(1, y as u16)];
        (cell.fg, cell.modifier)
    };
    let red = (Color::Red, Modifier::BOLD);
    assert_eq!(style(&["300", "leaky", "CLOSE_WAIT", "17s"]), red, "{all}");
    assert_eq!(style(&["302", "curl", "SYN_SENT"]), red, "{all}");
    let plain = (Color::Reset, Modifier::empty());
    assert_eq!(style(&["303", "leaky", "CLOSE_WAIT", "5s"]), plain, "{all}");
    assert_eq!(style(&["304", "ssh", "ESTABLISHED"]), plain, "{all}");

    // Tab reaches it last.
    press_tab(&mut app, 3);
    let frame = draw(&mut app, 80, 30);
    assert_eq!(frame[(0, title as u16)].fg, Color::Cyan);
    // Once it closes, it is no longer stuck.
    app.record(&to(
        2,
        26 * S,
        (300, "leaky"),
        "10.0.0.1:40002",
        TcpState::LastAck,
    ));
    let text = lines(&draw(&mut app, 80, 24));
    line_of(&text, &["┌ Stuck 3 over 10.00 s"]);
}

#[test]
fn with_none_stuck_the_pane_is_its_borders() {
    let mut app = three();
    let text = lines(&draw(&mut app, 80, 24));
    let all = text.join("\n");
    assert!(text[22].starts_with("┌ Stuck 0 over 10.00 s ─"), "{all}");
    assert!(text[23].starts_with("└ q quit"), "{all}");
}

fn press_tab(app: &mut App, times: usize) {
    for _ in 0..times {
        app.key(key(KeyCode::Tab));
    }
}

#[test]
fn losses_show_in_the_status_line() {
    let mut app = App::new(1000 * MS, 10 * S);
    let counters = KernelCounters {
        ring_drops: 3,
        recursion_misses: 2,
        ..KernelCounters::default()
    };
    app.record(&Record::Loss(counters, 5 * S));
    let frame = draw(&mut app, 80, 24);
    let status = &lines(&frame)[0];
    let at = status.find("dropped 5").expect(status) as u16;
    assert_eq!(frame[(at, 0)].fg, Color::Red);
}

/// Three connections: nginx (pid 300) the oldest, curl (100), ssh (200).
fn three() -> App {
    let mut app = App::new(1000 * MS, 10 * S);
    for r in [
        established(S, 3, 300, "nginx", 8080, "10.0.0.9:41000"),
        established(2 * S, 1, 100, "curl", 50001, "10.0.0.7:443"),
        established(3 * S, 2, 200, "ssh", 50002, "10.0.0.8:22"),
    ] {
        app.record(&r);
    }
    app.tick(10 * S);
    app
}

/// The programs in the connections pane, top to bottom.
fn programs(app: &mut App) -> Vec<String> {
    let text = lines(&draw(app, 80, 24));
    let header = line_of(&text, &["PID", "COMM", "STATE"]);
    text[header + 1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .take_while(|comm| ["nginx", "curl", "ssh", "wget"].contains(&comm.as_str()))
        .collect()
}

#[test]
fn sort_cycles_age_pid_state_remote() {
    let mut app = three();
    assert_eq!(programs(&mut app), ["nginx", "curl", "ssh"], "oldest first");
    press(&mut app, "s");
    assert_eq!(programs(&mut app), ["curl", "ssh", "nginx"], "by pid");
    assert!(lines(&draw(&mut app, 80, 24))[0].contains("sort pid"));
    press(&mut app, "s");
    assert!(lines(&draw(&mut app, 80, 24))[0].contains("sort state"));
    press(&mut app, "s");
    assert_eq!(programs(&mut app), ["curl", "ssh", "nginx"], "by remote");
    press(&mut app, "s");
    assert_eq!(programs(&mut app), ["nginx", "curl", "ssh"], "age again");
}

#[test]
fn the_filter_narrows_the_connections() {
    let mut app = three();
    press(&mut app, "/ngi");
    let text = lines(&draw(&mut app, 80, 24));
    assert!(text[0].contains("filter: ngi"), "{}", text[0]);
    assert!(
        text[0].contains("(Enter keeps, Esc clears)"),
        "typing: {}",
        text[0]
    );
    assert_eq!(programs(&mut app), ["nginx"]);
    // Typing, q is a letter; Enter keeps the filter.
    press(&mut app, "q");
    assert_eq!(programs(&mut app), Vec::<String>::new());
    app.key(key(KeyCode::Backspace));
    app.key(key(KeyCode::Enter));
    assert_eq!(programs(&mut app), ["nginx"]);
    // Addresses and pids match too.
    press(&mut app, "/10.0.0.8");
    assert_eq!(programs(&mut app), ["ssh"]);
    app.key(key(KeyCode::Enter));
    press(&mut app, "/200");
    app.key(key(KeyCode::Enter));
    assert_eq!(programs(&mut app), ["ssh"], "pid 200");
    // Esc clears it.
    app.key(key(KeyCode::Esc));
    assert_eq!(programs(&mut app), ["nginx", "curl", "ssh"]);
    assert!(lines(&draw(&mut app, 80, 24))[0].contains("filter: -"));
}

#[test]
fn pause_freezes_the_view_and_keeps_counting() {
    let mut app = three();
    press(&mut app, "p");
    app.record(&established(10 * S, 4, 400, "wget", 50003, "10.0.0.6:80"));
    app.tick(11 * S);
    let text = lines(&draw(&mut app, 80, 24));
    assert!(text[0].contains("PAUSED"), "{}", text[0]);
    assert!(
        text[0].contains(" 1 ev/s "),
        "counted while paused: {}",
        text[0]
    );
    assert_eq!(programs(&mut app), ["nginx", "curl", "ssh"]);
    let aged = line_of(&text, &["nginx", "ESTABLISHED", "9s"]);
    assert!(text[aged].contains("9s"), "ages frozen too");
    // Sorting works on what is frozen.
    press(&mut app, "s");
    assert_eq!(programs(&mut app), ["curl", "ssh", "nginx"]);
    press(&mut app, " ");
    assert_eq!(programs(&mut app), ["curl", "ssh", "nginx", "wget"]);
    assert!(lines(&draw(&mut app, 80, 24))[0].contains("LIVE"));
}

#[test]
fn quit_keys() {
    let mut app = App::new(1000 * MS, 10 * S);
    assert_eq!(app.key(key(KeyCode::Char('q'))), Flow::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    press(&mut app, "/");
    assert_eq!(app.key(ctrl_c), Flow::Quit, "even while typing a filter");
    assert_eq!(app.key(key(KeyCode::Char('c'))), Flow::Continue);
}

#[test]
fn tab_and_scrolling() {
    let mut app = App::new(1000 * MS, 10 * S);
    for i in 0..30u16 {
        let remote = format!("10.0.1.{i}:80");
        app.record(&established(
            u64::from(i) * S,
            u64::from(i),
            500,
            "wget",
            40000 + i,
            &remote,
        ));
    }
    app.tick(100 * S);
    // The oldest first: ports 40000, 40001, ...
    let text = lines(&draw(&mut app, 80, 24));
    let all = text.join("\n");
    let first = line_of(&text, &["Connections 1-"]);
    assert!(text[first].contains("of 30"), "{all}");
    let rows = |text: &[String]| -> Vec<u16> {
        text.iter()
            .filter_map(|l| l.split("10.0.0.1:").nth(1)?.get(..5)?.parse().ok())
            .collect()
    };
    let page = rows(&text);
    assert_eq!(page.first(), Some(&40000));
    let fit = page.len();
    app.key(key(KeyCode::PageDown));
    assert_eq!(rows(&lines(&draw(&mut app, 80, 24)))[0], 40000 + fit as u16);
    app.key(key(KeyCode::End));
    let text = lines(&draw(&mut app, 80, 24));
    assert_eq!(rows(&text).last(), Some(&40029));
    assert!(find(&text, &[&format!("Connections {}-30 of 30", 31 - fit)]).is_some());
    app.key(key(KeyCode::Up));
    assert_eq!(rows(&lines(&draw(&mut app, 80, 24))).last(), Some(&40028));
    app.key(key(KeyCode::Home));
    assert_eq!(rows(&lines(&draw(&mut app, 80, 24)))[0], 40000);

    // Tab moves the focus (a cyan border) to the listeners pane.
    let border = |frame: &Buffer, words: &[&str]| {
        let text = lines(frame);
        let y = line_of(&text, words) as u16;
        frame[(0, y)].fg
    };
    let frame = draw(&mut app, 80, 24);
    assert_eq!(border(&frame, &["Connections"]), Color::Cyan);
    assert_eq!(border(&frame, &["Listeners"]), Color::Reset);
    app.key(key(KeyCode::Tab));
    let frame = draw(&mut app, 80, 24);
    assert_eq!(border(&frame, &["Connections"]), Color::Reset);
    assert_eq!(border(&frame, &["Listeners"]), Color::Cyan);
    app.key(key(KeyCode::BackTab));
    assert_eq!(
        border(&draw(&mut app, 80, 24), &["Connections"]),
        Color::Cyan
    );
}

#[test]
fn any_size_draws_without_panicking() {
    let mut app = three();
    let (churn, _) = recording(AFTER_CHURN);
    for r in &churn {
        app.record(r);
    }
    app.tick(AFTER_CHURN);
    for (w, h) in [
        (0, 0),
        (1, 1),
        (20, 5),
        (40, 10),
        (79, 23),
        (80, 24),
        (200, 60),
    ] {
        draw(&mut app, w, h);
    }
    // Wide: listeners and TIME_WAIT side by side.
    let text = lines(&draw(&mut app, 200, 60));
    let listeners = line_of(&text, &["Listeners"]);
    assert_eq!(
        listeners,
        line_of(&text, &["TIME_WAIT"]),
        "{}",
        text.join("\n")
    );
}

#[test]
fn process_names_are_escaped_in_the_panes() {
    use crate::escape::{FORGING, FORGING_SHOWN};
    let mut app = App::new(1000 * MS, 10 * S);
    // A connection, and a listener that opened and closed, of a process
    // whose name clears the screen and forges a line.
    app.record(&established(S, 1, 42, FORGING, 40000, "10.0.0.2:443"));
    for (at, old, new) in [
        (S, TcpState::Close, TcpState::Listen),
        (2 * S, TcpState::Listen, TcpState::Close),
    ] {
        app.record(&state(
            at,
            2,
            (42, FORGING),
            ("127.0.0.1:7011", "0.0.0.0:0"),
            (old, new),
        ));
    }
    app.tick(3 * S);
    let text = lines(&draw(&mut app, 120, 30));
    let all = text.join("\n");
    // The connections pane cuts names at 15 columns; the listeners pane
    // has room for it all.
    line_of(&text, &["42", &FORGING_SHOWN[..15], "ESTABLISHED"]);
    line_of(&text, &["tcp", "7011", "listen", FORGING_SHOWN]);
    // Not what ratatui makes of the raw name (it drops control
    // characters, silently).
    assert!(!all.contains("mXFAKE"), "{all}");
}
