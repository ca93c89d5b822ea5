//! Colour in the text views (`--color`): an ANSI code before and after the
//! few things worth the eye — failures and resets, TIME_WAIT, short-lived
//! listeners, warnings — pushed straight into the output buffer, so
//! colour costs no allocation.
use std::io::IsTerminal as _;

use crate::cli::ColorWhen;

/// What a coloured span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hue {
    /// A failed connect, bind or listen; a reset (red).
    Failure,
    /// Entering or leaving TIME_WAIT (yellow).
    TimeWait,
    /// A short-lived listener (bold magenta).
    Short,
    /// A `!` warning line (bold yellow).
    Warning,
    /// A report's first line (bold).
    Heading,
}

impl Hue {
    fn code(self) -> &'static str {
        match self {
            Hue::Failure => "\x1b[31m",
            Hue::TimeWait => "\x1b[33m",
            Hue::Short => "\x1b[1;35m",
            Hue::Warning => "\x1b[1;33m",
            Hue::Heading => "\x1b[1m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// Whether text is coloured; copied into each view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    on: bool,
}

impl Palette {
    pub const OFF: Palette = Palette { on: false };
    pub const ON: Palette = Palette { on: true };

    /// For output to standard output, as `--color WHEN` and `--json` ask
    /// and the environment allows.
    pub fn for_stdout(when: ColorWhen, json: bool) -> Palette {
        let env = Env {
            no_color: std::env::var_os("NO_COLOR").is_some(),
            dumb_terminal: std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
            terminal: std::io::stdout().is_terminal(),
        };
        Palette {
            on: wanted(when, json, env),
        }
    }

    /// Starts a `hue` span (nothing when colour is off).
    pub fn start(self, hue: Hue, out: &mut String) {
        if self.on {
            out.push_str(hue.code());
        }
    }

    /// Ends the span `start` began.
    pub fn end(self, out: &mut String) {
        if self.on {
            out.push_str(RESET);
        }
    }

    /// Appends `text` in `hue`.
    pub fn paint(self, hue: Hue, text: &str, out: &mut String) {
        self.start(hue, out);
        out.push_str(text);
        self.end(out);
    }
}

/// What `auto` looks at.
#[derive(Clone, Copy, Debug)]
struct Env {
    /// `NO_COLOR` is set, to any value.
    no_color: bool,
    /// `TERM=dumb`.
    dumb_terminal: bool,
    /// Standard output is a terminal.
    terminal: bool,
}

/// `auto` colours only for a terminal that can show it, never JSON, and
/// not when the user opted out with NO_COLOR.
fn wanted(when: ColorWhen, json: bool, env: Env) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => !json && env.terminal && !env.no_color && !env.dumb_terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Env = Env {
        no_color: false,
        dumb_terminal: false,
        terminal: true,
    };

    #[test]
    fn auto_colours_a_capable_terminal_only() {
        assert!(wanted(ColorWhen::Auto, false, TTY));
        assert!(!wanted(ColorWhen::Auto, true, TTY), "--json");
        let off = [
            Env {
                no_color: true,
                ..TTY
            },
            Env {
                dumb_terminal: true,
                ..TTY
            },
            Env {
                terminal: false,
                ..TTY
            },
        ];
        for env in off {
            assert!(!wanted(ColorWhen::Auto, false, env), "{env:?}");
            assert!(wanted(ColorWhen::Always, false, env), "{env:?}");
        }
        assert!(!wanted(ColorWhen::Never, false, TTY));
    }

    #[test]
    fn spans() {
        let mut out = String::new();
        Palette::ON.paint(Hue::Failure, "refused", &mut out);
        assert_eq!(out, "\x1b[31mrefused\x1b[0m");
        out.clear();
        Palette::OFF.paint(Hue::Failure, "refused", &mut out);
        assert_eq!(out, "refused");
    }
}
