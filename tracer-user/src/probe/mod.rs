//! Load and attach: checks what the kernel and our privileges allow, mounts
//! tracefs if needed, resolves every field offset from the running kernel,
//! and hands the ring buffer and counters to the reader.
mod btf;
mod caps;
mod tracefs;

use std::time::Instant;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use aya_log::EbpfLogger;
use thiserror::Error;
use tracer_common::{Config, StateTpLayout, SyscallTpLayout};

pub use self::tracefs::{Format, Tracefs, TracefsError};

/// The kernel object built from `tracer-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// Tracepoints we attach to, with what a kernel lacking them is missing.
const STATE_TP: (&str, &str, &str) = ("sock", "inet_sock_set_state", "needs Linux 4.16+");
const NEEDS_SYSCALL_TPS: &str = "needs CONFIG_FTRACE_SYSCALLS";
const PROGRAMS: [(&str, &str, &str); 5] = [
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sys_enter_bind", "syscalls", "sys_enter_bind"),
    ("sys_exit_bind", "syscalls", "sys_exit_bind"),
    ("sys_enter_listen", "syscalls", "sys_enter_listen"),
    ("sys_exit_listen", "syscalls", "sys_exit_listen"),
];

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
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {0} is missing from the kernel object")]
    Map(&'static str),
    #[error("map {name}: {source}")]
    MapType {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Tuning the loader passes to the kernel programs.
pub struct Options {
    /// Wake the reader once this many bytes are waiting (see `Config`).
    pub wakeup_bytes: u64,
}

/// Loaded and attached programs. Dropping `programs` detaches them all;
/// the ring and counters stay readable so the reader can drain them.
pub struct Probe {
    pub programs: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// We mounted tracefs (worth saying: the user did not ask for it).
    pub mounted_tracefs: bool,
    /// From the start of `attach` to the last program attached.
    pub attach_time: std::time::Duration,
}

impl Probe {
    pub fn attach(options: &Options) -> Result<Probe, ProbeError> {
        let started = Instant::now();
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        caps::check()?;
        let (tracefs, mounted_tracefs) = Tracefs::find_or_mount()?;
        let config = Config {
            state_tp: state_layout(&tracefs)?,
            syscall_tp: syscall_layout(&tracefs)?,
            kernel: btf::kernel_layout()?,
            wakeup_bytes: options.wakeup_bytes,
        };
        // No CO-RE relocations to do, so aya need not parse the kernel's BTF.
        let mut programs = EbpfLoader::new()
            .btf(None)
            .override_global("CONFIG", &config, true)
            .load(OBJECT)?;
        // Must live as long as the programs: it owns the log ring's fd.
        let logger = match EbpfLogger::init(&mut programs) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::debug!("kernel-side logging unavailable: {err}");
                None
            }
        };
        for (name, category, tracepoint) in PROGRAMS {
            let program_err = |source| ProbeError::Program { name, source };
            let program: &mut TracePoint = programs
                .program_mut(name)
                .ok_or(ProbeError::Map(name))?
                .try_into()
                .map_err(program_err)?;
            program.load().map_err(program_err)?;
            program.attach(category, tracepoint).map_err(program_err)?;
        }
        let ring = take_map(&mut programs, "EVENTS")?;
        let counters = take_map(&mut programs, "COUNTERS")?;
        Ok(Probe {
            programs,
            ring,
            counters,
            logger,
            mounted_tracefs,
            attach_time: started.elapsed(),
        })
    }
}

fn take_map<M>(programs: &mut Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = programs.take_map(name).ok_or(ProbeError::Map(name))?;
    M::try_from(map).map_err(|source| ProbeError::MapType { name, source })
}

fn state_layout(tracefs: &Tracefs) -> Result<StateTpLayout, TracefsError> {
    let (category, name, why) = STATE_TP;
    let f = tracefs.format(category, name, why)?;
    Ok(StateTpLayout {
        skaddr: f.field("skaddr", &[8])?,
        oldstate: f.field("oldstate", &[4])?,
        newstate: f.field("newstate", &[4])?,
        sport: f.field("sport", &[2])?,
        dport: f.field("dport", &[2])?,
        family: f.field("family", &[2])?,
        // A __u8 before Linux 5.6, a __u16 since.
        protocol: f.field("protocol", &[1, 2])?,
        saddr: f.field("saddr", &[4])?,
        daddr: f.field("daddr", &[4])?,
        saddr_v6: f.field("saddr_v6", &[16])?,
        daddr_v6: f.field("daddr_v6", &[16])?,
    })
}

fn syscall_layout(tracefs: &Tracefs) -> Result<SyscallTpLayout, TracefsError> {
    let syscall = |name| tracefs.format("syscalls", name, NEEDS_SYSCALL_TPS);
    let (enter_bind, exit_bind) = (syscall("sys_enter_bind")?, syscall("sys_exit_bind")?);
    let (enter_listen, exit_listen) = (syscall("sys_enter_listen")?, syscall("sys_exit_listen")?);
    Ok(SyscallTpLayout {
        bind_fd: enter_bind.field("fd", &[4, 8])?,
        bind_addr: enter_bind.field("umyaddr", &[8])?,
        bind_addrlen: enter_bind.field("addrlen", &[4, 8])?,
        bind_ret: exit_bind.field("ret", &[8])?,
        listen_fd: enter_listen.field("fd", &[4, 8])?,
        listen_backlog: enter_listen.field("backlog", &[4, 8])?,
        listen_ret: exit_listen.field("ret", &[8])?,
    })
}
