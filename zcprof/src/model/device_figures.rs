//! Device figures: page faults, disk and NIC transfers (DMA) and DMA API mappings.
use std::collections::BTreeMap;

use super::{Devices, Figure, Source, fmt_bytes, missing};
use crate::{
    collect::Counts,
    probes::{
        HookPlan,
        catalog::{Point, Variant},
    },
};

pub(super) fn page_fault_figures(
    plan: &HookPlan,
    counts: &Counts,
    transfers: u64,
    figures: &mut BTreeMap<&'static str, Figure>,
) {
    for (key, point, value, what) in [
        (
            "page_faults_user",
            Point::PageFaultUser,
            counts.page_faults_user,
            "page faults taken in user mode: each is a user->kernel entry and return besides the syscalls",
        ),
        (
            "page_faults_kernel",
            Point::PageFaultKernel,
            counts.page_faults_kernel,
            "page faults taken in kernel mode on the process's behalf, e.g. while copying from a mapping",
        ),
    ] {
        let figure = match plan.chosen(point) {
            Some(v) => {
                Figure::measured(value, transfers, &Source::Counted(vec![v.describe()]), what)
            }
            None => Figure::unavailable(missing(plan, point)),
        };
        figures.insert(key, figure);
    }
}

/// Device transfers: disk bytes (device-wide, while measuring) and transmits to physical NICs.
pub(super) fn dma_figures(
    plan: &HookPlan,
    devices: &Devices,
    transfers: u64,
    figures: &mut BTreeMap<&'static str, Figure>,
) {
    let block = plan.chosen(Point::BlockIssue);
    // Packets are counted by their socket where the transmit program knows it (wherever they
    // leave, ACK-clocked sends from softirq included), else in the sender's own context.
    let by_socket = plan.chosen(Point::NetStartXmit);
    let net = by_socket.or_else(|| plan.chosen(Point::NetXmit));
    let disk_read: u64 = devices.disk.iter().map(|d| d.read_bytes).sum();
    let disk_write: u64 = devices.disk.iter().map(|d| d.write_bytes).sum();
    let nic: u64 = devices
        .net
        .iter()
        .filter(|n| n.physical)
        .map(|n| n.bytes)
        .sum();
    let mut hooks = Vec::new();
    let mut parts = Vec::new();
    disk_part(plan, block, devices, &mut hooks, &mut parts);
    net_part(
        plan,
        net,
        by_socket.is_some(),
        devices,
        &mut hooks,
        &mut parts,
    );
    let note = parts.join("; ");
    if block.is_none() && net.is_none() {
        figures.insert("dma_bytes", Figure::unavailable(note));
        figures.insert(
            "disk_read_bytes",
            Figure::unavailable(missing(plan, Point::BlockIssue)),
        );
        return;
    }
    let source = Source::Counted(hooks);
    figures.insert(
        "dma_bytes",
        Figure::measured(disk_read + disk_write + nic, transfers, &source, note),
    );
    match block {
        Some(v) => {
            let src = Source::Counted(vec![format!("{} (device-wide)", v.describe())]);
            figures.insert(
                "disk_read_bytes",
                Figure::measured(disk_read, transfers, &src, "bytes read from block devices"),
            );
            figures.insert(
                "disk_write_bytes",
                Figure::measured(
                    disk_write,
                    transfers,
                    &src,
                    "bytes written to block devices",
                ),
            );
        }
        None => {
            figures.insert(
                "disk_read_bytes",
                Figure::unavailable(missing(plan, Point::BlockIssue)),
            );
        }
    }
    if let Some(v) = net {
        let src = Source::Counted(vec![v.describe()]);
        figures.insert(
            "nic_dma_bytes",
            Figure::measured(
                nic,
                transfers,
                &src,
                "bytes handed to physical network devices",
            ),
        );
    }
}

/// The disk's share of the DMA figure's source and note: device-wide block requests.
fn disk_part(
    plan: &HookPlan,
    block: Option<&Variant>,
    devices: &Devices,
    hooks: &mut Vec<String>,
    parts: &mut Vec<String>,
) {
    match block {
        Some(v) => {
            hooks.push(format!("{} (device-wide)", v.describe()));
            let per_dev: Vec<_> = devices
                .disk
                .iter()
                .map(|d| {
                    format!(
                        "{} read {}, wrote {}",
                        d.device,
                        fmt_bytes(d.read_bytes),
                        fmt_bytes(d.write_bytes)
                    )
                })
                .collect();
            parts.push(if per_dev.is_empty() {
                "disk: no block I/O completed while measuring".to_owned()
            } else {
                format!(
                    "disk: {} (device-wide: I/O of any process counts)",
                    per_dev.join("; ")
                )
            });
        }
        None => parts.push(format!(
            "disk: unmeasured ({})",
            missing(plan, Point::BlockIssue)
        )),
    }
}

/// The network's share of the DMA figure's source and note: packets by device, counted by
/// socket (`by_socket`) or in the sender's own context.
fn net_part(
    plan: &HookPlan,
    net: Option<&Variant>,
    by_socket: bool,
    devices: &Devices,
    hooks: &mut Vec<String>,
    parts: &mut Vec<String>,
) {
    match net {
        Some(v) => {
            hooks.push(v.describe());
            let per_dev: Vec<_> = devices
                .net
                .iter()
                .map(|n| {
                    let kind = if n.physical {
                        "a physical NIC: DMA"
                    } else {
                        "a virtual device: no DMA"
                    };
                    format!(
                        "{} in {} packets to {} ({kind})",
                        fmt_bytes(n.bytes),
                        n.packets,
                        n.device
                    )
                })
                .collect();
            parts.push(format!(
                "{}: {}",
                if by_socket {
                    "network, packets of the process's TCP sockets wherever they left (ACK-clocked \
                     sends from softirq included; other protocols are not counted)"
                } else {
                    "network, as transmitted from the process's own context (TCP also sends from \
                     ACK processing in other contexts, which is not attributed)"
                },
                if per_dev.is_empty() {
                    "nothing".to_owned()
                } else {
                    per_dev.join("; ")
                }
            ));
        }
        None => parts.push(format!(
            "network: unmeasured ({})",
            missing(plan, Point::NetXmit)
        )),
    }
}
