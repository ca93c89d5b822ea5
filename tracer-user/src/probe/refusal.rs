//! A program the kernel would not take, said in one line: which program,
//! the verifier's own last word, and where its whole log went (thousands of
//! lines: a file that line names, or stderr with `--verbose`).
use std::{io::Write as _, path::PathBuf};

use aya::programs::ProgramError;

/// One line for `err`, which happened to program `name`.
pub fn explain(name: &str, err: ProgramError, verbose: bool) -> String {
    let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = err
    else {
        return err.to_string();
    };
    let log = verifier_log.to_string();
    let last = last_word(&log);
    let kept = if verbose {
        crate::say!("socktrace: the kernel's verifier on {name}:\n{log}");
        "printed above".to_string()
    } else {
        match keep(name, &log) {
            Ok(path) => format!("its log is in {}", path.display()),
            Err(err) => format!("its log could not be kept ({err}); --verbose prints it"),
        }
    };
    format!("refused by the kernel ({io_error}): {last}; {kept}")
}

/// The verifier's reason: its last line before the statistics it appends.
fn last_word(log: &str) -> &str {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|line| {
            !line.is_empty()
                && !["verification time", "stack depth", "processed "]
                    .iter()
                    .any(|stat| line.starts_with(stat))
        })
        .unwrap_or("the verifier gave no reason")
}

/// Writes `log` to a new file of ours (0600, never through a symlink) in
/// the temporary directory.
fn keep(name: &str, log: &str) -> std::io::Result<PathBuf> {
    let mut n = 0;
    loop {
        let path = std::env::temp_dir().join(format!(
            "socktrace-{}-{name}{}.verifier.log",
            std::process::id(),
            if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            }
        ));
        match crate::cmd::record::create(&path, false) {
            Ok(mut file) => {
                file.write_all(log.as_bytes())?;
                return Ok(path);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && n < 16 => n += 1,
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_s_reason_is_its_last_line_before_the_statistics() {
        let log = "0: (79) r9 = *(u64 *)(r1 +16)\n\
                   unknown func bpf_get_socket_cookie#46\n\
                   verification time 197230 usec\n\
                   stack depth 392+0+0\n\
                   processed 843 insns (limit 1000000) max_states_per_insn 3\n\n";
        assert_eq!(last_word(log), "unknown func bpf_get_socket_cookie#46");
        assert_eq!(last_word(""), "the verifier gave no reason");
    }

    #[test]
    fn a_refusal_is_one_line_naming_the_file_that_holds_the_log() {
        let log = "line\n".repeat(8000) + "R1 invalid mem access 'inv'\n";
        let err = ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new(log.clone()),
        };
        let line = explain("unit_test_program", err, false);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("R1 invalid mem access 'inv'"), "{line}");
        let path = line.rsplit("its log is in ").next().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), log);
        std::fs::remove_file(path).unwrap();
    }
}
