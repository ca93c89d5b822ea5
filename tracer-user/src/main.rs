//! CLI entry: parse, run, exit codes. Errors are one line on stderr.
use std::{
    io::{self, IsTerminal as _},
    process::ExitCode,
};

use clap::Parser as _;
use socktrace::{
    cli::{Cli, Command},
    offline, record, tallies, top,
    watch::{self, Plan},
};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help, --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("socktrace: {}", first_line(&err.to_string()));
            return ExitCode::from(2);
        }
    };
    let command = match cli.into_command() {
        Ok(command) => command,
        Err(err) => {
            eprintln!("socktrace: {err}");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::Top(_)) && !io::stdout().is_terminal() {
        eprintln!(
            "socktrace: top needs a terminal (stdout is not one); `socktrace watch` streams to pipes and files"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("socktrace: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Watch(args) => watch::run(Plan::watch(args)).await.map(Some),
            Command::Listeners(args) => watch::run(Plan::listeners(args)).await.map(Some),
            Command::Record(args) => watch::run(record::plan(args)?).await.map(Some),
            Command::Timewait(args) => tallies::run(args).await.map(Some),
            Command::Top(args) => top::run(args).await.map(Some),
            Command::Analyze(args) => offline::run(&args).map(|()| None),
        }
    });
    match result {
        Ok(summary) => {
            if let Some(summary) = summary {
                eprintln!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("socktrace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message without its "error: " prefix and usage lines.
fn first_line(message: &str) -> &str {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line)
}
