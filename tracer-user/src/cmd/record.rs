//! `socktrace record FILE`: the JSON event stream into a file, after a
//! header line saying where and when it was recorded. The file is created
//! 0600 and never through a symlink, so a planted link in a shared
//! directory cannot redirect it.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use anyhow::Context as _;

use crate::{
    cli::RecordArgs,
    cmd::{
        live::{self, View},
        watch,
    },
    input::Header,
    summary::Summary,
};

/// How often the listeners' accept queues are recorded.
const QUEUES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn run(args: RecordArgs) -> anyhow::Result<Summary> {
    let file = create(&args.file, args.force)
        .with_context(|| format!("cannot create {}", args.file.display()))?;
    let header = Header {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        schema: Some(crate::output::SCHEMA_VERSION),
        socktrace: env!("CARGO_PKG_VERSION").into(),
        host: read_trimmed("/proc/sys/kernel/hostname"),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        filters: args.watch.common.filter.describe(),
    };
    let mut plan = watch::plan(args.watch);
    plan.view = View::Recording;
    // The listeners' queues, sampled as `socktrace listeners` does.
    plan.interval = Some(QUEUES_EVERY);
    plan.output = Some(Box::new(BufWriter::with_capacity(1 << 20, file)));
    plan.header = Some(header.line());
    live::stream(plan).await
}

/// Creates `path` 0600 (refusing an existing one unless `force`), never
/// following a symlink at its last component.
pub fn create(path: &Path, force: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path)
}

/// The file's text, trimmed; `None` if it cannot be read (or is empty).
fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_files_and_refuses_links() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("socktrace-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("run.jsonl");
        create(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Exists: refused without --force, truncated with it.
        assert_eq!(
            create(&path, false).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        create(&path, true).unwrap();
        // A planted symlink is not followed, even with --force.
        let target = dir.join("target");
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create(&link, true).is_err());
        assert!(create(&link, false).is_err());
        assert!(!target.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
