//! The command line. Doc comments are the help text.
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::filter::{Filter, Flags};

/// The examples and where socktrace runs: `-h` and `--help` end with them.
macro_rules! examples {
    () => {
        "Examples:\n  \
        socktrace                       live TCP transitions, binds and listens\n  \
        socktrace --json | jq .         the same as JSON lines\n  \
        socktrace --duration 10         stop after 10 seconds and print a summary\n  \
        socktrace --lifecycle           one line per finished connection\n  \
        socktrace --json --snapshot     existing sockets first, then events\n  \
        socktrace --comm '^nginx$' -4   only nginx's IPv4 sockets\n  \
        socktrace 'dport = :443 or sport = :80'  ss's filter expressions\n  \
        socktrace listeners --short 100 listeners that live under 100 ms\n  \
        socktrace timewait              TIME_WAIT churn and port pressure, every second\n  \
        socktrace stuck --stuck 30      connections stuck in CLOSE_WAIT, FIN_WAIT2, SYN_SENT\n  \
        socktrace top                   live view: connections, listeners, TIME_WAIT\n  \
        socktrace record run.jsonl      keep the event stream for later\n  \
        socktrace analyze run.jsonl --report timewait\n\n\
        Runs on Linux 5.10 and later with BTF; what a kernel lacks is said in a \
        'socktrace: degraded:' line, and a program it refuses in one line naming \
        the file that holds the verifier's log (--verbose prints it)."
    };
}

/// The kernels socktrace is tested on and what each lacks (`--help` and
/// the man page; the README's "Kernels" says more).
macro_rules! kernels {
    () => {
        "Kernels tested (cargo xtask test boots Debian's; every command runs on each):\n  \
        6.18, 6.12 (Debian 13)  everything\n  \
        6.1 (Debian 12)         owners are not learnt from send()/recv(): their\n                          \
        tracepoints came in 6.3\n  \
        5.10 (Debian 11)        as 6.1, and: owners live in a table by socket\n                          \
        address (socket storage from tracing programs came in 5.11);\n                          \
        socket ids are read from the socket, and a connection's first\n                          \
        transition comes with its second (the cookie helper, 5.12);\n                          \
        skipped program runs are not counted (5.12); timewait counts\n                          \
        from the ring (bpf(2) is refused to a process without\n                          \
        capabilities)"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "socktrace",
    version,
    about = "Real-time socket event tracer: every TCP state change, bind and listen, with its process",
    after_help = examples!(),
    after_long_help = concat!(examples!(), "\n\n", kernels!()),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream socket events as they happen (the default).
    Watch(WatchArgs),
    /// Catch listeners and bound sockets however short their life, and
    /// failed binds, with who did it.
    Listeners(ListenersArgs),
    /// Connections stuck in CLOSE_WAIT (a process that never closes what
    /// its peer closed: a descriptor leak), FIN_WAIT2 or SYN_SENT, with
    /// owner and age: a table every --interval.
    Stuck(StuckArgs),
    /// TIME_WAIT churn: who creates it, towards where, ephemeral-port
    /// pressure. Counted in the kernel: cheap on a busy host.
    Timewait(TimewaitArgs),
    /// A live terminal view: connections with their owners, listeners,
    /// TIME_WAIT by port and destination, stuck connections.
    #[command(mut_arg("json", |a| a.hide(true)))]
    Top(TopArgs),
    /// Write the JSON event stream to FILE (with a header line) for `analyze`.
    Record(RecordArgs),
    /// Run an analysis on a recording (`-`: standard input).
    Analyze(AnalyzeArgs),
}

/// Options every live mode has.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds (fractions allowed), then print the summary.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Scheduling niceness of the reader, -20..19. Below 0 (the default) a
    /// busy host cannot starve it into dropping events; 0 keeps the
    /// scheduler's default share.
    #[arg(long, value_name = "N", default_value_t = -10, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: i32,
    /// When the kernel refuses a program, print its verifier's whole log
    /// here instead of to a file (whose path socktrace names).
    #[arg(long)]
    pub verbose: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics; ADDR defaults to
    /// 127.0.0.1:9400 (name another address to serve beyond this host).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9400")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Push every metric --metrics serves to URL as OTLP/HTTP (protobuf),
    /// every --otlp-interval: an OpenTelemetry collector's
    /// http://HOST:4318/v1/metrics, or Prometheus's
    /// http://HOST:9090/api/v1/otlp/v1/metrics. With or without --metrics.
    #[arg(long, value_name = "URL", value_parser = parse_otlp_url)]
    pub otlp_metrics: Option<url::Url>,
    /// How often --otlp-metrics pushes, in every mode (a mode's
    /// --interval paces its tables, not the pushes).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration,
          allow_negative_numbers = true, requires = "otlp_metrics")]
    pub otlp_interval: Duration,
    /// Once attached, run as this user (socktrace drops every capability
    /// either way before it reads its first event).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Colour the text: failures and resets red, TIME_WAIT yellow,
    /// short-lived listeners and warnings highlighted. `auto`: only on a
    /// terminal, never with --json, NO_COLOR or TERM=dumb.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(flatten)]
    pub select: Flags,
    /// `select` put together, by [`Cli::into_command`].
    #[arg(skip)]
    pub filter: Filter,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Text mode: one line per finished connection (like tcplife) instead
    /// of one per transition: bytes each way, duration, handshake time
    /// (CONN_MS), segments retransmitted, RTT and how it ended. JSON always
    /// has both (`type: "close"`).
    #[arg(long)]
    pub lifecycle: bool,
    /// First print the TCP sockets that already exist, with their owners.
    #[arg(long)]
    pub snapshot: bool,
    /// The most connections followed at once (for close records); beyond
    /// it some are dropped from tracking (their close records are lost),
    /// and the summary says how many.
    #[arg(long, value_name = "N", default_value_t = crate::cmd::live::TRACK_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
    pub track_limit: u32,
    /// How often to ask the kernel (sock_diag) which TIME_WAIT sockets
    /// ended and, after a lost event, which followed connections are gone;
    /// less often where dumps would take over 1 % of a core.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub tw_poll: Duration,
    /// Also write every event to the systemd journal, with SOCKTRACE_*
    /// fields (one datagram per event: for modest rates or with filters).
    #[arg(long)]
    pub journal: bool,
    /// Also send every event to syslog as RFC 5424 with structured data,
    /// through SOCKET (default /dev/log).
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "/dev/log")]
    pub syslog: Option<std::path::PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ListenersArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub short: Short,
    /// Print the table every SECS too, not only at the end.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
}

#[derive(Debug, Args, Clone)]
pub struct StuckArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub stuck: StuckThreshold,
    /// Print the table every SECS.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
}

/// When a connection counts as stuck.
#[derive(Debug, Args, Clone, Copy)]
pub struct StuckThreshold {
    /// A connection is stuck after SECS in CLOSE_WAIT, FIN_WAIT2 or
    /// SYN_SENT.
    #[arg(long = "stuck", value_name = "SECS", default_value = STUCK_DEFAULT, value_parser = parse_duration, allow_negative_numbers = true)]
    pub stuck: Duration,
}

/// `--stuck`'s default, in seconds: also the threshold of the
/// `socktrace_stuck_sockets` gauge in the modes without `--stuck`.
const STUCK_DEFAULT: &str = "10";

impl Default for StuckThreshold {
    fn default() -> StuckThreshold {
        StuckThreshold {
            stuck: parse_duration(STUCK_DEFAULT).expect("the default parses"),
        }
    }
}

/// The threshold of "short-lived".
#[derive(Debug, Args, Clone, Copy)]
pub struct Short {
    /// Flag listeners (and, for timewait, connections) that lived less
    /// than MS milliseconds.
    #[arg(long = "short", value_name = "MS", default_value = "1000", value_parser = parse_millis)]
    pub short: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct TimewaitArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub report: TimewaitReport,
}

/// How the TIME_WAIT report looks, live or offline.
#[derive(Debug, Args, Clone, Copy)]
pub struct TimewaitReport {
    /// Report every SECS.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
    /// Rows per table.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
    /// Warn when a destination holds more than PCT % of the ephemeral ports.
    #[arg(long, value_name = "PCT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub threshold: u8,
    #[command(flatten)]
    pub short: Short,
}

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub short: Short,
    #[command(flatten)]
    pub stuck: StuckThreshold,
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// Where to write (created 0600; an existing file is refused unless
    /// --force).
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Args, Clone)]
pub struct AnalyzeArgs {
    /// A recording (`socktrace record` or `socktrace --json`); `-` reads
    /// standard input.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Which analysis to run.
    #[arg(long, value_enum, default_value_t = Report::Summary)]
    pub report: Report,
    /// JSON lines instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also draw the report as an SVG chart into FILE (listeners,
    /// timewait or lifecycles; created 0600, never through a symlink).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
    /// Colour the tables' failures and warnings; `auto`: only on a
    /// terminal, never with --json, NO_COLOR or TERM=dumb.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(flatten)]
    pub timewait: TimewaitReport,
    #[command(flatten)]
    pub stuck: StuckThreshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Listeners,
    Stuck,
    Timewait,
    Lifecycles,
    Summary,
}

impl Cli {
    /// The command to run (`watch` when none is named), checked beyond
    /// what clap checks, its filter put together.
    pub fn into_command(self) -> Result<Command, String> {
        let mut command = self.command.unwrap_or(Command::Watch(self.watch));
        if let Command::Analyze(a) = &command
            && a.plot.is_some()
            && matches!(a.report, Report::Summary | Report::Stuck)
        {
            return Err(
                "--plot draws listeners, timewait or lifecycles: choose one with --report".into(),
            );
        }
        if let Command::Top(t) = &command
            && t.common.json
        {
            return Err("top draws in the terminal; for JSON lines use `socktrace --json`".into());
        }
        let common = match &mut command {
            Command::Watch(w) | Command::Record(RecordArgs { watch: w, .. }) => &mut w.common,
            Command::Listeners(l) => &mut l.common,
            Command::Stuck(s) => &mut s.common,
            Command::Timewait(t) => &mut t.common,
            Command::Top(t) => &mut t.common,
            Command::Analyze(_) => return Ok(command),
        };
        if let Some(user) = common.user.as_deref()
            && !crate::privileges::user_exists(user)
        {
            return Err(format!("--user: no user named {user}"));
        }
        common.filter = Filter::new(&common.select)?;
        if let Command::Timewait(t) = &command
            && let Some(what) = t.common.filter.unsupported_by_timewait()
        {
            return Err(format!(
                "timewait counts TCP connection ends by process and destination: \
                 it cannot apply {what}"
            ));
        }
        Ok(command)
    }
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    let ms: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of milliseconds"))?;
    if !(ms.is_finite() && ms > 0.0 && ms < 1e12) {
        return Err(format!("`{s}` must be a positive number of milliseconds"));
    }
    Ok(Duration::from_secs_f64(ms / 1e3))
}

/// An http:// URL with a host. There is no TLS in socktrace: push over
/// https through a collector on the host.
fn parse_otlp_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|err| format!("`{s}` is not a URL: {err}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{s}`: socktrace pushes over http:// only (for https, through a collector on this host)"
        ));
    }
    if url.host().is_none() {
        return Err(format!("`{s}` names no host"));
    }
    Ok(url)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    // A period of 0 ns would stop the timers (tokio panics on it).
    match Duration::from_secs_f64(secs) {
        d if d.is_zero() => Err(format!("`{s}` is shorter than a nanosecond")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    fn watch(args: &[&str]) -> Result<WatchArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("socktrace").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.into_command()? {
            Command::Watch(w) => Ok(w),
            other => Err(format!("not watch: {other:?}")),
        }
    }

    #[test]
    fn periods_shorter_than_a_nanosecond_are_refused() {
        let err = Cli::try_parse_from(["socktrace", "timewait", "--interval", "1e-12"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`1e-12` is shorter than a nanosecond"),
            "{err}"
        );
        assert!(watch(&["--tw-poll", "1e-9"]).is_ok());
    }

    #[test]
    fn watch_is_the_default() {
        let args = watch(&["--json", "--duration", "1.5"]).unwrap();
        assert!(args.common.json);
        assert_eq!(args.common.duration, Some(Duration::from_millis(1500)));
        assert!(watch(&["watch", "--json"]).unwrap().common.json);
    }

    #[test]
    fn ports() {
        assert_eq!(
            watch(&["--port", "80", "--port", "443"])
                .unwrap()
                .common
                .select
                .ports,
            [80, 443]
        );
        let err = Cli::try_parse_from(["socktrace", "--port", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let nine: Vec<String> = (1..=9)
            .flat_map(|p| ["--port".into(), p.to_string()])
            .collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(watch(&nine).unwrap_err(), "at most 8 --port values, got 9");
    }

    #[test]
    fn subcommands() {
        let cli = Cli::try_parse_from(["socktrace", "listeners", "--short", "50"]).unwrap();
        let Command::Listeners(l) = cli.into_command().unwrap() else {
            panic!("listeners expected");
        };
        assert_eq!(l.short.short, Duration::from_millis(50));
        let cli = Cli::try_parse_from(["socktrace", "timewait", "--top", "3"]).unwrap();
        let Command::Timewait(t) = cli.into_command().unwrap() else {
            panic!("timewait expected");
        };
        assert_eq!((t.report.top, t.report.threshold), (3, 50));
        assert_eq!(t.report.interval, Duration::from_secs(1));
        let cli = Cli::try_parse_from(["socktrace", "analyze", "-", "--report", "listeners"]);
        let Command::Analyze(a) = cli.unwrap().into_command().unwrap() else {
            panic!("analyze expected");
        };
        assert_eq!((a.report, a.file.to_str()), (Report::Listeners, Some("-")));
        let cli = Cli::try_parse_from(["socktrace", "top", "--port", "80", "--duration", "2"]);
        let Command::Top(t) = cli.unwrap().into_command().unwrap() else {
            panic!("top expected");
        };
        assert_eq!(t.common.select.ports, [80]);
        assert_eq!(t.common.duration, Some(Duration::from_secs(2)));
        assert_eq!(t.short.short, Duration::from_secs(1));
        assert_eq!(t.stuck.stuck, Duration::from_secs(10), "as stuck's");
        let cli = Cli::try_parse_from(["socktrace", "top", "--stuck", "2.5"]);
        let Command::Top(t) = cli.unwrap().into_command().unwrap() else {
            panic!("top expected");
        };
        assert_eq!(t.stuck.stuck, Duration::from_millis(2500));
        let cli = Cli::try_parse_from(["socktrace", "top", "--json"]).unwrap();
        assert_eq!(
            cli.into_command().unwrap_err(),
            "top draws in the terminal; for JSON lines use `socktrace --json`"
        );
        for bad in [
            &["listeners", "--short", "0"][..],
            &["timewait", "--threshold", "101"],
            &["analyze", "x", "--report", "nope"],
            &["record"],
        ] {
            let args = std::iter::once("socktrace").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metrics_address() {
        let addr = |args: &[&str]| watch(args).unwrap().common.metrics;
        assert_eq!(addr(&[]), None);
        assert_eq!(
            addr(&["--metrics", "--json"]),
            Some(([127, 0, 0, 1], 9400).into())
        );
        assert_eq!(
            addr(&["--metrics", "[::]:9500"]),
            Some("[::]:9500".parse().unwrap())
        );
        let err = Cli::try_parse_from(["socktrace", "--metrics", "9400"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn otlp_url_and_interval() {
        let w = watch(&["--otlp-metrics", "http://127.0.0.1:4318/v1/metrics"]).unwrap();
        let url = w.common.otlp_metrics.expect("a URL");
        assert_eq!(url.as_str(), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(w.common.otlp_interval, Duration::from_secs(10));
        let w = watch(&["--otlp-metrics", "http://h/", "--otlp-interval", "0.5"]).unwrap();
        assert_eq!(w.common.otlp_interval, Duration::from_millis(500));
        for bad in [
            "collector:4318",
            "https://h/v1/metrics",
            "ftp://h/",
            "http://",
            "x",
        ] {
            let err = Cli::try_parse_from(["socktrace", "--otlp-metrics", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        let err = Cli::try_parse_from(["socktrace", "--otlp-interval", "5"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn color() {
        assert_eq!(watch(&[]).unwrap().common.color, ColorWhen::Auto);
        assert_eq!(
            watch(&["--color", "never"]).unwrap().common.color,
            ColorWhen::Never
        );
        let cli = Cli::try_parse_from(["socktrace", "analyze", "-", "--color", "always"]);
        let Command::Analyze(a) = cli.unwrap().into_command().unwrap() else {
            panic!("analyze expected");
        };
        assert_eq!(a.color, ColorWhen::Always);
        let err = Cli::try_parse_from(["socktrace", "--color", "sometimes"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn bad_durations_are_rejected() {
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            let err = Cli::try_parse_from(["socktrace", "--duration", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }
}
