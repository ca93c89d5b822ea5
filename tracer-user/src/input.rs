//! Reading socktrace's own JSON lines (what `output::Json` writes, after an
//! optional [`Header`]) back into [`Record`]s, so offline analyses
//! (`socktrace analyze FILE`) consume the same types as the live pipeline.
//!
//! A bad line (truncated, corrupt, not UTF-8, over 1 MiB) is an error for
//! that line only: reading goes on with the next. Empty lines are skipped,
//! and so are lines of the types other modes write (`summary`, `listener`,
//! `timewait`, ...): they are valid, just not records; [`Reader::skipped`]
//! counts them. A header line is not a record either: [`Reader::header`]
//! keeps the last one read.
//!
//! **Time.** Live records carry `CLOCK_MONOTONIC` nanoseconds (`mono_ns`,
//! and the instant of [`Record::Existing`] and [`Record::Loss`]). Read
//! back, the same fields hold wall-clock nanoseconds since the Unix epoch,
//! parsed from `time`: analyses only use differences between them.
//!
//! **What JSON does not carry** (and reads back as shown):
//! - a state event's [`StateInfo`](crate::event::StateInfo) besides
//!   `tw_end`: `sk_err`, the RST and FIN flags, `tw_table_full`, the
//!   byte counts and the RTT and retransmits are default (the close record
//!   says what they meant);
//! - durations (`duration_ns`, `spent`): rounded to the microsecond;
//! - the kernel counters `emitted`, `unpaired`, `owner_failed`,
//!   `tally_overflow` and `bound_full`: 0;
//! - [`Opener::Listener`](crate::track::Opener::Listener) (never in a
//!   close record) reads as `Unknown`;
//! - [`TcpState::Unknown`](crate::event::TcpState::Unknown)`(n)` reads as
//!   `Unknown(0)`;
//! - a `comm` that was not UTF-8 reads as its lossy text;
//! - an owner's cgroup is rebuilt from its path and container id, one
//!   `Arc` per record (live ones share it); an unresolved one stays `None`.
//!
//! Fields that may be `null` may also be absent.
mod line;

use std::io::{self, BufRead, Read as _};

use line::{Kind, Line, Tag};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::track::Record;

/// The longest line read; longer ones are errors, skipped unread.
const MAX_LINE: usize = 1 << 20;

/// The first line `socktrace record` writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// When recording started, RFC 3339 (`start` in recordings before
    /// the schema had a version).
    #[serde(alias = "start")]
    pub time: String,
    /// The version of the JSON schema the lines follow
    /// ([`SCHEMA_VERSION`](crate::output::SCHEMA_VERSION) when we write
    /// it; absent in older recordings).
    #[serde(default)]
    pub schema: Option<u32>,
    /// socktrace's version.
    pub socktrace: String,
    /// The host name and kernel release; `None` when they could not be
    /// read.
    pub host: Option<String>,
    pub kernel: Option<String>,
    /// The command line that recorded.
    pub command: String,
    pub filters: Vec<String>,
}

impl Header {
    /// `{"type":"header",...}` on one line, without its newline.
    pub fn line(&self) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let filters = serde_json::Value::from(self.filters.clone());
        let schema = serde_json::Value::from(self.schema);
        let (host, kernel) = (
            serde_json::Value::from(self.host.clone()),
            serde_json::Value::from(self.kernel.clone()),
        );
        format!(
            r#"{{"type":"header","time":{},"schema":{schema},"socktrace":{},"host":{host},"kernel":{kernel},"command":{},"filters":{filters}}}"#,
            text(&self.time),
            text(&self.socktrace),
            text(&self.command),
        )
    }
}

/// Why a line could not be read.
#[derive(Debug, Error)]
pub enum LineError {
    #[error("not UTF-8")]
    Utf8,
    #[error("longer than 1 MiB")]
    TooLong,
    /// Not JSON, or a field of the wrong JSON type (serde's message).
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid field `{field}`: {value}")]
    Invalid { field: &'static str, value: String },
    /// Reading failed; this ends the stream.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Records from JSON lines; an iterator of `Result<Record, (line, error)>`
/// with 1-based line numbers.
pub struct Reader<R> {
    input: R,
    buf: Vec<u8>,
    /// Lines read so far.
    line: u64,
    header: Option<Header>,
    skipped: u64,
    /// An I/O error ended the stream.
    failed: bool,
}

/// What reading one line found.
enum Got {
    End,
    Line,
    TooLong,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            buf: Vec::new(),
            line: 0,
            header: None,
            skipped: 0,
            failed: false,
        }
    }

    /// The last header line read, if any (header lines are not records).
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Lines of types that are not records (written by other modes).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Reads one line, without its newline, into `buf`; a line over
    /// `MAX_LINE` is skipped to its end instead.
    fn read_line(&mut self) -> io::Result<Got> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Got::Line);
        }
        if n as u64 == limit {
            self.buf.clear();
            self.skip_line()?;
            return Ok(Got::TooLong);
        }
        Ok(if n == 0 { Got::End } else { Got::Line })
    }

    /// Consumes input up to and including the next newline.
    fn skip_line(&mut self) -> io::Result<()> {
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), chunk.is_empty()),
            };
            self.input.consume(used);
            if done {
                return Ok(());
            }
        }
    }

    /// The record in `buf`, if it holds one.
    fn parse(&mut self) -> Result<Option<Record>, LineError> {
        let text = std::str::from_utf8(&self.buf).map_err(|_| LineError::Utf8)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let Tag { kind } = serde_json::from_str(text)?;
        match kind {
            Kind::Header => {
                self.header = Some(serde_json::from_str(text)?);
                Ok(None)
            }
            Kind::Other => {
                self.skipped += 1;
                Ok(None)
            }
            kind => serde_json::from_str::<Line>(text)?.record(kind),
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, (u64, LineError)>;

    /// The next record, or the error of a bad line; `None` at the end (and
    /// after an I/O error).
    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let got = match self.read_line() {
                Ok(got) => got,
                Err(e) => {
                    self.failed = true;
                    return Some(Err((self.line + 1, e.into())));
                }
            };
            let too_long = match got {
                Got::End => return None,
                Got::Line => false,
                Got::TooLong => true,
            };
            self.line += 1;
            if too_long {
                return Some(Err((self.line, LineError::TooLong)));
            }
            match self.parse() {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {}
                Err(e) => return Some(Err((self.line, e))),
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests;
