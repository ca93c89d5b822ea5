//! tracefs: finding or mounting it, and reading tracepoint record layouts
//! from `events/<category>/<name>/format`.
use std::{
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tracer_common::Field;

/// Where tracefs lives, in the order aya looks for it.
const MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Mount(nix::Error),
    #[error(
        "the kernel has no tracepoint {category}:{name} ({why}); reading {path} failed: {source}"
    )]
    NoTracepoint {
        category: String,
        name: String,
        why: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {tracepoint}: {problem}")]
    Layout { tracepoint: String, problem: String },
}

/// A mounted tracefs.
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs, mounting it at /sys/kernel/tracing if no mount is
    /// there. Returns it and whether we mounted it.
    pub fn find_or_mount() -> Result<(Tracefs, bool), TracefsError> {
        let mounted = || {
            MOUNT_POINTS
                .iter()
                .find(|root| Path::new(root).join("events").is_dir())
                .map(|root| Tracefs { root: root.into() })
        };
        if let Some(tracefs) = mounted() {
            return Ok((tracefs, false));
        }
        let root = MOUNT_POINTS[0];
        let mount = nix::mount::mount(
            Some("tracefs"),
            root,
            Some("tracefs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            None::<&str>,
        );
        match mount {
            Ok(()) => Ok((Tracefs { root: root.into() }, true)),
            // Another process (a second socktrace starting at the same
            // moment) mounted it meanwhile (EBUSY): use theirs.
            Err(err) => mounted()
                .map(|t| (t, false))
                .ok_or(TracefsError::Mount(err)),
        }
    }

    /// The record layout of tracepoint `category:name`. `why` says what the
    /// kernel lacks when it is missing ("needs Linux 4.16+").
    pub fn format(
        &self,
        category: &str,
        name: &str,
        why: &'static str,
    ) -> Result<Format, TracefsError> {
        let path = self
            .root
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let text = fs::read_to_string(&path).map_err(|source| TracefsError::NoTracepoint {
            category: category.into(),
            name: name.into(),
            why,
            path: path.clone(),
            source,
        })?;
        Ok(Format::parse(&format!("{category}:{name}"), &text))
    }
}

/// The fields of one tracepoint record, as its `format` file lists them.
#[derive(Debug)]
pub struct Format {
    tracepoint: String,
    fields: Vec<(String, Field)>,
}

impl Format {
    /// Parses a `format` file. Lines that are not field lines are ignored,
    /// so both old and new kernels' files parse.
    pub fn parse(tracepoint: &str, text: &str) -> Format {
        let fields = text.lines().filter_map(parse_field_line).collect();
        Format {
            tracepoint: tracepoint.into(),
            fields,
        }
    }

    /// Field `name`, which must be one of `sizes` bytes long.
    pub fn field(&self, name: &str, sizes: &[u8]) -> Result<Field, TracefsError> {
        let problem = |problem: String| TracefsError::Layout {
            tracepoint: self.tracepoint.clone(),
            problem,
        };
        let field = self
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| problem(format!("has no field `{name}`")))?;
        if !sizes.contains(&field.size) {
            return Err(problem(format!(
                "field `{name}` is {} bytes, expected one of {sizes:?}",
                field.size
            )));
        }
        Ok(field)
    }

    /// Checks that field `name` is where `expected` says (one program
    /// serving two tracepoints relies on it).
    pub fn same_field(&self, name: &str, expected: Field) -> Result<(), TracefsError> {
        let field = self.field(name, &[expected.size])?;
        if field != expected {
            return Err(TracefsError::Layout {
                tracepoint: self.tracepoint.clone(),
                problem: format!("field `{name}` is at {field:?}, expected {expected:?}"),
            });
        }
        Ok(())
    }
}

/// `\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;` -> ("saddr", 32, 4)
fn parse_field_line(line: &str) -> Option<(String, Field)> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.trim().split(';') {
        let Some((key, value)) = part.trim().split_once(':') else {
            continue;
        };
        match key {
            "field" => decl = Some(value),
            "offset" => offset = value.parse::<u16>().ok(),
            "size" => size = value.parse::<u8>().ok(),
            _ => {}
        }
    }
    let name = decl?.split_whitespace().last()?;
    let name = name.split('[').next()?.trim_start_matches('*');
    Some((name.to_string(), Field::new(offset?, size?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux 6.18 on x86_64, captured from the machine CI runs on.
    const SET_STATE_6_18: &str = include_str!("fixtures/inet_sock_set_state.6.18.format");
    /// Linux 5.4 (as its TP_STRUCT__entry lays it out): `protocol` was a
    /// `__u8`, so every address field sits one byte earlier.
    const SET_STATE_5_4: &str = include_str!("fixtures/inet_sock_set_state.5.4.format");

    #[test]
    fn current_layout() {
        let f = Format::parse("sock:inet_sock_set_state", SET_STATE_6_18);
        assert_eq!(f.field("skaddr", &[8]).unwrap(), Field::new(8, 8));
        assert_eq!(f.field("protocol", &[1, 2]).unwrap(), Field::new(30, 2));
        assert_eq!(f.field("saddr", &[4]).unwrap(), Field::new(32, 4));
        assert_eq!(f.field("daddr_v6", &[16]).unwrap(), Field::new(56, 16));
    }

    #[test]
    fn protocol_was_a_byte_before_5_6() {
        let f = Format::parse("sock:inet_sock_set_state", SET_STATE_5_4);
        assert_eq!(f.field("protocol", &[1, 2]).unwrap(), Field::new(30, 1));
        assert_eq!(f.field("saddr", &[4]).unwrap(), Field::new(31, 4));
        assert_eq!(f.field("saddr_v6", &[16]).unwrap(), Field::new(39, 16));
        assert_eq!(f.field("daddr_v6", &[16]).unwrap(), Field::new(55, 16));
    }

    #[test]
    fn missing_or_resized_fields_are_errors() {
        let f = Format::parse("sock:inet_sock_set_state", SET_STATE_6_18);
        let err = f.field("cookie", &[8]).unwrap_err().to_string();
        assert_eq!(
            err,
            "tracepoint sock:inet_sock_set_state: has no field `cookie`"
        );
        let err = f.field("sport", &[4]).unwrap_err().to_string();
        assert!(err.contains("field `sport` is 2 bytes"), "{err}");
    }

    #[test]
    fn syscall_arguments() {
        let text = "name: sys_enter_bind\nID: 2238\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
            \tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;\n\
            \tfield:struct sockaddr * umyaddr;\toffset:24;\tsize:8;\tsigned:0;\n\
            \tfield:int addrlen;\toffset:32;\tsize:8;\tsigned:0;\n\n\
            print fmt: \"fd: 0x%08lx\", ((unsigned long)(REC->fd))\n";
        let f = Format::parse("syscalls:sys_enter_bind", text);
        assert_eq!(f.field("fd", &[4, 8]).unwrap(), Field::new(16, 8));
        assert_eq!(f.field("umyaddr", &[8]).unwrap(), Field::new(24, 8));
        assert_eq!(f.field("addrlen", &[4, 8]).unwrap(), Field::new(32, 8));
    }
}
