//! Text a process controls (its command name, its cgroup path, anything
//! read from /proc or from a recording) on its way to people: one rule for
//! every human output (text lines and tables, `top`, stderr, log messages),
//! as `ps` and `ss` have theirs. Printable ASCII stays as it is; a
//! backslash is doubled; every other byte — control characters such as ESC
//! and newline, DEL, and the bytes of non-ASCII characters — is written
//! `\xHH`. So a name like `"\x1b[2J\nFAKE"` can neither clear the screen nor
//! forge a line nor widen a column, and what is shown reads back to the
//! exact bytes. JSON output keeps the raw text: its own escaping is exact.
use std::{borrow::Cow, fmt};

/// Whether `b` is shown as it is.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'\\'
}

/// `text` with every byte the rule escapes escaped.
pub fn escape(text: &(impl AsRef<[u8]> + ?Sized)) -> Cow<'_, str> {
    let bytes = text.as_ref();
    if bytes.iter().all(|&b| plain(b)) {
        // Printable ASCII only: valid UTF-8 as it is.
        return String::from_utf8_lossy(bytes);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b if plain(b) => out.push(char::from(b)),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    Cow::Owned(out)
}

/// Shows `text` escaped, honouring width and alignment (`{:<15}`).
pub struct Escaped<'a>(&'a [u8]);

pub fn escaped(text: &(impl AsRef<[u8]> + ?Sized)) -> Escaped<'_> {
    Escaped(text.as_ref())
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

/// For tests: a name set with `prctl(PR_SET_NAME)` to clear the screen
/// and forge a line (15 bytes, all the kernel keeps), and how it is shown.
#[cfg(test)]
pub const FORGING: &str = "\x1b[2J\x1b[31mX\nFAKE";
#[cfg(test)]
pub const FORGING_SHOWN: &str = "\\x1b[2J\\x1b[31mX\\x0aFAKE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_left_alone() {
        assert!(matches!(
            escape("nginx: worker"),
            Cow::Borrowed("nginx: worker")
        ));
        assert_eq!(escape("a~b/c.d-e_f (1)"), "a~b/c.d-e_f (1)");
    }

    #[test]
    fn controls_and_other_bytes_become_hex() {
        assert_eq!(escape(FORGING), FORGING_SHOWN);
        assert_eq!(FORGING.len(), 15);
        assert_eq!(escape("\t\r\x7f\0"), "\\x09\\x0d\\x7f\\x00");
        // Non-ASCII: each byte, so a column is one byte wide and a
        // right-to-left override cannot reorder the line.
        assert_eq!(escape("café"), "caf\\xc3\\xa9");
        assert_eq!(escape("\u{202e}x"), "\\xe2\\x80\\xaex");
        assert_eq!(escape(&[b'a', 0xff][..]), "a\\xff");
    }

    #[test]
    fn a_backslash_is_doubled_so_the_escaped_form_is_unambiguous() {
        // A name that spells an escape is not mistaken for one.
        assert_eq!(escape("\\x1b"), "\\\\x1b");
        assert_ne!(escape("\\x1b"), escape("\x1b"));
    }

    #[test]
    fn pads_what_is_shown() {
        assert_eq!(format!("[{:<8}]", escaped("a\nb")), "[a\\x0ab  ]");
        assert_eq!(format!("[{:>4}]", escaped("ok")), "[  ok]");
    }
}
