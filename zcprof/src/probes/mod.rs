//! Loading and attaching: sets the filter globals, loads only the chosen variant of each
//! measurement point, owns the links (dropping `Probes` detaches everything).
pub mod catalog;
mod misses;
pub mod serve;

use std::sync::OnceLock;

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, FExit, KProbe, PerfEvent, ProgramError, RawTracePoint, TracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use catalog::{HookKind, Point, Variant};

use crate::caps::Kernel;

/// The eBPF object built from `zcprof-ebpf` by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zcprof"));

/// cpu-clock sampling frequency: high enough for a few hundred samples in a 50 ms transfer,
/// below the kernel's default `perf_event_max_sample_rate` (100000).
pub const SAMPLE_HZ: u64 = 9_973;

/// cpu-clock sampling frequency for programs (`exec`, `attach`): they run for seconds, so a tenth
/// of the rate still gives thousands of samples, and each sample costs the measured program a
/// timer interrupt (about 100 ns per syscall of a busy loop at the workload rate, here).
pub const PROGRAM_SAMPLE_HZ: u64 = 997;

/// Errors while loading or attaching.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The object itself could not be loaded (maps, relocations).
    #[error("cannot load the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    /// No variant of a measurement point could be attached; every attempt's reason is kept,
    /// including verifier logs.
    #[error("no hook for {point} works on this kernel: {reasons}")]
    NoVariant {
        point: &'static str,
        reasons: String,
    },
}

/// The outcome of trying one variant.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attempt {
    pub point: Point,
    pub kind: HookKind,
    /// `None` when it attached.
    pub error: Option<String>,
}

/// How the probes of one measurement are set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also trace the processes the target forks while measured.
    pub follow: bool,
    /// Record events into a ring buffer of this many bytes (`--trace`).
    pub trace_ring: Option<u32>,
    /// cpu-clock sampling frequency (`SAMPLE_HZ` when 0).
    pub sample_hz: u64,
    /// The built-in workload's receiver process (zcprof itself), whose socket -> user copies
    /// are counted apart; 0 when there is none.
    pub receiver_tgid: u32,
    /// Outside trace mode one syscall in this many is timed, at random (`--time-every`, a
    /// power of two; `DEFAULT_TIME_EVERY` unless given).
    pub time_every: u32,
}

impl Options {
    /// A real program's: sampled at `PROGRAM_SAMPLE_HZ`, no receiver of zcprof's.
    #[must_use]
    pub fn program(follow: bool, time_every: u32) -> Options {
        Options {
            follow,
            trace_ring: None,
            sample_hz: PROGRAM_SAMPLE_HZ,
            receiver_tgid: 0,
            time_every,
        }
    }
}

/// A plan's choices in a form that can be saved (inside a trace) and read back.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PlanRecord {
    /// cpu-clock sampling frequency of the run.
    #[serde(default)]
    pub sample_hz: u64,
    /// One syscall in this many was timed (trace mode: every one).
    #[serde(default)]
    pub time_every: u32,
    /// Bytes per second this machine's CPU copied when the run was measured (0 in traces of
    /// older versions): the derived copy paths' evidence was judged against it.
    #[serde(default)]
    pub copy_rate: u64,
    /// Program names of the chosen variants (a point can have two variants of one hook type).
    pub chosen: Vec<String>,
    pub unavailable: Vec<(Point, String)>,
}

/// Which variant each point uses. Filled by the first successful attach and reused, so later
/// runs load only what worked.
#[derive(Clone, Debug, Default)]
pub struct HookPlan {
    chosen: Vec<&'static Variant>,
    /// Optional points that no variant could serve, with every reason.
    unavailable: Vec<(Point, String)>,
    /// Every attempt made while choosing.
    pub attempts: Vec<Attempt>,
    /// cpu-clock sampling frequency the last attach used.
    pub sample_hz: u64,
    /// One syscall in this many was timed by the last attach (1: every syscall).
    pub time_every: u32,
    /// Bytes per second this machine's CPU copies, measured by the run (0: not yet).
    pub copy_rate: u64,
}

impl HookPlan {
    /// The variant chosen for `point`, once known.
    #[must_use]
    pub fn chosen(&self, point: Point) -> Option<&'static Variant> {
        self.chosen.iter().copied().find(|v| v.point == point)
    }

    /// The choices, for saving.
    #[must_use]
    pub fn record(&self) -> PlanRecord {
        PlanRecord {
            sample_hz: self.sample_hz,
            time_every: self.time_every,
            copy_rate: self.copy_rate,
            chosen: self.chosen.iter().map(|v| v.program.to_owned()).collect(),
            unavailable: self.unavailable.clone(),
        }
    }

    /// A plan with saved choices (attempts are not saved).
    #[must_use]
    pub fn from_record(record: &PlanRecord) -> HookPlan {
        HookPlan {
            chosen: record
                .chosen
                .iter()
                .filter_map(|program| catalog::VARIANTS.iter().find(|v| v.program == program))
                .collect(),
            unavailable: record.unavailable.clone(),
            attempts: Vec::new(),
            sample_hz: record.sample_hz,
            // Traces time every syscall; older traces did not say so.
            time_every: record.time_every.max(1),
            copy_rate: record.copy_rate,
        }
    }

    /// Why an optional point is not measured, once known.
    #[must_use]
    pub fn unavailable(&self, point: Point) -> Option<&str> {
        self.unavailable
            .iter()
            .find(|(p, _)| *p == point)
            .map(|(_, why)| why.as_str())
    }
}

/// A loader given the kernel BTF parsed once per process, the one that attaching BTF-typed
/// programs uses. (aya's `EbpfLoader::new` reads and parses /sys/kernel/btf/vmlinux itself all
/// the same, and offers no constructor that does not: a second parse per load, a fraction of a
/// second under emulation.)
#[must_use]
pub fn loader<'a>() -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    loader.btf(vmlinux_btf().ok());
    loader
}

/// Loads the object and attaches only its two empty raw tracepoint programs (`sys_enter` and
/// `sys_exit`), for `zcprof __empty-hooks`.
///
/// # Errors
/// When the object does not load or a program does not attach.
pub fn attach_empty_syscall_hooks() -> Result<Ebpf, ProbeError> {
    let mut ebpf = loader().load(OBJECT)?;
    for (program, target) in catalog::EMPTY_HOOKS {
        let variant = Variant {
            point: Point::SysEnter,
            kind: HookKind::RawTp,
            program,
            target,
        };
        attach_variant(&mut ebpf, &variant, 0, SAMPLE_HZ).map_err(|reasons| {
            ProbeError::NoVariant {
                point: program,
                reasons,
            }
        })?;
    }
    Ok(ebpf)
}

/// Detaches and unloads every program of `ebpf` at once.
pub fn unload_all(ebpf: &mut Ebpf) {
    std::thread::scope(|scope| {
        for (_, program) in ebpf.programs_mut() {
            scope.spawn(move || unload(program));
        }
    });
}

/// Detaches and unloads one program (a program that was never loaded is left as it is).
fn unload(program: &mut aya::programs::Program) {
    use aya::programs::Program;
    let _ = match program {
        Program::RawTracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::TracePoint(p) => p.unload(),
        Program::PerfEvent(p) => p.unload(),
        _ => Ok(()),
    };
}

/// This architecture's `clone`, `clone3`, `fork` and `vfork` numbers (`u32::MAX`: none): a new
/// task's first return comes from one of them, though it entered none.
#[cfg(target_arch = "x86_64")]
const CLONE_NRS: [u32; 4] = [56, 435, 57, 58];
#[cfg(target_arch = "aarch64")]
const CLONE_NRS: [u32; 4] = [220, 435, u32::MAX, u32::MAX];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CLONE_NRS: [u32; 4] = [u32::MAX; 4];

/// Where `struct pt_regs` keeps the syscall number: `orig_ax` on x86-64 (the 16th of its
/// 8-byte registers), `syscallno` on arm64 (after `regs[31]`, `sp`, `pc`, `pstate`, `orig_x0`);
/// `u32::MAX` where unknown. A return refused before entry is known by it.
#[cfg(target_arch = "x86_64")]
const REGS_NR_OFFSET: u32 = 15 * 8;
#[cfg(target_arch = "aarch64")]
const REGS_NR_OFFSET: u32 = 35 * 8;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const REGS_NR_OFFSET: u32 = u32::MAX;

/// This architecture's `exit` and `exit_group` numbers (always timed: they end the window).
#[cfg(target_arch = "x86_64")]
const EXIT_NRS: (u32, u32) = (60, 231);
#[cfg(target_arch = "aarch64")]
const EXIT_NRS: (u32, u32) = (93, 94);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EXIT_NRS: (u32, u32) = (u32::MAX, u32::MAX);

/// Outside trace mode one syscall in this many is timed, at random (`--time-every`).
pub const DEFAULT_TIME_EVERY: u32 = 16;

/// Words of the traced-process bitmap: one bit per possible process id.
fn traced_bitmap_words() -> u32 {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        // The kernel's ceiling (PID_MAX_LIMIT on 64-bit).
        .unwrap_or(4 * 1024 * 1024);
    pid_max.div_ceil(64).max(1)
}

/// The page size, the smallest ring buffer the kernel accepts.
#[must_use]
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

/// Where collection finds maps: a detached object's (final counts) or live probes' (snapshots
/// while measuring, for `--interval`).
pub trait MapSource {
    /// The map called `name`.
    fn get(&self, name: &str) -> Option<&aya::maps::Map>;
    /// Runs the kernel skipped, by program (see `misses`), non-zero only.
    fn program_misses(&self) -> std::collections::BTreeMap<String, u64>;
}

/// The maps of a detached object, by name, and its programs' misses read before detaching.
pub struct Maps {
    maps: std::collections::HashMap<&'static str, aya::maps::Map>,
    misses: std::collections::BTreeMap<String, u64>,
}

impl MapSource for Maps {
    fn get(&self, name: &str) -> Option<&aya::maps::Map> {
        self.maps.get(name)
    }

    fn program_misses(&self) -> std::collections::BTreeMap<String, u64> {
        self.misses.clone()
    }
}

impl MapSource for Probes {
    fn get(&self, name: &str) -> Option<&aya::maps::Map> {
        self.ebpf.map(name)
    }

    fn program_misses(&self) -> std::collections::BTreeMap<String, u64> {
        misses::of(&self.ebpf)
    }
}

/// Attached programs. Dropping this detaches them and frees the maps.
pub struct Probes {
    ebpf: Ebpf,
}

fn vmlinux_btf() -> Result<&'static Btf, String> {
    static BTF: OnceLock<Result<Btf, String>> = OnceLock::new();
    BTF.get_or_init(|| Btf::from_sys_fs().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Offsets of the members in `catalog::globals::BTF_OFFSETS`, read once from the kernel's BTF,
/// or why they are unknown.
fn skb_offsets() -> Result<Vec<u32>, String> {
    static OFFSETS: OnceLock<Result<Vec<u32>, String>> = OnceLock::new();
    OFFSETS
        .get_or_init(|| {
            let layouts = crate::caps::btf::Layouts::vmlinux().ok_or_else(|| {
                "the kernel has no readable BTF (/sys/kernel/btf/vmlinux) to find struct \
                 sk_buff's members"
                    .to_owned()
            })?;
            catalog::globals::BTF_OFFSETS
                .iter()
                .map(|(_, strukt, member)| {
                    layouts
                        .member_offset(strukt, member)
                        // net_device.name is its first member; the others never are.
                        .filter(|&o| o > 0 || *member == "name")
                        .ok_or_else(|| format!("struct {strukt} has no member {member} in BTF"))
                })
                .collect()
        })
        .clone()
}

/// Offsets of the members in `catalog::globals::TASK_OFFSETS` (the current task's file table
/// and name), read once from the kernel's BTF; `None` where one is missing, and then the
/// programs take no socket for a process's own from its file table.
fn task_offsets() -> Option<&'static [u32]> {
    static OFFSETS: OnceLock<Option<Vec<u32>>> = OnceLock::new();
    OFFSETS
        .get_or_init(|| {
            let layouts = crate::caps::btf::Layouts::vmlinux()?;
            catalog::globals::TASK_OFFSETS
                .iter()
                .map(|(_, strukt, member)| layouts.member_offset(strukt, member))
                .collect()
        })
        .as_deref()
}

/// `TASK_OFFSETS_OK`'s two values, static: the loader borrows what it sets until it loads.
static FOUND: [u32; 2] = [0, 1];

/// Sets the kernel struct member offsets the programs read (`sk_buff`, and the current task's
/// file table and name), where the kernel's BTF has them.
fn set_struct_offsets<'a>(loader: &mut EbpfLoader<'a>, skb_offsets: &'a Result<Vec<u32>, String>) {
    if let Ok(offsets) = skb_offsets {
        for ((global, _, _), offset) in catalog::globals::BTF_OFFSETS.iter().zip(offsets) {
            loader.override_global(global, offset, true);
        }
    }
    let task = task_offsets();
    if let Some(offsets) = task {
        for ((global, _, _), offset) in catalog::globals::TASK_OFFSETS.iter().zip(offsets) {
            loader.override_global(global, offset, true);
        }
    }
    let task_ok = &FOUND[usize::from(task.is_some())];
    loader.override_global(catalog::globals::TASK_OFFSETS_OK, task_ok, true);
}

/// Threads of process `tgid` that may be inside a syscall now: all but those stopped by a signal
/// (state `T`, as `exec` holds its command before releasing it), which stop on their way out
/// of a syscall, after its return.
fn threads_maybe_in_syscall(tgid: u32) -> Vec<u32> {
    threads_of(tgid)
        .into_iter()
        .filter(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/stat"))
                .unwrap_or_default();
            // "tid (comm) S ...": the state follows the last parenthesis.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            state != Some("T")
        })
        .collect()
}

/// Marks the syscalls that move bytes through a descriptor into user memory (`RW_READ`) or out
/// of it (`RW_WRITE`), whose descriptors the programs classify.
fn mark_rw_syscalls(ebpf: &mut Ebpf) {
    use zcprof_common::{RW_READ, RW_SPLICE, RW_WRITE};
    let marks = [
        (libc::SYS_read, RW_READ),
        (libc::SYS_pread64, RW_READ),
        (libc::SYS_readv, RW_READ),
        (libc::SYS_preadv, RW_READ),
        (libc::SYS_preadv2, RW_READ),
        (libc::SYS_write, RW_WRITE),
        (libc::SYS_pwrite64, RW_WRITE),
        (libc::SYS_writev, RW_WRITE),
        (libc::SYS_pwritev, RW_WRITE),
        (libc::SYS_pwritev2, RW_WRITE),
        (libc::SYS_splice, RW_SPLICE),
    ];
    if let Some(map) = ebpf.map_mut(catalog::maps::RW_SYSCALLS)
        && let Ok(mut table) = aya::maps::Array::<_, u8>::try_from(map)
    {
        for (nr, mark) in marks {
            if let Ok(nr) = u32::try_from(nr) {
                let _ = table.set(nr, mark, 0);
            }
        }
    }
}

/// Marks threads `tids` in the `BEFORE_START` map: each may return from a syscall it entered
/// before `sys_enter` was attached.
fn mark_before_start(ebpf: &mut Ebpf, tids: &[u32]) {
    if let Some(map) = ebpf.map_mut(catalog::maps::BEFORE_START)
        && let Ok(mut marks) = aya::maps::HashMap::<_, u32, u32>::try_from(map)
    {
        for &tid in tids {
            let _ = marks.insert(tid, 1, 0);
        }
    }
}

/// Makes the per-process table's row for processes beyond its capacity (see
/// `zcprof_common::OTHER_PROCESSES`); without it their events are counted as lost.
fn make_others_row(ebpf: &mut Ebpf) {
    use zcprof_common::{OTHER_PROCESSES, ProcStat};
    if let Some(map) = ebpf.map_mut(catalog::maps::PROCS)
        && let Ok(mut procs) = aya::maps::PerCpuHashMap::<_, u32, ProcStat>::try_from(map)
        && let Ok(cpus) = aya::util::nr_cpus()
        && let Ok(values) = aya::maps::PerCpuValues::try_from(vec![ProcStat::default(); cpus])
    {
        let _ = procs.insert(OTHER_PROCESSES, values, 0);
    }
}

/// Sets slot `slot` of the `CONTROL` map (see `zcprof_common::CONTROL_STARTED`).
fn control(ebpf: &mut Ebpf, slot: u32) {
    if let Some(map) = ebpf.map_mut(catalog::maps::CONTROL)
        && let Ok(mut control) = aya::maps::Array::<_, u32>::try_from(map)
    {
        let _ = control.set(slot, 1, 0);
    }
}

/// The thread ids of process `tgid` now (empty when it is gone or unreadable).
fn threads_of(tgid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{tgid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Loads and attaches one variant; the error text keeps the kernel's answer (and the verifier
/// log, for load failures).
///
/// # Errors
/// The reason the variant does not work here.
pub fn attach_variant(
    ebpf: &mut Ebpf,
    variant: &Variant,
    tgid: u32,
    sample_hz: u64,
) -> Result<(), String> {
    let program = ebpf
        .program_mut(variant.program)
        .ok_or_else(|| format!("program {} missing from the object", variant.program))?;
    // aya's messages name the failing call; the errno is in the source chain.
    let err = |e: ProgramError| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let cause = s.to_string();
            if !text.contains(&cause) {
                text.push_str(&format!(": {cause}"));
            }
            source = s.source();
        }
        // A refusal before the verifier ran (EPERM from a security module) comes with an empty
        // log: "Verifier output: " and nothing after it says nothing.
        if let Some(at) = text.find("Verifier output:")
            && text[at + "Verifier output:".len()..].trim().is_empty()
        {
            text.truncate(at);
            text = text.trim_end().trim_end_matches('.').to_owned();
        }
        text
    };
    match variant.kind {
        HookKind::RawTp => {
            let p: &mut RawTracePoint = program.try_into().map_err(err)?;
            p.load().map_err(err)?;
            p.attach(variant.target).map_err(err)?;
        }
        HookKind::TpBtf => {
            let btf = vmlinux_btf()?;
            let p: &mut BtfTracePoint = program.try_into().map_err(err)?;
            p.load(variant.target, btf).map_err(err)?;
            p.attach().map_err(err)?;
        }
        HookKind::Fexit => {
            let btf = vmlinux_btf()?;
            let p: &mut FExit = program.try_into().map_err(err)?;
            p.load(variant.target, btf).map_err(err)?;
            p.attach().map_err(err)?;
        }
        HookKind::PerfEvent => {
            let p: &mut PerfEvent = program.try_into().map_err(err)?;
            p.load().map_err(err)?;
            // Scoped to the measured process: nobody else is sampled, so bystanders pay nothing.
            // One event per thread the process has now, each inherited by the threads and
            // processes that thread creates later: a perf event opened for a process id samples
            // only that one thread (a worker thread's page-cache reads got 1 sample where the
            // same work on the main thread got 582).
            let threads = if tgid == 0 {
                Vec::new()
            } else {
                threads_of(tgid)
            };
            let scopes: Vec<PerfEventScope> = if tgid == 0 {
                vec![PerfEventScope::CallingProcess { cpu: None }]
            } else if threads.is_empty() {
                vec![PerfEventScope::OneProcess {
                    pid: tgid,
                    cpu: None,
                }]
            } else {
                threads
                    .into_iter()
                    .map(|pid| PerfEventScope::OneProcess { pid, cpu: None })
                    .collect()
            };
            for scope in scopes {
                p.attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    scope,
                    SamplePolicy::Frequency(sample_hz),
                    true,
                )
                .map_err(err)?;
            }
        }
        HookKind::Kretprobe => {
            let p: &mut KProbe = program.try_into().map_err(err)?;
            p.load().map_err(err)?;
            p.attach(variant.target, 0).map_err(err)?;
        }
        HookKind::Tracepoint => {
            let (category, name) = variant
                .target
                .split_once('/')
                .unwrap_or(("", variant.target));
            let p: &mut TracePoint = program.try_into().map_err(err)?;
            p.load().map_err(err)?;
            p.attach(category, name).map_err(err)?;
        }
    }
    Ok(())
}

/// Attaches the first variant of `point` that works here, recording the choice (or, for an
/// optional point, why none works) in `plan`.
///
/// # Errors
/// When `point` is required and no variant works.
fn choose(
    kernel: &Kernel,
    plan: &mut HookPlan,
    ebpf: &mut Ebpf,
    point: Point,
    tgid: u32,
    sample_hz: u64,
    skb_offsets: &Result<Vec<u32>, String>,
) -> Result<(), ProbeError> {
    let mut reasons = Vec::new();
    for variant in catalog::variants_of(point) {
        let missing = kernel
            .precondition(variant.kind, variant.target)
            .or_else(|| {
                (point == Point::NetStartXmit)
                    .then(|| skb_offsets.clone().err())
                    .flatten()
            });
        let result = match missing {
            Some(missing) => Err(missing),
            None => attach_variant(ebpf, variant, tgid, sample_hz),
        };
        plan.attempts.push(Attempt {
            point,
            kind: variant.kind,
            error: result.clone().err(),
        });
        match result {
            Ok(()) => {
                plan.chosen.push(variant);
                return Ok(());
            }
            Err(reason) => reasons.push(format!("{}: {reason}", variant.kind.name())),
        }
    }
    if point.required() {
        return Err(ProbeError::NoVariant {
            point: point.name(),
            reasons: reasons.join("; "),
        });
    }
    // Optional: the report shows it as unavailable, with these reasons.
    plan.unavailable.push((point, reasons.join("; ")));
    Ok(())
}

/// The programs' globals for one attach, held while the loader borrows them.
struct Globals {
    tgid: u32,
    follow: u32,
    trace: u32,
    exit: u32,
    exit_group: u32,
    time_mask: u32,
    receiver_tgid: u32,
    /// With the packets' owners known, devices count a process's packets wherever they leave;
    /// the current-task program stands aside.
    xmit_by_socket: u32,
    /// Record offsets of classic tracepoints, read from this kernel's format files (the
    /// programs' defaults are one kernel's layout; others differ).
    offsets: Vec<(&'static str, u32)>,
}

impl Globals {
    fn new(kernel: &Kernel, plan: &HookPlan, tgid: u32, options: &Options, skb: bool) -> Globals {
        let (exit, exit_group) = EXIT_NRS;
        Globals {
            tgid,
            follow: u32::from(options.follow),
            trace: u32::from(options.trace_ring.is_some()),
            exit,
            exit_group,
            time_mask: plan.time_every - 1,
            receiver_tgid: options.receiver_tgid,
            xmit_by_socket: u32::from(skb && plan.unavailable(Point::NetStartXmit).is_none()),
            offsets: catalog::globals::OFFSETS
                .iter()
                .filter_map(|(global, event, field)| {
                    Some((*global, kernel.field_offset(event, field)?))
                })
                .collect(),
        }
    }

    fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        use catalog::globals as g;
        for (global, value) in [
            (g::TARGET_TGID, &self.tgid),
            (g::FOLLOW, &self.follow),
            (g::TRACE, &self.trace),
            (g::REGS_NR_OFFSET, &REGS_NR_OFFSET),
            (g::EXIT_NR, &self.exit),
            (g::EXIT_GROUP_NR, &self.exit_group),
            (g::TIME_MASK, &self.time_mask),
            (g::RECEIVER_TGID, &self.receiver_tgid),
            (g::XMIT_BY_SOCKET, &self.xmit_by_socket),
        ] {
            loader.override_global(global, value, true);
        }
        for (global, nr) in [g::CLONE_NR, g::CLONE3_NR, g::FORK_NR, g::VFORK_NR]
            .into_iter()
            .zip(&CLONE_NRS)
        {
            loader.override_global(global, nr, true);
        }
        for (global, offset) in &self.offsets {
            loader.override_global(global, offset, true);
        }
    }
}

/// Attaches one variant per point in `Point::ALL` order: the plan's choice, or the first that
/// works (recorded in the plan); points known not to work here are skipped.
fn attach_points(
    kernel: &Kernel,
    plan: &mut HookPlan,
    ebpf: &mut Ebpf,
    tgid: u32,
    skb_offsets: &Result<Vec<u32>, String>,
) -> Result<(), ProbeError> {
    let sample_hz = plan.sample_hz;
    for point in Point::ALL {
        // Known not to work here: the report already has the reasons.
        if plan.unavailable(point).is_some() {
            continue;
        }
        if let Some(variant) = plan.chosen(point) {
            attach_variant(ebpf, variant, tgid, sample_hz).map_err(|reasons| {
                ProbeError::NoVariant {
                    point: point.name(),
                    reasons,
                }
            })?;
        } else {
            choose(kernel, plan, ebpf, point, tgid, sample_hz, skb_offsets)?;
        }
        if point == Point::SysEnter {
            // From now on a return without an entry is not of a syscall begun before
            // measuring (unless its thread was marked in BEFORE_START): `sys_enter` sees every
            // entry.
            control(ebpf, zcprof_common::CONTROL_STARTED);
        }
    }
    Ok(())
}

impl Probes {
    /// Loads the object with the filter set to `tgid` (and, with `follow`, the processes it
    /// forks while measured) and attaches one variant per point,
    /// choosing (and recording in `plan`) the first that works when none is chosen yet.
    ///
    /// # Errors
    /// When the object does not load, or a point has no working variant.
    pub fn attach(
        kernel: &Kernel,
        plan: &mut HookPlan,
        tgid: u32,
        options: Options,
    ) -> Result<Probes, ProbeError> {
        // sk_buff members the transmit program reads, from the kernel's BTF.
        let skb_offsets = skb_offsets();
        plan.sample_hz = if options.sample_hz == 0 {
            SAMPLE_HZ
        } else {
            options.sample_hz
        };
        // A trace shows every syscall as a slice, so every syscall is timed.
        plan.time_every = if options.trace_ring.is_some() {
            1
        } else {
            options.time_every.max(1)
        };
        let globals = Globals::new(kernel, plan, tgid, &options, skb_offsets.is_ok());
        // Threads that may return from a syscall begun before measuring, marked before
        // `sys_exit` attaches.
        let before_start = if tgid == 0 {
            Vec::new()
        } else {
            threads_maybe_in_syscall(tgid)
        };
        let mut loader = loader();
        globals.apply(&mut loader);
        set_struct_offsets(&mut loader, &skb_offsets);
        loader.map_max_entries(catalog::maps::TRACED_BITS, traced_bitmap_words());
        // Without --trace the ring buffer is one page: nothing writes to it.
        loader.map_max_entries(
            catalog::maps::EVENTS,
            options.trace_ring.unwrap_or_else(page_size),
        );
        loader.map_max_entries(
            catalog::maps::BEFORE_START,
            u32::try_from(before_start.len()).unwrap_or(u32::MAX).max(1),
        );
        let mut ebpf = loader.load(OBJECT)?;
        mark_before_start(&mut ebpf, &before_start);
        mark_rw_syscalls(&mut ebpf);
        if options.follow {
            // Only a followed tree has per-process rows.
            make_others_row(&mut ebpf);
        }
        attach_points(kernel, plan, &mut ebpf, tgid, &skb_offsets)?;
        Ok(Probes { ebpf })
    }

    /// Takes the trace ring buffer, for a consumer that drains it while the programs run.
    #[must_use]
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        let map = self.ebpf.take_map(catalog::maps::EVENTS)?;
        aya::maps::RingBuf::try_from(map).ok()
    }

    /// Detaches every program and returns the maps, which outlive the programs: counts read
    /// afterwards no longer move, even when the measured process is still running (attach).
    #[must_use]
    pub fn detach(mut self) -> Maps {
        // The programs go together, in no order: from here a return without an entry may be one
        // whose entry came after `sched_switch` or `sys_enter` went, and is left unclassified.
        control(&mut self.ebpf, zcprof_common::CONTROL_STOPPING);
        // Read while the programs are loaded: the count lives in the program.
        let misses = misses::of(&self.ebpf);
        // Each detach waits for the kernel's RCU grace periods (tens of milliseconds per
        // program); unloading all programs at once lets those waits overlap instead of adding
        // up (0.47 s for 12 programs one after another here).
        unload_all(&mut self.ebpf);
        let maps = catalog::maps::ALL
            .iter()
            .filter_map(|name| Some((*name, self.ebpf.take_map(name)?)))
            .collect();
        drop(self);
        Maps { maps, misses }
    }
}
