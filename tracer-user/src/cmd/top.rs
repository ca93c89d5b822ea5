//! `socktrace top`: a live terminal view of connections, listeners,
//! TIME_WAIT and stuck connections. It runs the streaming session with [`Live`], drawn every
//! 250 ms and on each key, and ends the run when the user quits.
use std::{io, time::Duration};

use anyhow::Context as _;

use crate::{
    cli::TopArgs,
    clock::nanos,
    cmd::live::{Plan, View},
    host::diag::Dump,
    output::top::{Live, term::Screen},
    probe::Mode,
    summary::Summary,
};

/// How often the view is drawn without a key being pressed.
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// Runs `top` until the user quits (or `--duration`, SIGINT, SIGTERM);
/// the terminal is restored before this returns, whatever happened.
pub async fn run(args: TopArgs) -> anyhow::Result<Summary> {
    let screen = Screen::enter().context("setting up the terminal")?;
    let view = Live::new(nanos(args.short.short), nanos(args.stuck.stuck))
        .context("setting up the terminal")?;
    let plan = Plan {
        mode: Mode::Watch,
        // Existing sockets feed the panes, with their owners.
        snapshot: true,
        existing: Dump::All,
        interval: Some(DRAW_EVERY),
        view: View::Live(Box::new(view)),
        output: Some(Box::new(io::sink())),
        stuck: args.stuck.stuck,
        ..Plan::live_defaults(args.common)
    };
    let summary = crate::cmd::live::stream(plan).await;
    drop(screen);
    summary
}
