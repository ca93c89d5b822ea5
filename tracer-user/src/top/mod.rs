//! `socktrace top`: a live terminal view of connections, listeners and
//! TIME_WAIT. It runs the `watch` pipeline with a view that feeds every
//! record to an [`App`], draws it every 250 ms and on each key, and ends
//! the run when the user quits.
mod app;
mod conns;
mod feed;
mod population;
mod term;
#[cfg(test)]
mod tests;
mod ui;

use std::{
    io::{self, Stdout},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use futures_core::Stream;
use ratatui::{Terminal, backend::CrosstermBackend};

use self::app::{App, Flow};
use crate::{
    cli::TopArgs,
    diag::Dump,
    output::Render,
    probe::Mode,
    summary::Summary,
    track::Record,
    watch::{self, LogTo, Plan, View},
};

/// How often the view is drawn without a key being pressed.
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// Runs `top` until the user quits (or `--duration`, SIGINT, SIGTERM);
/// the terminal is restored before this returns, whatever happened.
pub async fn run(args: TopArgs) -> anyhow::Result<Summary> {
    let screen = term::Screen::enter().context("setting up the terminal")?;
    let terminal =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("setting up the terminal")?;
    let short_ns = args.short.short.as_nanos().try_into().unwrap_or(u64::MAX);
    let view = Live {
        app: App::new(short_ns),
        terminal,
        keys: None,
        failed: None,
    };
    let plan = Plan {
        common: args.common,
        mode: Mode::Watch,
        // Existing sockets feed the panes, with their owners.
        snapshot: true,
        existing: Dump::All,
        track_limit: 1 << 18,
        tw_poll: Duration::from_secs(1),
        interval: Some(DRAW_EVERY),
        view: View::Live(Box::new(view)),
        output: Some(Box::new(io::sink())),
        header: None,
        log_to: LogTo::default(),
    };
    let summary = watch::run(plan).await;
    drop(screen);
    summary
}

/// The App on a real terminal, reading keys as they come.
struct Live {
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
