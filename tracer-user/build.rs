//! Builds the kernel programs (`tracer-ebpf`, with the nightly toolchain and
//! bpf-linker) and leaves the object in OUT_DIR for `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` (clippy or `cargo check` on a machine without
//! bpf-linker) aya-build writes nothing, so an empty object stands in; the
//! binary then refuses to load it with a clear message.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR unset"))?);
    let object = out_dir.join("tracer");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(&object, b"").context("writing the stand-in eBPF object")?;
        return Ok(());
    }
    let root = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(root).join("../tracer-ebpf");
    let ebpf = Package {
        name: "tracer-ebpf",
        root_dir: ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::default())
}
