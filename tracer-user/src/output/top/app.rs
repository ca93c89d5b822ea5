//! The state of `top` (pure): records, the clock and listeners' queue
//! samples go to its [`Feed`];
//! keys pause (freezing what is shown, never what is counted), sort and
//! filter the connections, switch and scroll panes, and quit.
use std::cmp::Ordering;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    conns::Conn,
    feed::{Feed, Rows},
};
use crate::{analysis::listeners::Note, event::QueueSample, track::Record};

/// What the driver does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// The order of the connections pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Longest in its state first.
    Age,
    Pid,
    /// By state name, then longest in it first.
    State,
    Remote,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Age => "age",
            Sort::Pid => "pid",
            Sort::State => "state",
            Sort::Remote => "remote",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Age => Sort::Pid,
            Sort::Pid => Sort::State,
            Sort::State => Sort::Remote,
            Sort::Remote => Sort::Age,
        }
    }

    fn order(self, a: &Conn, b: &Conn) -> Ordering {
        let by_age = b.age_ns.cmp(&a.age_ns).then(a.sock.cmp(&b.sock));
        match self {
            Sort::Age => by_age,
            // Unknown owners last.
            Sort::Pid => (a.pid.is_none(), a.pid)
                .cmp(&(b.pid.is_none(), b.pid))
                .then(by_age),
            Sort::State => a.state.name().cmp(b.state.name()).then(by_age),
            Sort::Remote => a.remote.cmp(&b.remote).then(by_age),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Connections,
    Listeners,
    TimeWait,
    Stuck,
}

impl Pane {
    pub const ALL: [Pane; 4] = [
        Pane::Connections,
        Pane::Listeners,
        Pane::TimeWait,
        Pane::Stuck,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    fn step(self, by: usize) -> Pane {
        Pane::ALL[(self.index() + by) % Pane::ALL.len()]
    }
}

/// How the panes are looked at: what the keys change.
#[derive(Debug)]
pub struct ViewState {
    pub sort: Sort,
    /// Connections whose program, pid or addresses contain it (any case).
    pub filter: String,
    /// Typing the filter (after `/`).
    pub editing: bool,
    pub focus: Pane,
    /// The first row shown, per pane (the renderer keeps it in range).
    pub scroll: [usize; Pane::ALL.len()],
    /// Rows that fit, per pane, as last drawn: what PgUp/PgDn move.
    pub page: [usize; Pane::ALL.len()],
}

pub struct App {
    pub(super) feed: Feed,
    /// What is shown while paused.
    pub(super) frozen: Option<Rows>,
    pub(super) view: ViewState,
}

impl App {
    /// Listeners that close within `short_ns` are short-lived; connections
    /// `stuck_ns` in CLOSE_WAIT, FIN_WAIT2 or SYN_SENT are stuck.
    pub fn new(short_ns: u64, stuck_ns: u64) -> App {
        App {
            feed: Feed::new(short_ns, stuck_ns),
            frozen: None,
            view: ViewState {
                sort: Sort::Age,
                filter: String::new(),
                editing: false,
                focus: Pane::Connections,
                scroll: [0; Pane::ALL.len()],
                page: [1; Pane::ALL.len()],
            },
        }
    }

    pub fn record(&mut self, record: &Record) {
        self.feed.record(record);
    }

    /// The time is `now_ns` (the records' clock).
    pub fn tick(&mut self, now_ns: u64) {
        self.feed.tick(now_ns);
    }

    /// Listeners' accept queues sampled at `now_ns`: what they dropped.
    pub fn queues(&mut self, now_ns: u64, samples: &[QueueSample]) -> Vec<Note> {
        self.feed.queues(now_ns, samples)
    }

    pub fn key(&mut self, key: KeyEvent) -> Flow {
        if key.kind != KeyEventKind::Press {
            return Flow::Continue;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Flow::Quit;
        }
        if self.view.editing {
            self.edit(key.code);
            return Flow::Continue;
        }
        let view = &mut self.view;
        let pane = view.focus.index();
        match key.code {
            KeyCode::Char('q') => return Flow::Quit,
            KeyCode::Char('p' | ' ') => {
                self.frozen = match self.frozen {
                    Some(_) => None,
                    None => Some(self.feed.rows()),
                };
            }
            KeyCode::Char('s') => view.sort = view.sort.next(),
            KeyCode::Char('/') => {
                view.editing = true;
                view.filter.clear();
                view.scroll[0] = 0;
            }
            KeyCode::Esc => {
                view.filter.clear();
                view.scroll[0] = 0;
            }
            KeyCode::Tab => view.focus = view.focus.step(1),
            KeyCode::BackTab => view.focus = view.focus.step(Pane::ALL.len() - 1),
            KeyCode::Up => view.scroll[pane] = view.scroll[pane].saturating_sub(1),
            KeyCode::Down => view.scroll[pane] = view.scroll[pane].saturating_add(1),
            KeyCode::PageUp => {
                view.scroll[pane] = view.scroll[pane].saturating_sub(view.page[pane]);
            }
            KeyCode::PageDown => {
                view.scroll[pane] = view.scroll[pane].saturating_add(view.page[pane]);
            }
            KeyCode::Home => view.scroll[pane] = 0,
            KeyCode::End => view.scroll[pane] = usize::MAX,
            _ => {}
        }
        Flow::Continue
    }

    /// A key while typing the filter: Enter keeps it, Esc clears it.
    fn edit(&mut self, code: KeyCode) {
        let view = &mut self.view;
        match code {
            KeyCode::Enter => view.editing = false,
            KeyCode::Esc => {
                view.editing = false;
                view.filter.clear();
            }
            KeyCode::Backspace => {
                view.filter.pop();
            }
            KeyCode::Char(c) => view.filter.push(c),
            _ => {}
        }
        view.scroll[0] = 0;
    }
}

impl ViewState {
    /// The connections of `rows` the filter lets through, in the sort order.
    pub fn connections<'a>(&self, rows: &'a Rows) -> Vec<&'a Conn> {
        let filter = self.filter.to_lowercase();
        let mut shown: Vec<&Conn> = rows
            .conns
            .iter()
            .filter(|c| filter.is_empty() || matches(c, &filter))
            .collect();
        shown.sort_by(|a, b| self.sort.order(a, b));
        shown
    }
}

/// Whether `c`'s program, pid or an address contains `filter` (lower case).
fn matches(c: &Conn, filter: &str) -> bool {
    let known = |text: String| text.to_lowercase().contains(filter);
    c.pid
        .is_some_and(|pid| known(pid.to_string()) || known(c.comm.to_string()))
        || known(c.local.to_string())
        || known(c.remote.to_string())
}
