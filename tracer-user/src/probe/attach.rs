//! `Probe::attach`, step by step: what the kernel offers, the programs'
//! `Config`, load, then the BTF, syscall and cgroup programs (in that
//! order), then the maps handed to the reader.
use std::{collections::HashMap, fs::File, path::PathBuf};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuHashMap, PerCpuValues},
    programs::{BtfTracePoint, CgroupAttachMode, Iter, Program, ProgramError, TracePoint},
};
use aya_log::EbpfLogger;
use tracer_common::{
    COUNTERS, Config, FEATURE_COOKIE, MODE_TALLY_RING, SyscallTpLayout, TALLIES_CAPACITY, Tally,
    TallyKey,
};

use super::{
    Counters, Doze, Mode, OBJECT, Options, Probe, ProbeError, RESET_REASON, STATE_CATCHER,
    STATE_PROGRAM, Steps, Tallies, Tracefs, TracefsError, btf, caps, cgroup, features, refusal,
    stats, unprivileged,
};

const NEEDS_SYSCALL_TPS: &str = "needs CONFIG_FTRACE_SYSCALLS";

/// Syscall tracepoint programs (each attached to the tracepoint of its
/// name): bind and listen, then the accept hand-over.
const SYSCALL_PROGRAMS: [&str; 6] = [
    "sys_enter_bind",
    "sys_exit_bind",
    "sys_enter_listen",
    "sys_exit_listen",
    "sys_exit_accept",
    "sys_exit_accept4",
];

/// BTF tracepoint programs, each with its tracepoint and what is lost when
/// it cannot attach (`None`: socktrace cannot work without it). The
/// catcher comes after the state program: it must run second.
const BTF_PROGRAMS: [(&str, &str, Option<&str>); 7] = [
    (STATE_PROGRAM, "inet_sock_set_state", None),
    (
        STATE_CATCHER,
        "inet_sock_set_state",
        Some(
            "transitions in a softirq that interrupted the state program are lost \
             (and counted)",
        ),
    ),
    (
        "sock_send_length",
        "sock_send_length",
        Some("owners are not learnt from send() (needs Linux 6.3+)"),
    ),
    (
        "sock_recv_length",
        "sock_recv_length",
        Some("owners are not learnt from recv() (needs Linux 6.3+)"),
    ),
    (
        "tcp_receive_reset",
        "tcp_receive_reset",
        Some("resets received are not reported"),
    ),
    (
        "tcp_send_reset",
        "tcp_send_reset",
        Some("resets sent are not reported"),
    ),
    (
        RESET_REASON,
        "tcp_send_reset",
        Some("resets sent are not reported"),
    ),
];

/// Whether BTF program `name` is the one for this kernel, of those that
/// share a tracepoint.
fn fits(name: &str, reset_reasons: bool) -> bool {
    match name {
        "tcp_send_reset" => !reset_reasons,
        RESET_REASON => reset_reasons,
        _ => true,
    }
}

/// What a kernel whose resets carry no reason costs (said in watch modes).
const NO_RESET_REASONS: &str = "resets sent carry no reason: this kernel's tcp_send_reset \
     tracepoint gives none (Linux 6.10+)";

impl Probe {
    pub fn attach(options: &Options) -> Result<Probe, ProbeError> {
        let mut steps = Steps::start();
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        caps::check()?;
        lift_memlock_limit();
        let loader = std::thread::spawn(bare_loader);
        let (tracefs, mounted_tracefs) = Tracefs::find_or_mount()?;
        steps.done("tracefs");
        let kernel_btf = btf::kernel()?;
        let Plan {
            config,
            tally_ring,
            cgroup_root,
            reset_reasons,
            mut degraded,
        } = Plan::new(options, &kernel_btf, &tracefs)?;
        steps.done("BTF and probes");
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| ProbeError::Cpus(e))?;
        let ring_bytes = options.mode.ring_bytes(tally_ring);
        let loader = loader.join().expect("the loader's thread does not panic");
        let mut programs = load(loader, options.mode, &config, cpus, ring_bytes)?;
        // Must live as long as the programs: it owns the log ring's fd.
        let logger = init_logger(&mut programs);
        let tracepoints = BTF_PROGRAMS.map(|(_, tracepoint, _)| tracepoint);
        let stand_in = btf::stand_in(&kernel_btf, &tracepoints, &[SOCKET_FILES_TARGET]);
        let stand_in = Btf::parse(&stand_in, aya::Endianness::default())?;
        steps.done("maps");
        attach_btf_programs(
            &mut programs,
            &stand_in,
            options,
            reset_reasons.is_some(),
            &mut degraded,
        )?;
        steps.done("tracepoint programs");
        // The state program attached first: it sees every transition since.
        let counting_since_ns = crate::clock::Clock::system().mono_now();
        attach_syscall_programs(&mut programs, options)?;
        if options.mode.follows_releases() {
            attach_cgroup_hooks(
                &mut programs,
                options,
                config.features,
                cgroup_root.as_deref(),
                &mut degraded,
            );
        }
        steps.done("syscall and cgroup programs");
        if !stats::counts_recursion_misses(&programs) {
            degraded.push(
                "runs of our programs the kernel skipped (another BPF program was running on \
                 that CPU) are not counted: the kernel counts them from Linux 5.12"
                    .to_string(),
            );
        }
        let ring = take_map(&mut programs, "EVENTS")?;
        let counters = take_counters(&mut programs, cpus)?;
        let doze = match programs.take_map("DOZE") {
            Some(aya::maps::Map::Array(map)) => Doze::map(map).map_err(ProbeError::Counters)?,
            _ => return Err(ProbeError::Missing("DOZE")),
        };
        let tallies = take_tallies(&mut programs, options.mode, tally_ring, cpus)?;
        let socket_files = socket_files(&mut programs, &stand_in, options.verbose)
            .map_err(|why| degraded.push(format!("{OLD_OWNERS_LOST}: {why}")))
            .ok();
        steps.done("iterator");
        Ok(Probe {
            programs,
            ring,
            counters,
            doze,
            tallies,
            socket_files,
            counting_since_ns,
            catcher_wanted: options.mode.wants(STATE_CATCHER),
            logger,
            mounted_tracefs,
            degraded,
            reset_reasons,
            steps,
        })
    }
}

/// What the running kernel offers, and the `Config` that tells the
/// programs so, before anything is loaded.
struct Plan {
    config: Config,
    /// Timewait counts from the ring, not from `TALLIES` (`MODE_TALLY_RING`).
    tally_ring: bool,
    /// Where the cgroup socket hooks go, in the modes that use them.
    cgroup_root: Option<PathBuf>,
    /// See [`Probe::reset_reasons`].
    reset_reasons: Option<Vec<String>>,
    degraded: Vec<String>,
}

impl Plan {
    fn new(
        options: &Options,
        kernel_btf: &btf_rs::Btf,
        tracefs: &Tracefs,
    ) -> Result<Plan, ProbeError> {
        let btf::Layout {
            kernel,
            tw_count_bias,
            sock_done,
            mut degraded,
        } = btf::kernel_layout(kernel_btf)?;
        // No such tracepoint: its program fails to load below, in one line.
        let (features, lacking) = btf::trace_typedef_id(kernel_btf, "inet_sock_set_state")
            .map(|id| features::probe(id, options.mode.follows_releases()))
            .unwrap_or_default();
        degraded.extend(lacking);
        // Read the tallies' map after dropping privileges, or count from
        // the ring where the kernel would refuse that.
        let tally_ring = matches!(options.mode, Mode::Timewait { .. })
            && unprivileged::bpf_refused_without_caps();
        if tally_ring {
            degraded.push(
                "timewait counts from one ring record per connection end, not in the kernel: \
                 this kernel refuses bpf(2), map reads included, to a process without \
                 capabilities (kernel.unprivileged_bpf_disabled, before Linux 6.5)"
                    .to_string(),
            );
        }
        let reset_reasons = btf::reset_reasons(kernel_btf);
        // Without the tracepoint, its program's failure says enough.
        if reset_reasons.is_none()
            && options.mode == Mode::Watch
            && btf::trace_typedef_id(kernel_btf, "tcp_send_reset").is_some()
        {
            degraded.push(NO_RESET_REASONS.to_string());
        }
        let cgroup_root = if options.mode.follows_releases() {
            cgroup::v2_root()
        } else {
            None
        };
        let config = Config {
            syscall_tp: syscall_layout(tracefs)?,
            kernel,
            wakeup_bytes: options.wakeup_bytes,
            mode: options.mode.bits(cgroup_root.is_some())
                | if tally_ring { MODE_TALLY_RING } else { 0 },
            features,
            short_ns: match options.mode {
                Mode::Timewait { short } => crate::clock::nanos(short),
                _ => 0,
            },
            filter: options.filter,
            tw_count_bias,
            sock_done,
        };
        Ok(Plan {
            config,
            tally_ring,
            cgroup_root,
            reset_reasons,
            degraded,
        })
    }
}

/// A loader without the kernel's BTF: there are no CO-RE relocations to
/// do. `EbpfLoader::new` parses all of vmlinux's BTF all the same (aya
/// issue #1172; 15 ms here, and 3 ms to drop), so attach runs this on a
/// thread of its own while it reads the BTF it needs its own way.
fn bare_loader() -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

/// Loads the kernel object with `config`, map sizes for `cpus` CPUs and
/// a ring of `ring_bytes`.
fn load<'a>(
    mut loader: EbpfLoader<'a>,
    mode: Mode,
    config: &'a Config,
    cpus: usize,
    ring_bytes: u32,
) -> Result<Ebpf, ProbeError> {
    Ok(loader
        .map_max_entries("EVENTS", ring_bytes)
        .map_max_entries("COUNTERS", cpus as u32 * COUNTERS)
        // Preallocated, per CPU: only `timewait` pays for its rows.
        .map_max_entries(
            "TALLIES",
            match mode {
                Mode::Timewait { .. } => TALLIES_CAPACITY,
                _ => 1,
            },
        )
        .override_global("CONFIG", config, true)
        .load(OBJECT)?)
}

fn init_logger(programs: &mut Ebpf) -> Option<EbpfLogger<&'static dyn log::Log>> {
    match EbpfLogger::init(programs) {
        Ok(logger) => Some(logger),
        Err(err) => {
            log::debug!("kernel-side logging unavailable: {err}");
            None
        }
    }
}

/// Loads the `BTF_PROGRAMS` this mode wants, then attaches them in their
/// order; an optional one that fails is named in `degraded`, a required
/// one fails the attach.
fn attach_btf_programs(
    programs: &mut Ebpf,
    trace_btf: &Btf,
    options: &Options,
    reset_reasons: bool,
    degraded: &mut Vec<String>,
) -> Result<(), ProbeError> {
    let mut loaded = load_btf_programs(programs, trace_btf, options, reset_reasons);
    for (name, _, lost) in BTF_PROGRAMS {
        let Some(load) = loaded.remove(name) else {
            continue; // not wanted in this mode
        };
        let result = load
            .and_then(|()| btf_program(programs, name)?.attach().map(drop))
            .map_err(|err| ProbeError::Program {
                name,
                why: refusal::explain(name, err, options.verbose),
            });
        match (result, lost) {
            (Ok(()), _) => {}
            (Err(err), None) => return Err(err),
            (Err(err), Some(lost)) => degraded.push(format!("{lost}: {err}")),
        }
    }
    Ok(())
}

/// Loads every `BTF_PROGRAMS` entry this mode wants, each in a thread of
/// its own: the verifier's work is most of the start (about 45 ms each for
/// the state program and its catcher, here), and the programs do not
/// share it. The threads have ended when this returns.
fn load_btf_programs(
    programs: &mut Ebpf,
    trace_btf: &Btf,
    options: &Options,
    reset_reasons: bool,
) -> HashMap<&'static str, Result<(), ProgramError>> {
    std::thread::scope(|scope| {
        let loads: Vec<_> = programs
            .programs_mut()
            .filter_map(|(name, program)| {
                let (name, tracepoint, _) =
                    BTF_PROGRAMS.into_iter().find(|(n, _, _)| *n == name)?;
                (options.mode.wants(name) && fits(name, reset_reasons))
                    .then_some((name, tracepoint, program))
            })
            .map(|(name, tracepoint, program)| {
                let load = scope.spawn(move || {
                    let program: &mut BtfTracePoint = program.try_into()?;
                    program.load(tracepoint, trace_btf)
                });
                (name, load)
            })
            .collect();
        loads
            .into_iter()
            .map(|(name, load)| (name, load.join().expect("a load does not panic")))
            .collect()
    })
}

/// The iterator target of `SOCKET_FILES`.
const SOCKET_FILES_TARGET: &str = "task_file";
/// The start-up iterator (tracer-ebpf's `existing`).
const SOCKET_FILES: &str = "socket_files";
/// What a kernel refusing `SOCKET_FILES` costs.
const OLD_OWNERS_LOST: &str = "owners of sockets open before start are unknown";

/// Loads and attaches the start-up iterator and opens its output: one
/// walk of every process's descriptors, read after privileges are gone
/// (reading it needs none).
fn socket_files(programs: &mut Ebpf, btf: &Btf, verbose: bool) -> Result<File, String> {
    let refused = |e| refusal::explain(SOCKET_FILES, e, verbose);
    let program: &mut Iter = programs
        .program_mut(SOCKET_FILES)
        .ok_or_else(|| format!("{SOCKET_FILES} is missing from the kernel object"))?
        .try_into()
        .map_err(refused)?;
    program.load(SOCKET_FILES_TARGET, btf).map_err(refused)?;
    let link = program.attach().map_err(refused)?;
    let link = program.take_link(link).map_err(refused)?;
    link.into_file().map_err(|e| format!("{e:#}"))
}

/// Attaches the `SYSCALL_PROGRAMS` this mode wants; each is required.
fn attach_syscall_programs(programs: &mut Ebpf, options: &Options) -> Result<(), ProbeError> {
    for name in SYSCALL_PROGRAMS {
        if !options.mode.wants(name) {
            continue;
        }
        let program_err = |err| ProbeError::Program {
            name,
            why: refusal::explain(name, err, options.verbose),
        };
        let program: &mut TracePoint = programs
            .program_mut(name)
            .ok_or(ProbeError::Missing(name))?
            .try_into()
            .map_err(program_err)?;
        program.load().map_err(program_err)?;
        program.attach("syscalls", name).map_err(program_err)?;
    }
    Ok(())
}

/// The cgroup socket hooks (creation, release, and the accepted-cookie
/// fallback); one that fails is named in `degraded`.
fn attach_cgroup_hooks(
    programs: &mut Ebpf,
    options: &Options,
    features: u32,
    cgroup_root: Option<&std::path::Path>,
    degraded: &mut Vec<String>,
) {
    let hooks = [
        (
            "sock_create",
            "bind events of sockets never used since may carry no socket id",
        ),
        (
            "sock_release",
            "ends of bound sockets that never listen (UDP) are not seen",
        ),
    ];
    // Where BTF tracepoints cannot assign cookies (see `features`).
    let accepted = (options.mode == Mode::Watch && features & FEATURE_COOKIE == 0).then_some((
        "accepted_cookie",
        "connections accepted from a listener carry no socket id",
    ));
    for (name, lost) in hooks.into_iter().chain(accepted) {
        let attached = attach_to_cgroup(programs, name, cgroup_root, options.verbose);
        if let Err(why) = attached {
            degraded.push(format!("{lost}: {why}"));
        }
    }
}

fn take_counters(programs: &mut Ebpf, cpus: usize) -> Result<Counters, ProbeError> {
    match programs.take_map("COUNTERS") {
        Some(aya::maps::Map::Array(map)) => Counters::map(map, cpus).map_err(ProbeError::Counters),
        _ => Err(ProbeError::Missing("COUNTERS")),
    }
}

/// `Mode::Timewait`'s counts: the ring, or `TALLIES` with its overflow row.
fn take_tallies(
    programs: &mut Ebpf,
    mode: Mode,
    tally_ring: bool,
    cpus: usize,
) -> Result<Option<Tallies>, ProbeError> {
    Ok(match mode {
        Mode::Timewait { .. } if tally_ring => Some(Tallies::Ring),
        Mode::Timewait { .. } => {
            let mut tallies: PerCpuHashMap<MapData, TallyKey, Tally> =
                take_map(programs, "TALLIES")?;
            // The overflow row must exist before the map can fill up.
            let map_err = |source| ProbeError::MapType {
                name: "TALLIES",
                source,
            };
            let zero =
                PerCpuValues::try_from(vec![Tally::default(); cpus]).map_err(ProbeError::Cpus)?;
            tallies
                .insert(TallyKey::default(), zero, 0)
                .map_err(map_err)?;
            Some(Tallies::Map(tallies))
        }
        _ => None,
    })
}

/// Before Linux 5.11 the kernel charges BPF maps and programs to
/// RLIMIT_MEMLOCK (64 KiB by default, summed over the user's processes):
/// lifted, as every BPF tool does, or a second instance's maps fail. Later
/// kernels charge memory cgroups and ignore it. A failure is left for the
/// map or program it would stop to report.
fn lift_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        log::debug!(
            "raising RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn btf_program<'a>(
    programs: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut BtfTracePoint, aya::programs::ProgramError> {
    let program = programs
        .program_mut(name)
        .ok_or(aya::programs::ProgramError::UnexpectedProgramType)?;
    program.try_into()
}

/// Attaches cgroup program `name` (cgroup/sock or sock_ops) to `root`, the
/// root of cgroup v2, through a BPF link, which coexists with other
/// programs on the cgroup (the kernel refuses attach flags on links).
fn attach_to_cgroup(
    programs: &mut Ebpf,
    name: &str,
    root: Option<&std::path::Path>,
    verbose: bool,
) -> Result<(), String> {
    let root = root.ok_or("cgroup v2 is not mounted")?;
    let dir = std::fs::File::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let refused = |e| refusal::explain(name, e, verbose);
    let attached = match programs.program_mut(name) {
        Some(Program::CgroupSock(program)) => {
            program.load().map_err(refused)?;
            program.attach(dir, CgroupAttachMode::Single).map(drop)
        }
        Some(Program::SockOps(program)) => {
            program.load().map_err(refused)?;
            program.attach(dir, CgroupAttachMode::Single).map(drop)
        }
        _ => return Err(format!("no cgroup program {name}")),
    };
    attached.map_err(|e| format!("{e:#}"))
}

fn take_map<M>(programs: &mut Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = programs.take_map(name).ok_or(ProbeError::Missing(name))?;
    M::try_from(map).map_err(|source| ProbeError::MapType { name, source })
}

fn syscall_layout(tracefs: &Tracefs) -> Result<SyscallTpLayout, TracefsError> {
    let syscall = |name| tracefs.format("syscalls", name, NEEDS_SYSCALL_TPS);
    let (enter_bind, exit_bind) = (syscall("sys_enter_bind")?, syscall("sys_exit_bind")?);
    let (enter_listen, exit_listen) = (syscall("sys_enter_listen")?, syscall("sys_exit_listen")?);
    let accept_ret = syscall("sys_exit_accept4")?.field("ret", &[8])?;
    // One program layout serves both accept exits.
    syscall("sys_exit_accept")?.same_field("ret", accept_ret)?;
    Ok(SyscallTpLayout {
        bind_fd: enter_bind.field("fd", &[4, 8])?,
        bind_addr: enter_bind.field("umyaddr", &[8])?,
        bind_addrlen: enter_bind.field("addrlen", &[4, 8])?,
        bind_ret: exit_bind.field("ret", &[8])?,
        listen_fd: enter_listen.field("fd", &[4, 8])?,
        listen_backlog: enter_listen.field("backlog", &[4, 8])?,
        listen_ret: exit_listen.field("ret", &[8])?,
        accept_ret,
    })
}
