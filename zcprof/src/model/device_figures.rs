//! Device figures: page faults, disk and NIC transfers (DMA) and DMA API mappings.
use super::{Devices, Figure, FigureId, Figures, Source, fmt_bytes, missing};
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
    figures: &mut Figures,
) {
    for (key, point, value, what) in [
        (
            FigureId::PageFaultsUser,
            Point::PageFaultUser,
            counts.page_faults_user,
            "page faults taken in user mode: each is a user->kernel entry and return besides the syscalls",
        ),
        (
            FigureId::PageFaultsKernel,
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

/// The disk's bytes in the process's cell, and where they come from.
struct Disk {
    read: u64,
    write: u64,
    /// The hook, as the source names it.
    hook: String,
}

/// The process's own disk transfers where the kernel names the task that queued them
/// (`block_bio_queue`, in the submitting task: its reads, readahead, `O_DIRECT`), else the
/// device-wide requests while measuring (any process's, the kernel's writeback included).
fn disk(plan: &HookPlan, counts: &Counts, devices: &Devices) -> Option<Disk> {
    if let Some(v) = plan.chosen(Point::BioQueue) {
        return Some(Disk {
            read: counts.process_disk_read_bytes,
            write: counts.process_disk_write_bytes,
            hook: format!("{} (block I/O the process queued itself)", v.describe()),
        });
    }
    plan.chosen(Point::BlockIssue).map(|v| Disk {
        read: devices.disk.iter().map(|d| d.read_bytes).sum(),
        write: devices.disk.iter().map(|d| d.write_bytes).sum(),
        hook: format!("{} (device-wide)", v.describe()),
    })
}

/// Device transfers: the process's disk bytes and its transmits to physical NICs.
pub(super) fn dma_figures(
    plan: &HookPlan,
    counts: &Counts,
    devices: &Devices,
    transfers: u64,
    figures: &mut Figures,
) {
    let disk = disk(plan, counts, devices);
    // Packets are counted by their socket where the transmit program knows it (wherever they
    // leave, ACK-clocked sends from softirq included), else in the sender's own context.
    let by_socket = plan.chosen(Point::NetStartXmit);
    let net = by_socket.or_else(|| plan.chosen(Point::NetXmit));
    let nic: u64 = devices
        .net
        .iter()
        .filter(|n| n.physical)
        .map(|n| n.bytes)
        .sum();
    let mut hooks = Vec::new();
    let mut parts = Vec::new();
    disk_part(plan, disk.as_ref(), devices, &mut hooks, &mut parts);
    net_part(
        plan,
        net,
        by_socket.is_some(),
        devices,
        &mut hooks,
        &mut parts,
    );
    let note = parts.join("; ");
    if disk.is_none() && net.is_none() {
        figures.insert(FigureId::DmaBytes, Figure::unavailable(note));
        figures.insert(
            FigureId::DiskReadBytes,
            Figure::unavailable(missing(plan, Point::BlockIssue)),
        );
        return;
    }
    let (read, write) = disk.as_ref().map_or((0, 0), |d| (d.read, d.write));
    let source = Source::Counted(hooks);
    figures.insert(
        FigureId::DmaBytes,
        Figure::measured(read + write + nic, transfers, &source, note),
    );
    match &disk {
        Some(d) => {
            let src = Source::Counted(vec![d.hook.clone()]);
            figures.insert(
                FigureId::DiskReadBytes,
                Figure::measured(d.read, transfers, &src, "bytes read from block devices"),
            );
            figures.insert(
                FigureId::DiskWriteBytes,
                Figure::measured(d.write, transfers, &src, "bytes written to block devices"),
            );
        }
        None => {
            figures.insert(
                FigureId::DiskReadBytes,
                Figure::unavailable(missing(plan, Point::BlockIssue)),
            );
        }
    }
    if let Some(v) = net {
        let mut hooks = vec![v.describe()];
        let mut what = "bytes handed to physical network devices".to_owned();
        if let Some(mapped) = mapped_towards_nics(devices) {
            hooks.extend(plan.chosen(Point::DmaMap).map(Variant::describe));
            what.push_str(&mapped);
        }
        figures.insert(
            FigureId::NicDmaBytes,
            Figure::measured(nic, transfers, &Source::Counted(hooks), what),
        );
    }
}

/// What the DMA API mapped towards the physical NICs while measuring, for the NIC figure's
/// note: the driver's own account of the bytes the device read from memory (device-wide).
fn mapped_towards_nics(devices: &Devices) -> Option<String> {
    let rows: Vec<String> = devices
        .net
        .iter()
        .filter(|n| n.physical)
        .filter_map(|n| {
            let m = n.dma_mapped.as_ref()?;
            Some(format!(
                "{} ({}) {} in {} maps",
                n.device,
                m.bus_id,
                fmt_bytes(m.bytes),
                m.maps
            ))
        })
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "; the DMA API mapped towards them, device-wide (any socket's packets, headers \
             included): {}",
            rows.join("; ")
        )
    })
}

/// Each device's requests while measuring, for the note.
fn device_wide(devices: &Devices) -> String {
    devices
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
        .collect::<Vec<_>>()
        .join("; ")
}

/// The disk's share of the DMA figure's source and note: the process's own requests, with the
/// device-wide ones beside them, never in the figure; or the device-wide ones where the kernel
/// does not name the task.
fn disk_part(
    plan: &HookPlan,
    disk: Option<&Disk>,
    devices: &Devices,
    hooks: &mut Vec<String>,
    parts: &mut Vec<String>,
) {
    let Some(d) = disk else {
        parts.push(format!(
            "disk: unmeasured ({})",
            missing(plan, Point::BlockIssue)
        ));
        return;
    };
    hooks.push(d.hook.clone());
    let wide = device_wide(devices);
    let own = plan.chosen(Point::BioQueue).is_some();
    parts.push(match (own, wide.is_empty()) {
        (true, true) => format!(
            "disk: the process's own requests read {}, wrote {}; no block I/O on any device",
            fmt_bytes(d.read),
            fmt_bytes(d.write)
        ),
        (true, false) => format!(
            "disk: the process's own requests read {}, wrote {}; device-wide, not in the figure \
             (any process's I/O and the kernel's writeback): {wide}",
            fmt_bytes(d.read),
            fmt_bytes(d.write)
        ),
        (false, true) => "disk: no block I/O completed while measuring".to_owned(),
        (false, false) => format!("disk: {wide} (device-wide: I/O of any process counts)"),
    });
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
                    let kind = match (n.physical, &n.dma_mapped) {
                        (true, Some(m)) => format!(
                            "a physical NIC: DMA; the DMA API mapped {} towards it, device-wide",
                            fmt_bytes(m.bytes)
                        ),
                        (true, None) => "a physical NIC: DMA".to_owned(),
                        (false, _) => "a virtual device: no DMA".to_owned(),
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
