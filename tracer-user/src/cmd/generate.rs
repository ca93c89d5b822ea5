//! Man pages and shell completions, generated from the command line's own
//! definition, so they say exactly what the binary accepts. The binary
//! writes them with the hidden `socktrace __generate DIR` (what `cargo xtask
//! dist` runs); nothing else in socktrace uses this module.
use std::{fs, io, path::Path};

use clap::CommandFactory as _;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::Cli;

/// The hidden subcommand that writes everything below into a directory.
pub const SUBCOMMAND: &str = "__generate";

/// Manual section 8: system administration commands (socktrace needs
/// root or CAP_BPF + CAP_PERFMON and installs in /usr/sbin).
pub const MAN_SECTION: &str = "8";

/// Each shell with a completion script, and the script's file name under
/// `DIR/completions`.
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "socktrace.bash"),
    (Shell::Zsh, "_socktrace"),
    (Shell::Fish, "socktrace.fish"),
];

/// The hidden subcommand, added to the real command line by `main` only:
/// it appears in no help, man page or completion.
pub fn subcommand() -> clap::Command {
    clap::Command::new(SUBCOMMAND)
        .hide(true)
        .about("Write man pages (DIR/man8) and shell completions (DIR/completions)")
        .arg(
            clap::Arg::new("dir")
                .value_name("DIR")
                .required(true)
                .value_parser(clap::value_parser!(std::path::PathBuf)),
        )
}

/// Every man page, as (file name, roff): `socktrace.8` first, then one per
/// subcommand (`socktrace-watch.8`, ...).
pub fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![man_page(&cmd)?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(man_page(sub)?);
    }
    Ok(pages)
}

fn man_page(cmd: &clap::Command) -> io::Result<(String, Vec<u8>)> {
    let man = Man::new(cmd.clone())
        .section(MAN_SECTION)
        .source(concat!("socktrace ", env!("CARGO_PKG_VERSION")))
        .manual("System Manager's Manual");
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    Ok((man.get_filename(), roff))
}

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "socktrace", &mut out);
    out
}

/// Writes `dir/man8/*.8` (so `dir` works as a MANPATH) and
/// `dir/completions/*`, creating both.
pub fn write_to(dir: &Path) -> io::Result<()> {
    let man = dir.join(format!("man{MAN_SECTION}"));
    fs::create_dir_all(&man)?;
    for (name, roff) in man_pages()? {
        fs::write(man.join(name), roff)?;
    }
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, name) in COMPLETIONS {
        fs::write(completions.join(name), completion(shell))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBCOMMANDS: [&str; 7] = [
        "watch",
        "listeners",
        "stuck",
        "timewait",
        "top",
        "record",
        "analyze",
    ];

    /// roff escapes every `-`; `\-\-json` reads `--json` on the page.
    fn text(roff: &[u8]) -> String {
        String::from_utf8(roff.to_vec())
            .unwrap()
            .replace("\\-", "-")
    }

    #[test]
    fn a_man_page_for_socktrace_and_each_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "socktrace.8",
                "socktrace-watch.8",
                "socktrace-listeners.8",
                "socktrace-stuck.8",
                "socktrace-timewait.8",
                "socktrace-top.8",
                "socktrace-record.8",
                "socktrace-analyze.8"
            ]
        );
        let main = text(&pages[0].1);
        assert!(main.starts_with(".ie \\n(.g .ds Aq"), "{main}");
        assert!(main.contains(".TH socktrace 8 "), "{main}");
        let version = concat!("\"socktrace ", env!("CARGO_PKG_VERSION"), "\"");
        for (name, page) in &pages {
            assert!(text(page).contains(version), "{name}");
        }
        for sub in SUBCOMMANDS {
            assert!(
                main.contains(&format!("socktrace-{sub}(8)")),
                "{sub}: {main}"
            );
        }
        for flag in [
            "--json",
            "--duration",
            "--port",
            "--metrics",
            "--color",
            "--lifecycle",
        ] {
            assert!(main.contains(flag), "{flag}");
        }
        assert!(main.contains("socktrace timewait"), "examples: {main}");
        // The kernels tested, each with what it lacks.
        for kernel in [
            "6.18, 6.12 (Debian 13)",
            "6.1 (Debian 12)",
            "5.10 (Debian 11)",
        ] {
            assert!(main.contains(kernel), "{kernel}: {main}");
        }
        assert!(!main.contains(SUBCOMMAND));
        let stuck = text(&pages[3].1);
        assert!(stuck.contains("--stuck") && stuck.contains("CLOSE_WAIT"));
        let timewait = text(&pages[4].1);
        for flag in ["--interval", "--top", "--threshold", "--short", "--metrics"] {
            assert!(timewait.contains(flag), "timewait {flag}");
        }
        let top = text(&pages[5].1);
        for flag in ["--short", "--stuck", "--port"] {
            assert!(top.contains(flag), "top {flag}");
        }
        let analyze = text(&pages[7].1);
        assert!(analyze.contains("--report") && analyze.contains("lifecycles"));
    }

    #[test]
    fn completions_know_every_subcommand_and_flag() {
        for (shell, _) in COMPLETIONS {
            let script = String::from_utf8(completion(shell)).unwrap();
            for sub in SUBCOMMANDS {
                assert!(script.contains(sub), "{shell}: {sub}");
            }
            for flag in ["json", "duration", "port", "metrics", "color", "report"] {
                let spelled = match shell {
                    Shell::Fish => format!("-l {flag}"),
                    _ => format!("--{flag}"),
                };
                assert!(script.contains(&spelled), "{shell}: {spelled}");
            }
            for value in ["always", "never", "summary"] {
                assert!(script.contains(value), "{shell}: value {value}");
            }
            assert!(!script.contains(SUBCOMMAND), "{shell}");
        }
    }

    #[test]
    fn writes_every_file() {
        let dir = std::env::temp_dir().join(format!("socktrace-generate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_to(&dir).unwrap();
        let len = |p: &str| fs::metadata(dir.join(p)).unwrap().len();
        assert!(len("man8/socktrace.8") > 1000);
        assert!(len("man8/socktrace-analyze.8") > 500);
        for (_, name) in COMPLETIONS {
            assert!(len(&format!("completions/{name}")) > 1000, "{name}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
