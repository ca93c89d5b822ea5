//! The command line. Doc comments are the help text.
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "socktrace",
    version,
    about = "Real-time socket event tracer: every TCP state change, bind and listen, with its process",
    after_help = "Examples:\n  \
        socktrace                       live TCP transitions, binds and listens\n  \
        socktrace --json | jq .         the same as JSON lines\n  \
        socktrace --duration 10         stop after 10 seconds and print a summary\n  \
        socktrace --lifecycle           one line per finished connection\n  \
        socktrace --json --snapshot     existing sockets first, then events",
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
}

#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds (fractions allowed), then print the summary.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<std::time::Duration>,
    /// Text mode: one line per finished connection (like tcplife) instead
    /// of one per transition. JSON always has both (`type: "close"`).
    #[arg(long)]
    pub lifecycle: bool,
    /// First print the TCP sockets that already exist, with their owners.
    #[arg(long)]
    pub snapshot: bool,
    /// Only sockets with this local or remote port (repeatable, up to 8;
    /// decided in the kernel, so other sockets cost almost nothing).
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Scheduling niceness of the reader, -20..19. Below 0 (the default) a
    /// busy host cannot starve it into dropping events; 0 keeps the
    /// scheduler's default share.
    #[arg(long, value_name = "N", default_value_t = -10, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: i32,
    /// The most connections followed at once (for close records); beyond
    /// it some are dropped from tracking (their close records are lost),
    /// and the summary says how many.
    #[arg(long, value_name = "N", default_value_t = 1 << 18, value_parser = clap::value_parser!(u32).range(1..))]
    pub track_limit: u32,
    /// How often to look for TIME_WAIT sockets that ended (sock_diag).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub tw_poll: std::time::Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics; ADDR defaults to
    /// 127.0.0.1:9400 (name another address to serve beyond this host).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9400")]
    pub metrics: Option<std::net::SocketAddr>,
}

impl Cli {
    /// The `watch` arguments, checked beyond what clap checks.
    pub fn watch_args(self) -> Result<WatchArgs, String> {
        let args = match self.command {
            Some(Command::Watch(args)) => args,
            None => self.watch,
        };
        if args.ports.len() > tracer_common::MAX_FILTER_PORTS {
            return Err(format!(
                "at most {} --port values, got {}",
                tracer_common::MAX_FILTER_PORTS,
                args.ports.len()
            ));
        }
        Ok(args)
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn watch_is_the_default() {
        let cli = Cli::try_parse_from(["socktrace", "--json", "--duration", "1.5"]).unwrap();
        let args = cli.watch_args().unwrap();
        assert!(args.json);
        assert_eq!(args.duration, Some(std::time::Duration::from_millis(1500)));
        let cli = Cli::try_parse_from(["socktrace", "watch", "--json"]).unwrap();
        assert!(cli.watch_args().unwrap().json);
    }

    #[test]
    fn ports() {
        let cli = Cli::try_parse_from(["socktrace", "--port", "80", "--port", "443"]).unwrap();
        assert_eq!(cli.watch_args().unwrap().ports, [80, 443]);
        let err = Cli::try_parse_from(["socktrace", "--port", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let nine: Vec<String> = (1..=9)
            .flat_map(|p| ["--port".into(), p.to_string()])
            .collect();
        let cli =
            Cli::try_parse_from(std::iter::once("socktrace".to_string()).chain(nine)).unwrap();
        assert_eq!(
            cli.watch_args().unwrap_err(),
            "at most 8 --port values, got 9"
        );
    }

    #[test]
    fn metrics_address() {
        let addr = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["socktrace"], args].concat()).unwrap();
            cli.watch_args().unwrap().metrics
        };
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
    fn bad_durations_are_rejected() {
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            let err = Cli::try_parse_from(["socktrace", "--duration", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }
}
