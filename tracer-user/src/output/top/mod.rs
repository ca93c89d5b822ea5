//! The live terminal view of `socktrace top`: an [`App`] fed every
//! record, drawn every tick and on each key ([`Live`]), on a terminal set
//! up and put back by [`term::Screen`].
mod app;
mod columns;
mod conns;
mod feed;
mod panes;
mod population;
pub mod term;
#[cfg(test)]
mod tests;
mod ui;

use std::{
    io::{self, Stdout},
    pin::Pin,
    task::{Context, Poll},
};

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use futures_core::Stream;
use ratatui::{Terminal, backend::CrosstermBackend};

use self::app::{App, Flow};
use crate::{analysis::listeners::Note, event::QueueSample, output::Render, track::Record};

/// The App on a real terminal, reading keys as they come.
pub struct Live {
    app: App,
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// The keys, once the loop first asks for them: crossterm reads them
    /// on a thread of its own, which must start after privileges are
    /// dropped (they are per thread; see `privileges`).
    keys: Option<EventStream>,
    /// Drawing failed: the run ends with this.
    failed: Option<io::Error>,
}

impl Live {
    /// The view on standard output; `short_ns`: what counts as a short
    /// connection; `stuck_ns`: how long in CLOSE_WAIT, FIN_WAIT2 or
    /// SYN_SENT is stuck.
    pub fn new(short_ns: u64, stuck_ns: u64) -> io::Result<Live> {
        Ok(Live {
            app: App::new(short_ns, stuck_ns),
            terminal: Terminal::new(CrosstermBackend::new(io::stdout()))?,
            keys: None,
            failed: None,
        })
    }

    fn draw(&mut self) {
        let Live { app, terminal, .. } = self;
        if let Err(err) = terminal.draw(|frame| ui::render(app, frame)) {
            self.failed.get_or_insert(err);
        }
    }
}

impl Render for Live {
    fn record(&mut self, record: &Record, _out: &mut String) {
        self.app.record(record);
    }

    fn preamble(&mut self, _out: &mut String) {
        self.draw();
    }

    fn tick(&mut self, now_ns: u64, _out: &mut String) {
        self.app.tick(now_ns);
        self.draw();
    }

    fn samples_queues(&self) -> bool {
        true
    }

    /// The drops are shown in the listeners pane; returned so the
    /// exporter counts them.
    fn queues(&mut self, now_ns: u64, samples: &[QueueSample], _out: &mut String) -> Vec<Note> {
        self.app.queues(now_ns, samples)
    }

    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<anyhow::Result<()>> {
        let mut redraw = false;
        let keys = self.keys.get_or_insert_with(EventStream::new);
        while let Poll::Ready(event) = Pin::new(&mut *keys).poll_next(cx) {
            match event {
                Some(Ok(Event::Key(key))) => {
                    if self.app.key(key) == Flow::Quit {
                        return Poll::Ready(Ok(()));
                    }
                    redraw = true;
                }
                Some(Ok(Event::Resize(..))) => redraw = true,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Poll::Ready(Err(err).context("reading the terminal")),
                None => return Poll::Ready(Err(anyhow::anyhow!("the terminal's input ended"))),
            }
        }
        if redraw {
            self.draw();
        }
        match self.failed.take() {
            Some(err) => Poll::Ready(Err(err).context("drawing on the terminal")),
            None => Poll::Pending,
        }
    }
}
