//! Privilege check before anything else: read the effective capability set
//! (root without CAP_BPF in a container is not enough).
use std::fs;

use thiserror::Error;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum CapsError {
    #[error("needs root (or CAP_BPF and CAP_PERFMON); missing: {0}")]
    Missing(String),
    #[error("cannot read capabilities from /proc/self/status: {0}")]
    Unreadable(String),
}

/// Fails unless the process may load tracing programs and read kernel
/// memory: CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN on older kernels.
pub fn check() -> Result<(), CapsError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| CapsError::Unreadable(e.to_string()))?;
    let eff = effective(&status).ok_or_else(|| CapsError::Unreadable("no CapEff line".into()))?;
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<_> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    Err(CapsError::Missing(missing.join(", ")))
}

fn effective(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tbash\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective("Name:\tx\n"), None);
    }
}
