//! Where the benches write: each one replaces only its own section, between
//! `<!-- NAME:start -->` and `<!-- NAME:end -->`, of bench/RESULTS.md and
//! the README, so one bench's run leaves the others' results alone.
use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

/// One bench's section, in each file.
pub(super) struct Section<'a> {
    /// The markers' name: `bench`, `bench-scale`.
    pub name: &'static str,
    /// bench/RESULTS.md's text.
    pub results: &'a str,
    /// The README's text.
    pub readme: &'a str,
}

/// Writes `section` into bench/RESULTS.md (appended if the file has no
/// such section yet) and README.md (which must have it).
pub(super) fn publish(root: &Path, section: &Section) -> Result<()> {
    let results = root.join("bench/RESULTS.md");
    fs::create_dir_all(results.parent().context("bench/")?)?;
    let doc =
        fs::read_to_string(&results).unwrap_or_else(|_| "# socktrace benchmark\n".to_string());
    let doc = replace(&doc, section.name, section.results).unwrap_or_else(|| {
        format!(
            "{}\n\n{}\n",
            doc.trim_end(),
            wrap(section.name, section.results)
        )
    });
    fs::write(&results, doc)?;
    let path = root.join("README.md");
    let readme = fs::read_to_string(&path)?;
    let readme = replace(&readme, section.name, section.readme).with_context(|| {
        format!(
            "README.md has no {} ... {} section",
            start(section.name),
            end(section.name)
        )
    })?;
    fs::write(&path, readme)?;
    Ok(())
}

fn start(name: &str) -> String {
    format!("<!-- {name}:start -->")
}

fn end(name: &str) -> String {
    format!("<!-- {name}:end -->")
}

/// `body` between the section's markers.
fn wrap(name: &str, body: &str) -> String {
    format!("{}\n{body}{}", start(name), end(name))
}

/// `doc` with section `name` holding `body`; None if `doc` has no such
/// section.
fn replace(doc: &str, name: &str, body: &str) -> Option<String> {
    let a = doc.find(&start(name))?;
    let b = a + doc[a..].find(&end(name))? + end(name).len();
    Some(format!("{}{}{}", &doc[..a], wrap(name, body), &doc[b..]))
}

/// What the numbers were measured on: CPUs, kernel, date.
pub(super) fn machine() -> String {
    let cmd = |c: &str, args: &[&str]| {
        Command::new(c)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "{} CPUs ({model}), kernel {}, {}",
        cpus,
        cmd("uname", &["-r"]),
        cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# title\n\n<!-- bench:start -->\nold churn\n<!-- bench:end -->\n\n\
                       <!-- bench-scale:start -->\nold scale\n<!-- bench-scale:end -->\ntail\n";

    #[test]
    fn replaces_only_its_own_section() {
        let doc = replace(DOC, "bench-scale", "new scale\n").unwrap();
        assert_eq!(
            doc,
            "# title\n\n<!-- bench:start -->\nold churn\n<!-- bench:end -->\n\n\
             <!-- bench-scale:start -->\nnew scale\n<!-- bench-scale:end -->\ntail\n"
        );
        let doc = replace(&doc, "bench", "new churn\n").unwrap();
        assert!(doc.contains("<!-- bench:start -->\nnew churn\n<!-- bench:end -->"));
        assert!(doc.contains("new scale"));
        assert!(!doc.contains("old"));
    }

    #[test]
    fn a_missing_section_is_none() {
        assert_eq!(replace("# title\n", "bench", "x\n"), None);
        // The other section's end marker is no end for this one.
        assert_eq!(
            replace(
                "<!-- bench:start -->\n<!-- bench-scale:end -->\n",
                "bench",
                ""
            ),
            None
        );
    }
}
