//! Footnotes: where the measurement and the textbook differ, and why, when the cause is known.
use super::{
    CopyPath, Devices, Figure, FigureId, Figures, FileInfo, NetPath, Route, Station, Textbook,
    fmt_bytes,
};
use crate::{collect::Counts, workload::Method};

fn per(figures: &Figures, key: FigureId) -> f64 {
    figures
        .get(&key)
        .and_then(|f| f.per_transfer)
        .unwrap_or(0.0)
}

/// What the footnotes are drawn from.
pub struct Inputs<'a> {
    pub method: Option<Method>,
    pub transfers: u64,
    pub block_size: u64,
    pub counts: &'a Counts,
    pub figures: &'a Figures,
    pub textbook: &'a Textbook,
    pub file: Option<&'a FileInfo>,
    pub to_user: u64,
    pub devices: &'a Devices,
    pub net: Option<&'a NetPath>,
    pub copies: &'a [CopyPath],
}

/// Footnotes: where measured and textbook differ, with the cause when it is known.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
#[expect(clippy::too_many_lines, reason = "one footnote after another")]
pub fn differences(inputs: &Inputs<'_>) -> Vec<String> {
    let &Inputs {
        method,
        transfers,
        block_size,
        counts,
        figures,
        textbook,
        file,
        to_user,
        devices,
        net,
        copies,
    } = inputs;
    let mut notes = Vec::new();
    // Said in the same words for every built-in method, so compare shows it once; the figures
    // are in the table. A program has no textbook row to explain.
    if method.is_some() {
        notes.push(
            "The note's \"context switches\" are user/kernel mode switches (the mode switches \
             column). The scheduler switching the sender off its CPU (sched switches: blocked or \
             preempted) is a different cost the note leaves out."
                .to_owned(),
        );
    }
    if let Some(tb) = textbook.syscalls {
        let sys = per(figures, FigureId::Syscalls);
        if (sys - tb).abs() > 0.25 {
            let why = match method {
                Some(Method::MmapWrite) => {
                    " because the file is mapped once for the whole transfer, not once per step, so only \
                     write() repeats"
                }
                _ if sys > tb => {
                    " because a call moved less than a block and was repeated, or the loop needed more calls \
                     than the note counts"
                }
                _ => "",
            };
            notes.push(format!(
                "Syscalls per step: {sys:.2} measured against the note's {tb}{why}."
            ));
        }
    }
    let copies_per_step = per(figures, FigureId::CpuCopyBytes) / block_size.max(1) as f64;
    let block = block_size.max(1) as f64;
    let path_blocks = |route: Route| -> f64 {
        copies
            .iter()
            .find(|p| p.path == route && !p.contradicted)
            .and_then(|p| p.per_transfer)
            .unwrap_or(0.0)
            / block
    };
    match method {
        Some(Method::Sendfile | Method::Splice | Method::Tee) => {
            let call = match method {
                Some(Method::Sendfile) => "sendfile",
                Some(Method::Tee) => "tee's splice",
                _ => "splice",
            };
            let to_socket = path_blocks(Route::plain(Station::PageCache, Station::SocketBuffer));
            let mut note = format!(
                "{copies_per_step:.2} block copies per step in all; page cache -> socket buffer: \
                 {to_socket:.2} per step."
            );
            // Scatter-gather on the sending device is what lets the socket hand page-cache pages
            // to the device by reference.
            let sg_state = net.and_then(|n| n.scatter_gather.map(|sg| (n, sg)));
            match sg_state {
                Some((n, false)) => note.push_str(&format!(
                    " {} ({}) has scatter-gather off: the device cannot take page fragments, so the \
                     kernel copies every page into linear packet data in software segmentation. \
                     This is the note's plain \"{call}\" row, one CPU copy page cache -> socket \
                     buffer.",
                    n.device, n.kind
                )),
                Some((n, true)) => note.push_str(&format!(
                    " {} ({}) has scatter-gather on, so {call} hands the device page-cache pages by \
                     reference: the note's \"SG-DMA\" case{}.",
                    n.device,
                    n.kind,
                    if devices.net.iter().any(|d| d.physical) {
                        ""
                    } else {
                        ", without a NIC"
                    }
                )),
                None => {
                    let sg: Vec<_> = devices
                        .net
                        .iter()
                        .filter(|n| n.scatter_gather == Some(true))
                        .map(|n| n.device.as_str())
                        .collect();
                    if !sg.is_empty() {
                        note.push_str(&format!(
                            " {} has scatter-gather on, so {call} can hand the socket page-cache \
                             pages by reference: the note's \"SG-DMA\" case, without a NIC.",
                            sg.join(", ")
                        ));
                    }
                }
            }
            if to_socket < 0.05 {
                match figures.get(&FigureId::CopyCpuShare).and_then(|f| f.value) {
                    Some(share) if share < 0.02 => note.push_str(&format!(
                        " Sampling agrees: {:.1}% of the kernel's time in copy routines.",
                        share * 100.0
                    )),
                    Some(share) => note.push_str(&format!(
                        " Sampling found {:.0}% of the kernel's time in copy routines.",
                        share * 100.0
                    )),
                    None => {}
                }
            }
            notes.push(note);
        }
        Some(Method::DirectIo) if file.is_some_and(|f| f.block_device) => notes.push(format!(
            "O_DIRECT on {} bypasses the page cache: the device writes into the user buffer, so the only \
             CPU copy per step is write() into the socket ({copies_per_step:.2} block copies per step).",
            file.map_or("?", |f| f.filesystem.as_str())
        )),
        Some(Method::DirectIo) => notes.push(format!(
            "{} has no block device: it accepts O_DIRECT but serves the read from memory, so the read is \
             a CPU copy ({} kernel->user) and no disk DMA can happen.",
            file.map_or("?", |f| f.filesystem.as_str()),
            fmt_bytes(to_user)
        )),
        _ => {}
    }
    if let Some(m) = method
        && let Some(note) = super::beyond::note(&super::beyond::Inputs {
            method: m,
            block_size,
            copies,
            file,
            net,
        })
    {
        notes.push(note);
    }
    if transfers > 0 && counts.syscall_entries == 0 {
        notes.push(
            "No syscall of the transfer process was seen: the probes did not fire.".to_owned(),
        );
    }
    if let Some(Figure {
        value: Some(dma),
        per_transfer: Some(dma_step),
        ..
    }) = figures.get(&FigureId::DiskReadBytes)
    {
        let (dma, dma_step) = (*dma, *dma_step);
        let size = transfers as f64 * block_size as f64;
        if method == Some(Method::DirectIo) || file.is_some_and(|f| f.cache == "cold") {
            notes.push(format!(
                "Disk DMA: {} read from disk, {:.2} blocks per step{}.",
                fmt_bytes(whole(dma)),
                dma_step / block_size.max(1) as f64,
                if file.is_some_and(|f| f.block_device) {
                    ""
                } else {
                    " (the file system has no block device, so nothing can come from a disk)"
                }
            ));
        } else if file.is_some()
            && dma < size / 100.0
            && !method.is_some_and(Method::preloads_payload)
        {
            notes.push(format!(
                "The page cache was warm: the file was already in memory, so the disk did no DMA for it \
                 ({} read from disk while measuring). Use --cache cold to see the note's disk DMA.",
                fmt_bytes(whole(dma))
            ));
        }
    }
    if figures.get(&FigureId::NicDmaBytes).and_then(|f| f.value) == Some(0.0)
        && textbook.dma_copies.is_some()
    {
        notes.push(match net {
            Some(n) => format!(
                "The receiver is behind {} ({}), a virtual device without a NIC, so the note's \
                 socket->NIC DMA cannot happen on this path.",
                n.device, n.kind
            ),
            None => "No physical NIC carried the packets, so the note's socket->NIC DMA did not \
                     happen on this path."
                .to_owned(),
        });
    }
    notes
}

/// A figure's value (a byte count held as f64) as whole bytes.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "byte counts: whole, non-negative and far below 2^52"
)]
fn whole(bytes: f64) -> u64 {
    bytes as u64
}
