//! `cargo xtask fuzz`: libFuzzer (cargo-fuzz, nightly) on what socktrace
//! reads from outside: ring records (`event::decode`) and JSON lines
//! (`input::Reader`, behind `analyze`). A crash fails the task and leaves
//! its input in fuzz/artifacts; what the fuzzer learns stays in
//! fuzz/corpus. `cargo xtask test` runs each target briefly.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::setup;

const TARGETS: [&str; 2] = ["decode", "json_lines"];

/// Fuzzes each target for `seconds`. With `keep`, what the fuzzer finds
/// joins fuzz/corpus; without (the short run in `test`), it goes to a
/// scratch directory under target/, so a test run leaves the tree clean.
pub fn run(root: &Path, seconds: u64, keep: bool) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    for target in TARGETS {
        println!("xtask: fuzz: {target} for {seconds} s");
        let kept = root.join("fuzz/corpus").join(target);
        // libFuzzer adds new inputs to the first corpus directory it is given.
        let mut corpora = vec![kept];
        if !keep {
            let scratch = root.join("target/fuzz-corpus").join(target);
            std::fs::create_dir_all(&scratch)?;
            corpora.insert(0, scratch);
        }
        let status = Command::new("cargo")
            .current_dir(root)
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target])
            .args(&corpora)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            // Fuzzing needs the loader's code, not the kernel object.
            .env("AYA_BUILD_SKIP", "1")
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {target} failed: the crashing input is in fuzz/artifacts/{target}");
        }
    }
    Ok(())
}
