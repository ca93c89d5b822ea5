//! Servers that answer PromQL over Prometheus's HTTP API (Prometheus
//! itself, VictoriaMetrics), run on a free loopback port with a scratch
//! data directory of their own, and what reads them: `http_get`, a
//! `/metrics` exposition as comparable series.
use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::http_get;

/// How long a server gets to start, take data and answer a query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A query server; killed (its directory removed) when dropped.
pub struct QueryServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl QueryServer {
    /// Runs `command` (told its port and directory by `args`), its output
    /// in `dir`/server.log.
    pub fn spawn(
        kind: &str,
        program: &std::path::Path,
        args: impl FnOnce(u16, &std::path::Path) -> Vec<String>,
    ) -> QueryServer {
        let dir = super::scratch_dir(kind);
        let port = super::free_port("127.0.0.1");
        let log = fs::File::create(dir.join("server.log")).expect("log file");
        let child = Command::new(program)
            .args(args(port, &dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        QueryServer { child, port, dir }
    }

    /// The server's last log lines, newest first.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.join("\n")
    }

    /// Waits until the instant query `promql` gives a value of at least
    /// `want` (no series counts as 0).
    pub fn wait_for(&self, promql: &str, want: u64) {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.query(promql) {
                Ok(value) if value.unwrap_or(0.0) >= want as f64 => return,
                Ok(value) => last = format!("value {value:?}"),
                Err(err) => last = err,
            }
            thread::sleep(Duration::from_millis(500));
        }
        let targets = http_get(self.port, "/api/v1/targets").unwrap_or_else(|e| e);
        panic!(
            "the server did not answer `{promql}` with at least {want} within {QUERY_TIMEOUT:?}; \
             last: {last}\ntargets: {targets}\nits log (last lines first):\n{}",
            self.log_tail()
        );
    }

    /// The value of the first series `promql` returns now, if any.
    pub fn query(&self, promql: &str) -> Result<Option<f64>, String> {
        let Some(first) = self.query_all(promql)?.into_iter().next() else {
            return Ok(None);
        };
        first["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| first.to_string())
    }

    /// Every series `promql` returns now: `{"metric": {...}, "value": [t, "v"]}`.
    pub fn query_all(&self, promql: &str) -> Result<Vec<Value>, String> {
        let body = http_get(
            self.port,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        )?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(body);
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for QueryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Series by `name{k="v",...}` (labels sorted, `le` as a number), and
/// their values.
pub type Series = BTreeMap<String, f64>;

/// `name` and `labels` as one [`Series`] key.
pub fn series_key<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut labels: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| match (k, v.parse::<f64>()) {
            ("le", Ok(le)) => format!("le=\"{le}\""),
            _ => format!("{k}=\"{v}\""),
        })
        .collect();
    if labels.is_empty() {
        return name.into();
    }
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// The samples of a `/metrics` exposition (label values without `",`).
pub fn exposition(text: &str) -> Series {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').expect("a sample");
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect("closed labels")),
                None => (head, ""),
            };
            let labels = labels.split("\",").filter(|kv| !kv.is_empty()).map(|kv| {
                let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                (k, v.trim_end_matches('"'))
            });
            (series_key(name, labels), value.parse().expect("a number"))
        })
        .collect()
}
