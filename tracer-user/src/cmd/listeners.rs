//! `socktrace listeners`: lines when listeners open and close, then a
//! table of them (every `--interval`, and at the end).
use crate::{
    cli::ListenersArgs,
    cmd::live::{self, Plan, View},
    host::diag::Dump,
    probe::Mode,
    summary::Summary,
};

pub async fn run(args: ListenersArgs) -> anyhow::Result<Summary> {
    let plan = Plan {
        mode: Mode::Listeners,
        // Listeners that predate us must be known to see them close;
        // nothing else is followed.
        snapshot: true,
        existing: Dump::Listeners,
        interval: args.interval,
        view: View::Listeners {
            short: args.short.short,
            json: args.common.json,
        },
        ..Plan::live_defaults(args.common)
    };
    live::stream(plan).await
}
