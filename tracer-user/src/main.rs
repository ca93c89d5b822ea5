//! CLI entry: parse, run, exit codes. Errors are one line on stderr.
use std::{
    io::{self, IsTerminal as _},
    process::ExitCode,
};

use clap::{CommandFactory as _, FromArgMatches as _};
use socktrace::{
    cli::{Cli, Command},
    cmd::{analyze, generate, listeners, record, stuck, timewait, top, watch},
    say, stderr,
};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .target(env_logger::Target::Pipe(Box::new(stderr::Lines)))
        .init();
    let code = run();
    // What a slow reader of standard error has not taken yet.
    stderr::finish();
    code
}

fn run() -> ExitCode {
    match command() {
        Ok(command) => execute(command),
        Err(code) => code,
    }
}

/// The command to run, or `Err` with the exit code when there is none to
/// run: help, version, the hidden generator, or a bad command line.
fn command() -> Result<Command, ExitCode> {
    // The hidden generator is added here only, so no help, man page or
    // completion script lists it.
    let matches = Cli::command()
        .subcommand(generate::subcommand())
        .try_get_matches()
        .map_err(|err| clap_exit(&err))?;
    if let Some((generate::SUBCOMMAND, args)) = matches.subcommand() {
        return Err(generate_docs(args));
    }
    let cli = Cli::from_arg_matches(&matches).map_err(|err| clap_exit(&err))?;
    let command = cli.into_command().map_err(|err| {
        say!("socktrace: {err}");
        ExitCode::from(2)
    })?;
    if matches!(command, Command::Top(_)) && !io::stdout().is_terminal() {
        say!(
            "socktrace: top needs a terminal (stdout is not one); `socktrace watch` streams to pipes and files"
        );
        return Err(ExitCode::from(2));
    }
    Ok(command)
}

/// Runs `command` to its end; its summary or its error goes to stderr.
fn execute(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            say!("socktrace: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Watch(args) => watch::run(args).await.map(Some),
            Command::Listeners(args) => listeners::run(args).await.map(Some),
            Command::Stuck(args) => stuck::run(args).await.map(Some),
            Command::Record(args) => record::run(args).await.map(Some),
            Command::Timewait(args) => timewait::run(args).await.map(Some),
            Command::Top(args) => top::run(args).await.map(Some),
            Command::Analyze(args) => analyze::run(&args).map(|()| None),
        }
    });
    match result {
        Ok(summary) => {
            if let Some(summary) = summary {
                say!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            say!("socktrace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// --help and --version print and succeed; a bad command line gets one
/// line and exit code 2.
fn clap_exit(err: &clap::Error) -> ExitCode {
    if err.use_stderr() {
        say!("socktrace: {}", first_line(&err.to_string()));
        ExitCode::from(2)
    } else {
        let _ = err.print();
        ExitCode::SUCCESS
    }
}

/// `socktrace __generate DIR`: man pages and completions into DIR.
fn generate_docs(args: &clap::ArgMatches) -> ExitCode {
    let Some(dir) = args.get_one::<std::path::PathBuf>("dir") else {
        return ExitCode::from(2); // clap requires it
    };
    match generate::write_to(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say!("socktrace: writing to {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// clap's message without its "error: " prefix and usage lines.
fn first_line(message: &str) -> &str {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line)
}
