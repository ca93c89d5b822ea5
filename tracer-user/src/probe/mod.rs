//! Load and attach: checks what the kernel and our privileges allow, mounts
//! tracefs if needed, resolves every field offset from the running kernel,
//! and hands the ring buffer and counters to the reader. Optional hooks
//! that this kernel lacks are skipped and named in `Probe::degraded`.
mod attach;
mod btf;
mod caps;
mod cgroup;
mod counters;
mod features;
mod refusal;
mod stats;
mod steps;
mod sys;
mod tracefs;
mod unprivileged;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap, RingBuf},
};
use aya_log::EbpfLogger;
use thiserror::Error;
use tracer_common::{
    KernelFilter, MODE_LISTENERS, MODE_RELEASE, MODE_STREAM, MODE_TALLY, Tally, TallyKey,
};

pub use self::{
    cgroup::v2_root as cgroup_v2_root,
    counters::{Counters, Doze},
    stats::recursion_misses_but_caught,
    steps::Steps,
    tracefs::{Format, Tracefs, TracefsError},
};

/// The kernel object built from `tracer-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// The state program (see tracer-ebpf's `state`).
pub const STATE_PROGRAM: &str = "inet_sock_set_state";
/// The state program's catcher (see tracer-ebpf's `state`): the kernel
/// counts a transition it caught among the state program's recursion
/// misses, and the catcher's own misses lose nothing the state program
/// did not count (see `stats`).
pub const STATE_CATCHER: &str = "inet_sock_set_state_catcher";
/// `tcp_send_reset` where the tracepoint gives the reason: one of the two
/// is loaded, by the tracepoint's arguments (see `btf::reset_reasons`).
pub const RESET_REASON: &str = "tcp_send_reset_reason";

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "this build has no kernel programs (built with AYA_BUILD_SKIP); build with `cargo xtask build`"
    )]
    NoObject,
    #[error(transparent)]
    Privileges(#[from] caps::CapsError),
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("reading kernel BTF for the BTF tracepoints: {0}")]
    KernelBtf(#[from] aya::BtfError),
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// `why` is one line (see `refusal`).
    #[error("program {name}: {why}")]
    Program { name: &'static str, why: String },
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("mapping the memory the programs share (COUNTERS, DOZE): {0}")]
    Counters(std::io::Error),
    #[error("{0} is missing from the kernel object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    MapType {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Tuning and filters the loader passes to the kernel programs.
pub struct Options {
    /// Wake the reader once this many bytes are waiting (see `Config`).
    pub wakeup_bytes: u64,
    /// What the programs drop before building a record.
    pub filter: KernelFilter,
    pub mode: Mode,
    /// A program the kernel refuses: its verifier's log to stderr, not to
    /// a file.
    pub verbose: bool,
}

/// What the kernel programs are asked to do; each mode attaches only the
/// hooks it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stream every transition, bind, listen and bound-socket release.
    Watch,
    /// Stream binds, listens, releases and LISTEN transitions only.
    Listeners,
    /// Stream nothing; count connection ends in `TALLIES`. Connections
    /// shorter than `short` count as short.
    Timewait { short: std::time::Duration },
}

impl Mode {
    /// `Config::mode`; `release`: the release hook will be attached.
    fn bits(self, release: bool) -> u32 {
        let what = match self {
            Mode::Watch => MODE_STREAM,
            Mode::Listeners => MODE_LISTENERS,
            Mode::Timewait { .. } => MODE_TALLY,
        };
        if release { what | MODE_RELEASE } else { what }
    }

    /// Whether the cgroup socket hooks (creation, release) are attached.
    fn follows_releases(self) -> bool {
        matches!(self, Mode::Watch | Mode::Listeners)
    }

    /// The ring's size in bytes (a power of two, pages). Streaming, it
    /// holds over 0.1 s of the bench's churn (about 35 MB/s of records)
    /// beyond what the reader drains each `DRAIN_EVERY`; where the kernel
    /// aggregates, only binds, listens and listener changes pass, or
    /// nothing. Userspace maps it twice (the kernel's wrap-around trick),
    /// so it counts twice in socktrace's RSS.
    fn ring_bytes(self, tally_ring: bool) -> u32 {
        match self {
            Mode::Watch => 4 << 20,
            Mode::Timewait { .. } if tally_ring => 4 << 20,
            Mode::Listeners | Mode::Timewait { .. } => 1 << 20,
        }
    }

    /// Whether `program` has a job in this mode.
    fn wants(self, program: &str) -> bool {
        match self {
            Mode::Watch => true,
            // Listeners want only the transitions listen(2) and close(2)
            // make, in the task's system call: the catcher has none of
            // them to catch where a tracepoint's programs run with
            // preemption off (see `tracepoints_preemptible`).
            Mode::Listeners if program == STATE_CATCHER => tracepoints_preemptible(),
            Mode::Listeners => !matches!(
                program,
                "sock_send_length"
                    | "sock_recv_length"
                    | "tcp_receive_reset"
                    | "tcp_send_reset"
                    | RESET_REASON
                    | "sys_exit_accept"
                    | "sys_exit_accept4"
            ),
            // A RST decides whether a close is a TIME_WAIT; an accept who
            // owns the connection, and so its TIME_WAIT.
            Mode::Timewait { .. } => matches!(
                program,
                STATE_PROGRAM
                    | STATE_CATCHER
                    | "tcp_receive_reset"
                    | "tcp_send_reset"
                    | RESET_REASON
                    | "sys_exit_accept"
                    | "sys_exit_accept4"
            ),
        }
    }
}

/// Whether a task may be preempted while a tracepoint's programs run
/// (PREEMPT_RT kernels say so in /sys/kernel/realtime). Elsewhere nothing
/// interrupts a task's run of the state program but a softirq, and a
/// transition a task makes never finds the state program running on its
/// CPU: only softirqs' transitions (a handshake, a peer's FIN or RST) are
/// ever recursion misses.
fn tracepoints_preemptible() -> bool {
    std::path::Path::new("/sys/kernel/realtime").exists()
}

/// Where `socktrace timewait` finds its counts.
pub enum Tallies {
    /// Summed in the kernel, by owner and destination.
    Map(PerCpuHashMap<MapData, TallyKey, Tally>),
    /// One `TallyRecord` per connection end in the ring, summed by the
    /// reader (`MODE_TALLY_RING`).
    Ring,
}

/// Loaded and attached programs. Dropping `programs` detaches them all;
/// the ring and counters stay readable so the reader can drain them.
pub struct Probe {
    pub programs: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: Counters,
    pub doze: Doze,
    /// `Mode::Timewait`'s counters, by owner and destination.
    pub tallies: Option<Tallies>,
    /// The start-up iterator's output, one `SocketFile` per socket some
    /// process holds (read once; see `host::owners`); `None` where the
    /// kernel refused it (said in `degraded`).
    pub socket_files: Option<std::fs::File>,
    /// CLOCK_MONOTONIC when the state program was attached: transitions
    /// from then on reach it.
    pub counting_since_ns: u64,
    /// The mode wants the state program's catcher: the state program's
    /// recursion misses are losses (see `stats`).
    pub catcher_wanted: bool,
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// We mounted tracefs (worth saying: the user did not ask for it).
    pub mounted_tracefs: bool,
    /// Features this kernel or host does not give us, and what that costs.
    pub degraded: Vec<String>,
    /// The kernel's names of its reasons to reset, by value, where its
    /// resets carry one (`ResetRecord::reason`).
    pub reset_reasons: Option<Vec<String>>,
    /// How long each step of `attach` took, to the last program attached.
    pub steps: Steps,
}
