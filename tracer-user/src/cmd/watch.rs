//! `socktrace watch`: every event, as text or JSON, on stdout.
use crate::{
    cli::WatchArgs,
    cmd::live::{self, LogTo, Plan, View},
    output::TextMode,
    summary::Summary,
};

pub async fn run(args: WatchArgs) -> anyhow::Result<Summary> {
    live::stream(plan(args)).await
}

/// What `watch` streams; `record` starts from it too.
pub fn plan(args: WatchArgs) -> Plan {
    let view = match (args.common.json, args.lifecycle) {
        (true, _) => View::Json,
        (false, true) => View::Text(TextMode::Lifecycles),
        (false, false) => View::Text(TextMode::Events),
    };
    Plan {
        snapshot: args.snapshot,
        track_limit: args.track_limit as usize,
        tw_poll: args.tw_poll,
        view,
        log_to: LogTo {
            journal: args.journal,
            syslog: args.syslog,
        },
        ..Plan::live_defaults(args.common)
    }
}
