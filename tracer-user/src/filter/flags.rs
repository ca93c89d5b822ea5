//! The filter flags every live mode takes (`cli::Common` flattens them),
//! and the `ss`-style expression that may follow them. Each value is
//! checked as it is parsed; `Filter::new` puts them together.
use clap::Args;
use regex::Regex;

use super::terms::{CgroupMatch, Net, StateSet};

/// Repeat a flag for any of its values; different flags must all match.
#[derive(Debug, Args, Clone, Default)]
pub struct Flags {
    /// Only sockets owned by process PID (repeatable, up to 8; decided in
    /// the kernel).
    #[arg(help_heading = "Filters", long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only sockets whose owner's command name matches REGEX (unanchored,
    /// as pgrep: `^nginx$` for exactly nginx).
    #[arg(help_heading = "Filters", long = "comm", value_name = "REGEX", value_parser = regex)]
    pub comms: Vec<Regex>,
    /// Only sockets with this local or remote port (repeatable, up to 8;
    /// decided in the kernel, so other sockets cost almost nothing).
    #[arg(help_heading = "Filters", long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Only sockets with this local port (repeatable, up to 8; in the
    /// kernel).
    #[arg(help_heading = "Filters", long = "sport", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub sports: Vec<u16>,
    /// Only sockets with this remote port (repeatable, up to 8; in the
    /// kernel).
    #[arg(help_heading = "Filters", long = "dport", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub dports: Vec<u16>,
    /// Only sockets whose local or remote address is in CIDR (a bare
    /// address is a /32 or /128).
    #[arg(help_heading = "Filters", long = "addr", visible_alias = "net", value_name = "CIDR", value_parser = Net::parse)]
    pub nets: Vec<Net>,
    /// Only IPv4 sockets (in the kernel).
    #[arg(help_heading = "Filters", short = '4', long)]
    pub ipv4: bool,
    /// Only IPv6 sockets (in the kernel).
    #[arg(help_heading = "Filters", short = '6', long)]
    pub ipv6: bool,
    /// Only records touching STATE: a transition into or out of it, a
    /// connection that went through it. Names as ss or our output write
    /// them (time-wait, TIME_WAIT), or ss's groups: connected,
    /// synchronized, bucket, big, all.
    #[arg(help_heading = "Filters", long = "state", value_name = "STATE", value_parser = StateSet::parse)]
    pub states: Vec<StateSet>,
    /// Only sockets owned by user UID (repeatable, up to 8; in the kernel).
    #[arg(help_heading = "Filters", long = "uid", value_name = "UID")]
    pub uids: Vec<u32>,
    /// Only sockets whose owner is in this cgroup (a path under the cgroup
    /// v2 root, or below it) or this container (its id or the start of it).
    #[arg(help_heading = "Filters", long = "cgroup", value_name = "PATH|ID", value_parser = CgroupMatch::parse)]
    pub cgroups: Vec<CgroupMatch>,
    /// Only TCP (in the kernel).
    #[arg(help_heading = "Filters", short = 't', long)]
    pub tcp: bool,
    /// Only UDP: binds and releases (in the kernel).
    #[arg(help_heading = "Filters", short = 'u', long)]
    pub udp: bool,
    /// An ss(8) filter expression, e.g. 'state time-wait and ( dport =
    /// :443 or sport = :80 )' (see the README's "Filters").
    #[arg(help_heading = "Filters", value_name = "EXPRESSION")]
    pub expression: Vec<String>,
}

/// A regular expression; a bad one in one line.
fn regex(text: &str) -> Result<Regex, String> {
    Regex::new(text).map_err(|err| {
        // regex's message draws the pattern over several lines; its last
        // line says what is wrong.
        let message = err.to_string();
        let why = message
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!(
            "not a regular expression: {}",
            why.trim().trim_start_matches("error: ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_regexes_in_one_line() {
        assert_eq!(
            regex("ng(inx").unwrap_err(),
            "not a regular expression: unclosed group"
        );
        assert!(regex("^nginx$").unwrap().is_match("nginx"));
    }
}
