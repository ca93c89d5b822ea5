//! `socktrace stuck`: every `--interval`, the connections stuck in
//! CLOSE_WAIT, FIN_WAIT2 or SYN_SENT for longer than `--stuck`, with their
//! owners; those stuck at start count from the start.
use crate::{
    cli::StuckArgs,
    cmd::live::{self, Plan, View},
    host::diag::Dump,
    probe::Mode,
    summary::Summary,
};

pub async fn run(args: StuckArgs) -> anyhow::Result<Summary> {
    let plan = Plan {
        mode: Mode::Watch,
        // Connections stuck since before we started are the ones to find;
        // and listeners, whose owners the connections they spawn take: the
        // kernel knows no owner of a listener older than us until its
        // process accepts, which may come after the peer's FIN.
        snapshot: true,
        existing: Dump::Open,
        interval: Some(args.interval),
        view: View::Stuck {
            json: args.common.json,
        },
        stuck: args.stuck.stuck,
        ..Plan::live_defaults(args.common)
    };
    live::stream(plan).await
}
