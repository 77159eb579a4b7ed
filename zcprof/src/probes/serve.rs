//! The always-on hook set of `zcprof serve`: raw tracepoints on the data path only (no syscall
//! entry or return hooks, which would slow every syscall of every task on the host). Loads the
//! serve programs alone from the one object, sets the selector, owns the links.
use aya::{Ebpf, maps::HashMap as BpfHashMap, programs::RawTracePoint};
use zcprof_common::{IFNAMSIZ, serve::COMM_LEN};

use super::{OBJECT, loader};

/// The serve programs and the raw tracepoints they attach to, in attach order (the packets'
/// owners are known before packets are counted), and whether serve can run without each.
pub const PROGRAMS: [(&str, &str, bool); 7] = [
    (
        "serve_inet_sock_set_state_raw_tp",
        "inet_sock_set_state",
        false,
    ),
    ("serve_sock_send_length_raw_tp", "sock_send_length", true),
    (
        "serve_tcp_sendmsg_locked_raw_tp",
        "tcp_sendmsg_locked",
        true,
    ),
    (
        "serve_net_dev_start_xmit_raw_tp",
        "net_dev_start_xmit",
        false,
    ),
    (
        "serve_skb_copy_datagram_iovec_raw_tp",
        "skb_copy_datagram_iovec",
        false,
    ),
    ("serve_block_rq_issue_raw_tp", "block_rq_issue", false),
    ("serve_sched_switch_raw_tp", "sched_switch", false),
];

/// Globals set from the kernel's BTF: (global, struct, member). The `sk_buff` members are
/// those of a packet's TCP payload (`packet_linear`).
const BTF_OFFSETS: [(&str, &str, &str); 12] = [
    ("SKB_OFF_SK", "sk_buff", "sk"),
    ("SKB_OFF_LEN", "sk_buff", "len"),
    ("SKB_OFF_DATA", "sk_buff", "data"),
    ("SKB_OFF_HEAD", "sk_buff", "head"),
    ("SKB_OFF_DATA_LEN", "sk_buff", "data_len"),
    ("SKB_OFF_PROTOCOL", "sk_buff", "protocol"),
    ("SKB_OFF_NETWORK_HEADER", "sk_buff", "network_header"),
    ("SKB_OFF_TRANSPORT_HEADER", "sk_buff", "transport_header"),
    ("DEV_OFF_NAME", "net_device", "name"),
    ("MSG_OFF_FLAGS", "msghdr", "msg_flags"),
    ("RQ_OFF_DATA_LEN", "request", "__data_len"),
    ("RQ_OFF_CMD_FLAGS", "request", "cmd_flags"),
];

/// Names of the serve maps.
pub mod maps {
    pub const STATS: &str = "SERVE_STATS";
    pub const PROCS: &str = "SERVE_PROCS";
    pub const COMMS: &str = "SERVE_COMMS";
    pub const NICS: &str = "SERVE_NICS";
    pub const LOST: &str = "SERVE_LOST";
}

/// Errors while setting up the serve hooks.
#[derive(Debug, thiserror::Error)]
pub enum ServeProbeError {
    /// The kernel's BTF is missing or lacks a structure member the hooks read.
    #[error("cannot find struct layouts in the kernel's BTF: {0}")]
    Btf(String),
    /// The object could not be loaded.
    #[error("cannot load the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    /// A map of the object is missing or refused an update.
    #[error("eBPF map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    /// A hook serve cannot count sends without does not attach here.
    #[error("the {target} raw tracepoint does not attach on this kernel: {reason}")]
    Required {
        target: &'static str,
        reason: String,
    },
}

/// Which tasks are counted, as the kernel side checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this process (0: any).
    pub pid: u32,
    /// Only tasks in this cgroup v2 id (0: any).
    pub cgroup: u64,
    /// Only these names (empty: any).
    pub comms: Vec<[u8; COMM_LEN]>,
    /// Also count socket -> user copies (`--receives`): the busiest hook (a receiver calls it
    /// about a dozen times per 64 KiB), so off unless asked for.
    pub receives: bool,
    /// Totals by process and name (`maps::PROCS`, `zcprof top`) instead of by name
    /// (`maps::STATS`, serve).
    pub by_process: bool,
    /// Leave out the scheduler switch hook (`SWITCH_HOOK`), the busiest on a loaded host: top
    /// shows no switches.
    pub no_switches: bool,
}

/// The hook that counts receives (`Filter::receives`).
pub const RECEIVE_HOOK: &str = "skb_copy_datagram_iovec";

/// The hook that counts scheduler switches (`Filter::no_switches`).
pub const SWITCH_HOOK: &str = "sched_switch";

/// The serve programs, attached. Dropping it detaches them.
pub struct ServeProbes {
    ebpf: Ebpf,
    /// Each program's target and whether it attached (with the kernel's reason when not).
    pub attached: Vec<(&'static str, Result<(), String>)>,
}

/// Offsets of `BTF_OFFSETS` in this kernel.
fn offsets() -> Result<Vec<u32>, ServeProbeError> {
    let layouts = crate::caps::btf::Layouts::vmlinux()
        .ok_or_else(|| ServeProbeError::Btf("no readable /sys/kernel/btf/vmlinux".to_owned()))?;
    BTF_OFFSETS
        .iter()
        .map(|(_, strukt, member)| {
            layouts
                .member_offset(strukt, member)
                .ok_or_else(|| ServeProbeError::Btf(format!("struct {strukt} has no {member}")))
        })
        .collect()
}

impl ServeProbes {
    /// Loads the serve programs with `filter`, and attaches every one the kernel takes.
    ///
    /// # Errors
    /// Missing BTF, an object that does not load, or a refused `sock_send_length` or
    /// `tcp_sendmsg_locked` hook (a recent tracepoint: 6.18 has it).
    pub fn attach(filter: &Filter) -> Result<ServeProbes, ServeProbeError> {
        let offsets = offsets()?;
        let by_comm = u32::from(!filter.comms.is_empty());
        let by_process = u32::from(filter.by_process);
        // The totals map not used gets one entry: the per-CPU LRUs are allocated in full.
        let unused = if filter.by_process {
            maps::STATS
        } else {
            maps::PROCS
        };
        let mut loader = loader();
        loader
            .override_global("SERVE_PID", &filter.pid, true)
            .override_global("SERVE_CGROUP", &filter.cgroup, true)
            .override_global("SERVE_BY_COMM", &by_comm, true)
            .override_global("SERVE_BY_PROCESS", &by_process, true)
            .map_max_entries(unused, 1);
        for ((global, _, _), offset) in BTF_OFFSETS.iter().zip(&offsets) {
            loader.override_global(global, offset, true);
        }
        let mut ebpf = loader.load(OBJECT)?;
        {
            let mut comms: BpfHashMap<_, [u8; COMM_LEN], u8> = map_mut(&mut ebpf, maps::COMMS)?;
            for comm in &filter.comms {
                comms.insert(comm, 1, 0).map_err(|e| ServeProbeError::Map {
                    name: maps::COMMS,
                    reason: e.to_string(),
                })?;
            }
        }
        let mut probes = ServeProbes {
            ebpf,
            attached: Vec::new(),
        };
        probes.refresh_nics();
        for (program, target, required) in PROGRAMS {
            if (target == RECEIVE_HOOK && !filter.receives)
                || (target == SWITCH_HOOK && filter.no_switches)
            {
                continue;
            }
            let result = attach_one(&mut probes.ebpf, program, target);
            if let (true, Err(reason)) = (required, &result) {
                return Err(ServeProbeError::Required {
                    target,
                    reason: reason.clone(),
                });
            }
            probes.attached.push((target, result));
        }
        Ok(probes)
    }

    /// Tells the kernel side which network devices are physical (a device under /sys/class/net
    /// with a `device` link), so that only their packets count as NIC traffic.
    pub fn refresh_nics(&mut self) {
        let Ok(mut nics) = map_mut::<BpfHashMap<_, [u8; IFNAMSIZ], u8>>(&mut self.ebpf, maps::NICS)
        else {
            return;
        };
        for name in physical_nics() {
            let mut key = [0u8; IFNAMSIZ];
            let len = name.len().min(IFNAMSIZ - 1);
            key[..len].copy_from_slice(&name.as_bytes()[..len]);
            let _ = nics.insert(key, 1, 0);
        }
    }

    /// A map of the loaded object.
    #[must_use]
    pub fn map(&self, name: &str) -> Option<&aya::maps::Map> {
        self.ebpf.map(name)
    }

    /// A map of the loaded object, for deleting entries.
    pub fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        self.ebpf.map_mut(name)
    }
}

/// The physical network devices of this host.
#[must_use]
pub fn physical_nics() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, ServeProbeError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or_else(|| ServeProbeError::Map {
        name,
        reason: "missing from the object".to_owned(),
    })?;
    M::try_from(map).map_err(|e| ServeProbeError::Map {
        name,
        reason: e.to_string(),
    })
}

/// Loads and attaches one raw tracepoint program.
fn attach_one(ebpf: &mut Ebpf, program: &str, target: &str) -> Result<(), String> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    p.load().map_err(|e| e.to_string())?;
    p.attach(target).map_err(|e| {
        let mut text = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            use std::fmt::Write as _;
            let _ = write!(text, ": {source}");
        }
        text
    })?;
    Ok(())
}

/// Tries the serve hook set for `doctor`: each target with the kernel's answer. Everything is
/// detached again before it returns.
#[must_use]
pub fn probe() -> Vec<(&'static str, Result<(), String>)> {
    match ServeProbes::attach(&Filter {
        // A process id no task has: the programs run but count nothing.
        pid: u32::MAX,
        receives: true,
        ..Filter::default()
    }) {
        Ok(probes) => probes.attached,
        Err(e) => vec![("serve", Err(e.to_string()))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every serve program exists in the built object.
    #[test]
    fn every_program_is_in_the_object() {
        let object = aya_obj::Object::parse(OBJECT).expect("the built object parses");
        for (program, _, _) in PROGRAMS {
            assert!(
                object.programs.contains_key(program),
                "{program} missing from the object"
            );
        }
        for name in [
            maps::STATS,
            maps::PROCS,
            maps::COMMS,
            maps::NICS,
            maps::LOST,
        ] {
            assert!(object.maps.contains_key(name), "map {name} missing");
        }
    }
}
