//! Footnotes: where the measurement and the textbook differ, and why, when the cause is known.
use super::{
    CopyPath, Devices, Figure, FigureId, Figures, FileInfo, Finding, How, NetPath, Route, Station,
    Textbook, fmt_bytes,
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

/// A footnote, and what the short form says of it: the figure a row departs from the textbook
/// on, and why in a few words.
pub struct Footnote {
    pub text: String,
    pub findings: Vec<Finding>,
}

impl Footnote {
    fn plain(text: String) -> Footnote {
        Footnote {
            text,
            findings: Vec::new(),
        }
    }

    fn on(figure: FigureId, why: String, text: String) -> Footnote {
        Footnote {
            text,
            findings: vec![Finding { figure, why }],
        }
    }

    /// The same reason for another figure too.
    fn and(mut self, figure: FigureId, why: String) -> Footnote {
        self.findings.push(Finding { figure, why });
        self
    }
}

/// Footnotes: where measured and textbook differ, with the cause when it is known; one
/// function per footnote, in the order they print.
pub fn differences(inputs: &Inputs<'_>) -> Vec<Footnote> {
    let mut notes: Vec<Footnote> = [mode_switch_words(inputs), syscalls_per_step(inputs)]
        .into_iter()
        .flatten()
        .collect();
    notes.extend(method_copies(inputs));
    notes.extend(segmented_again(inputs));
    notes.extend(send_sampling(inputs));
    if let Some(m) = inputs.method
        && let Some(note) = super::beyond::note(&super::beyond::Inputs {
            method: m,
            block_size: inputs.block_size,
            copies: inputs.copies,
            file: inputs.file,
            net: inputs.net,
        })
    {
        notes.push(Footnote::plain(note));
    }
    if inputs.transfers > 0 && inputs.counts.syscall_entries == 0 {
        notes.push(Footnote::plain(
            "No syscall of the transfer process was seen: the probes did not fire.".to_owned(),
        ));
    }
    notes.extend(disk_dma(inputs));
    notes.extend(nic_dma(inputs));
    notes
}

/// Said in the same words for every built-in method, so compare shows it once; the figures are
/// in the table. A program has no textbook row to explain.
fn mode_switch_words(inputs: &Inputs<'_>) -> Option<Footnote> {
    inputs.method.map(|_| {
        Footnote::plain(
            "The note's \"context switches\" are user/kernel mode switches (the mode switches \
             column). The scheduler switching the sender off its CPU (sched switches: blocked or \
             preempted) is a different cost the note leaves out."
                .to_owned(),
        )
    })
}

/// Syscalls per step against the note's, where they differ by more than a quarter.
fn syscalls_per_step(inputs: &Inputs<'_>) -> Option<Footnote> {
    let tb = inputs.textbook.syscalls?;
    let sys = per(inputs.figures, FigureId::Syscalls);
    if (sys - tb).abs() <= 0.25 {
        return None;
    }
    let (why, short) = match inputs.method {
        Some(Method::MmapWrite) => (
            " because the file is mapped once for the whole transfer, not once per step, so only \
             write() repeats",
            "the file is mapped once, only write() repeats",
        ),
        _ if sys > tb => (
            " because a call moved less than a block and was repeated, or the loop needed more calls \
             than the note counts",
            "calls moved less than a block, or the loop needed more",
        ),
        _ => ("", ""),
    };
    let text = format!("Syscalls per step: {sys:.2} measured against the note's {tb}{why}.");
    Some(if short.is_empty() {
        Footnote::plain(text)
    } else {
        // Each syscall is two mode switches: the same reason moves both columns.
        Footnote::on(FigureId::Syscalls, short.to_owned(), text)
            .and(FigureId::ModeSwitches, format!("two per syscall; {short}"))
    })
}

/// The CPU copies of the methods the note discusses at length: the in-kernel sends and
/// `O_DIRECT`.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn method_copies(inputs: &Inputs<'_>) -> Option<Footnote> {
    let copies_per_step =
        per(inputs.figures, FigureId::CpuCopyBytes) / inputs.block_size.max(1) as f64;
    let filesystem = inputs.file.map_or("?", |f| f.filesystem.as_str());
    match inputs.method? {
        m @ (Method::Sendfile | Method::Splice | Method::Tee) => {
            let text = in_kernel_send(inputs, m, copies_per_step);
            Some(match scatter_gather_short(inputs) {
                Some(why) => Footnote::on(FigureId::CpuCopyBytes, why, text),
                None => Footnote::plain(text),
            })
        }
        Method::DirectIo if inputs.file.is_some_and(|f| f.block_device) => Some(Footnote::on(
            FigureId::CpuCopyBytes,
            "O_DIRECT: the device fills the user buffer, only write() copies".to_owned(),
            format!(
                "O_DIRECT on {filesystem} bypasses the page cache: the device writes into the user buffer, so the only \
                 CPU copy per step is write() into the socket ({copies_per_step:.2} block copies per step)."
            ),
        )),
        Method::DirectIo => Some(Footnote::on(
            FigureId::DmaBytes,
            format!("{filesystem} has no block device: no disk DMA, the read is a CPU copy"),
            format!(
                "{filesystem} has no block device: it accepts O_DIRECT but serves the read from memory, so the read is \
                 a CPU copy ({} kernel->user) and no disk DMA can happen.",
                fmt_bytes(inputs.to_user)
            ),
        )),
        _ => None,
    }
}

/// sendfile, splice and tee: the copies page cache -> socket buffer, what scatter-gather on the
/// sending device made of them (sampling's check is `send_sampling`'s footnote).
fn in_kernel_send(inputs: &Inputs<'_>, method: Method, copies_per_step: f64) -> String {
    let call = match method {
        Method::Sendfile => "sendfile",
        Method::Tee => "tee's splice",
        _ => "splice",
    };
    let to_socket = to_socket_blocks(inputs);
    let mut note = format!(
        "{copies_per_step:.2} block copies per step in all; page cache -> socket buffer: \
         {to_socket:.2} per step."
    );
    note.push_str(&scatter_gather(inputs, call));
    note
}

/// A send from user space through a device without scatter-gather: `write()` copied the payload
/// into the socket's page fragments, which software segmentation copies again into linear
/// packets. The in-kernel sends say it in their own note.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn segmented_again(inputs: &Inputs<'_>) -> Option<Footnote> {
    if matches!(
        inputs.method?,
        Method::Sendfile | Method::Splice | Method::Tee
    ) {
        return None;
    }
    let route = Route::with(Station::SocketBuffer, Station::Packet, How::Segmentation);
    let again = inputs
        .copies
        .iter()
        .find(|p| p.path == route && !p.contradicted)
        .and_then(|p| p.per_transfer)?
        / inputs.block_size.max(1) as f64;
    if again < 0.05 {
        return None;
    }
    let device = inputs.net.map_or("the device", |n| n.device.as_str());
    Some(Footnote::on(
        FigureId::CpuCopyBytes,
        format!("{device} has scatter-gather off: the packets are copied again"),
        format!(
            "{again:.2} block copies per step socket buffer -> packet: {device} has \
             scatter-gather off, so it cannot take the page fragments write() filled, and \
             software segmentation copies them again into linear packet data. The note counts \
             the socket buffer as going to the NIC by DMA, which needs scatter-gather."
        ),
    ))
}

/// Blocks per step copied page cache -> socket buffer.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn to_socket_blocks(inputs: &Inputs<'_>) -> f64 {
    let route = Route::plain(Station::PageCache, Station::SocketBuffer);
    inputs
        .copies
        .iter()
        .find(|p| p.path == route && !p.contradicted)
        .and_then(|p| p.per_transfer)
        .unwrap_or(0.0)
        / inputs.block_size.max(1) as f64
}

/// An in-kernel send that copied nothing into the socket, checked by sampling: a footnote of its
/// own, so that rows alike say it once.
fn send_sampling(inputs: &Inputs<'_>) -> Option<Footnote> {
    if !matches!(
        inputs.method?,
        Method::Sendfile | Method::Splice | Method::Tee
    ) || to_socket_blocks(inputs) >= 0.05
    {
        return None;
    }
    let share = inputs
        .figures
        .get(&FigureId::CopyCpuShare)
        .and_then(|f| f.value)?;
    Some(Footnote::plain(if share < 0.02 {
        format!(
            "Sampling agrees that the in-kernel send copied nothing into the socket: {:.1}% of \
             the kernel's time in copy routines.",
            share * 100.0
        )
    } else {
        format!(
            "Sampling found {:.0}% of the kernel's time in copy routines, though nothing was \
             copied page cache -> socket buffer.",
            share * 100.0
        )
    }))
}

/// Scatter-gather on the sending device is what lets the socket hand page-cache pages to the
/// device by reference: what its state made of `call`.
fn scatter_gather(inputs: &Inputs<'_>, call: &str) -> String {
    let devices = inputs.devices;
    match inputs.net.and_then(|n| n.scatter_gather.map(|sg| (n, sg))) {
        Some((n, false)) => format!(
            " {} ({}) has scatter-gather off: the device cannot take page fragments, so the \
             kernel copies every page into linear packet data in software segmentation. \
             This is the note's plain \"{call}\" row, one CPU copy page cache -> socket \
             buffer.",
            n.device, n.kind
        ),
        Some((n, true)) => format!(
            " {} ({}) has scatter-gather on, so {call} hands the device page-cache pages by \
             reference: the note's \"SG-DMA\" case{}.",
            n.device,
            n.kind,
            if devices.net.iter().any(|d| d.physical) {
                ""
            } else {
                ", without a NIC"
            }
        ),
        None => {
            let sg: Vec<_> = devices
                .net
                .iter()
                .filter(|n| n.scatter_gather == Some(true))
                .map(|n| n.device.as_str())
                .collect();
            if sg.is_empty() {
                String::new()
            } else {
                format!(
                    " {} has scatter-gather on, so {call} can hand the socket page-cache \
                     pages by reference: the note's \"SG-DMA\" case, without a NIC.",
                    sg.join(", ")
                )
            }
        }
    }
}

/// What scatter-gather on the sending device made of an in-kernel send, in a few words.
fn scatter_gather_short(inputs: &Inputs<'_>) -> Option<String> {
    match inputs.net.and_then(|n| n.scatter_gather.map(|sg| (n, sg))) {
        Some((n, false)) => Some(format!(
            "{} has scatter-gather off: the kernel copies every page",
            n.device
        )),
        Some((n, true)) => Some(format!(
            "{} has scatter-gather: pages go by reference",
            n.device
        )),
        None => {
            let sg: Vec<_> = inputs
                .devices
                .net
                .iter()
                .filter(|n| n.scatter_gather == Some(true))
                .map(|n| n.device.as_str())
                .collect();
            (!sg.is_empty()).then(|| {
                format!(
                    "{} has scatter-gather: pages go by reference",
                    sg.join(", ")
                )
            })
        }
    }
}

/// Disk DMA where the note expects it (`O_DIRECT`, a cold cache), or why there was none.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn disk_dma(inputs: &Inputs<'_>) -> Option<Footnote> {
    let Some(Figure {
        value: Some(dma),
        per_transfer: Some(dma_step),
        ..
    }) = inputs.figures.get(&FigureId::DiskReadBytes)
    else {
        return None;
    };
    let (dma, dma_step) = (*dma, *dma_step);
    let (method, file, block_size) = (inputs.method, inputs.file, inputs.block_size);
    let size = inputs.transfers as f64 * block_size as f64;
    if method == Some(Method::DirectIo) || file.is_some_and(|f| f.cache == "cold") {
        return Some(Footnote::plain(format!(
            "Disk DMA: {} read from disk, {:.2} blocks per step{}.",
            fmt_bytes(whole(dma)),
            dma_step / block_size.max(1) as f64,
            if file.is_some_and(|f| f.block_device) {
                ""
            } else {
                " (the file system has no block device, so nothing can come from a disk)"
            }
        )));
    }
    (file.is_some() && dma < size / 100.0 && !method.is_some_and(Method::preloads_payload))
        .then(|| {
            Footnote::on(
                FigureId::DmaBytes,
                "the page cache was warm, so no disk DMA: see --cache cold".to_owned(),
                format!(
                    "The page cache was warm: the file was already in memory, so the disk did no DMA for it \
                     ({} read from disk while measuring). Use --cache cold to see the note's disk DMA.",
                    fmt_bytes(whole(dma))
                ),
            )
        })
}

/// The note's socket -> NIC DMA, where no NIC carried the packets.
fn nic_dma(inputs: &Inputs<'_>) -> Option<Footnote> {
    let none = inputs
        .figures
        .get(&FigureId::NicDmaBytes)
        .and_then(|f| f.value)
        == Some(0.0);
    (none && inputs.textbook.dma_copies.is_some()).then(|| match inputs.net {
        Some(n) => Footnote::on(
            FigureId::DmaBytes,
            format!("{} is virtual: no NIC DMA", n.device),
            format!(
                "The receiver is behind {} ({}), a virtual device without a NIC, so the note's \
                 socket->NIC DMA cannot happen on this path.",
                n.device, n.kind
            ),
        ),
        None => Footnote::on(
            FigureId::DmaBytes,
            "no physical NIC: no NIC DMA".to_owned(),
            "No physical NIC carried the packets, so the note's socket->NIC DMA did not \
             happen on this path."
                .to_owned(),
        ),
    })
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
