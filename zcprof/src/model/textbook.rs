//! The textbook's per-transfer figures (shared/TEXTBOOK.md, from the zero-copy study note), kept
//! only for comparison: never shown as a measurement.
use crate::workload::Method;

/// The document's claims for one technique, per transfer of one buffer. `None`: not given.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Textbook {
    pub syscalls: Option<f64>,
    /// What the note calls "context switches": user/kernel mode switches.
    pub mode_switches: Option<f64>,
    pub dma_copies: Option<f64>,
    pub cpu_copies: Option<f64>,
    /// The note's "sendfile + SG-DMA" row: a NIC with scatter-gather removes the last CPU copy.
    pub cpu_copies_with_sg_dma: Option<f64>,
    /// The note's own words on the technique, condensed.
    pub note: &'static str,
}

/// A real program: the note's table has no row for it.
#[must_use]
pub fn program() -> Textbook {
    Textbook {
        syscalls: None,
        mode_switches: None,
        dma_copies: None,
        cpu_copies: None,
        cpu_copies_with_sg_dma: None,
        note: "a real program: the note gives figures per technique, not per program",
    }
}

/// A row with no figure, for rows to fill in (`..NO_FIGURES`).
const NO_FIGURES: Textbook = Textbook {
    syscalls: None,
    mode_switches: None,
    dma_copies: None,
    cpu_copies: None,
    cpu_copies_with_sg_dma: None,
    note: "",
};

/// The textbook row for `method`; `scatter_gather`, where known, picks sendfile's row: the plain
/// "sendfile" row without it, "sendfile + SG-DMA" with it.
#[must_use]
pub fn for_method(method: Method, scatter_gather: Option<bool>) -> Textbook {
    let none = NO_FIGURES;
    match method {
        Method::ReadWrite => Textbook {
            syscalls: Some(2.0),
            mode_switches: Some(4.0),
            dma_copies: Some(2.0),
            cpu_copies: Some(2.0),
            note: "read + write: disk->page cache and socket buffer->NIC by DMA; page cache->user and \
                   user->socket buffer by the CPU",
            ..none
        },
        Method::DirectIo => Textbook {
            note: "user-space direct I/O: the device transfers straight to the user buffer, no page-cache \
                   copy; no figures given",
            ..none
        },
        Method::MmapWrite => Textbook {
            syscalls: Some(2.0),
            mode_switches: Some(4.0),
            dma_copies: Some(2.0),
            cpu_copies: Some(1.0),
            note: "mmap + write: user and kernel share the page-cache buffer; one CPU copy page \
                   cache->socket buffer",
            ..none
        },
        Method::Sendfile => sendfile(scatter_gather),
        Method::Splice => Textbook {
            cpu_copies: Some(0.0),
            note: "splice: named as zero-copy, no figures given",
            ..none
        },
        Method::Tee => Textbook {
            note: "tee: like splice, but both ends must be pipes; no figures given",
            ..none
        },
        // Beyond the note: it has no row for these, so every figure is "-".
        Method::CopyFileRange => Textbook {
            note: "copy_file_range: not in the note (file to file inside the kernel; the kernel's \
                   documentation: shared extents on a reflink file system, else a copy)",
            ..none
        },
        Method::Vmsplice => Textbook {
            note: "vmsplice: not in the note (user pages into a pipe by reference, per vmsplice(2))",
            ..none
        },
        Method::MsgZerocopy => Textbook {
            note: "MSG_ZEROCOPY: not in the note (user pages sent by reference, per the kernel's \
                   msg_zerocopy.rst, which also says local delivery copies anyway)",
            ..none
        },
        Method::IoUring => Textbook {
            note: "io_uring read + send: not in the note (READ_FIXED into a registered buffer, \
                   then SEND: read() and send() without a syscall each)",
            ..none
        },
        Method::IoUringSplice => Textbook {
            note: "io_uring splice: not in the note (splice file -> pipe -> socket, run by io-wq)",
            ..none
        },
        Method::IoUringSendZc => Textbook {
            note: "io_uring SEND_ZC: not in the note (user pages by reference, with the kernel's \
                   own report of a copy in its notification CQE)",
            ..none
        },
    }
}

/// sendfile's rows: the plain one without scatter-gather, "sendfile + SG-DMA" with it, and both
/// side by side when the device's state is unknown.
fn sendfile(scatter_gather: Option<bool>) -> Textbook {
    let none = NO_FIGURES;
    match scatter_gather {
        Some(false) => Textbook {
            syscalls: Some(1.0),
            mode_switches: Some(2.0),
            dma_copies: Some(2.0),
            cpu_copies: Some(1.0),
            note: "sendfile: one CPU copy page cache->socket buffer (the device has no \
                   scatter-gather)",
            ..none
        },
        Some(true) => Textbook {
            syscalls: Some(1.0),
            mode_switches: Some(2.0),
            dma_copies: Some(2.0),
            cpu_copies: Some(0.0),
            note: "sendfile + SG-DMA: the device gathers the page-cache pages itself, no CPU copy",
            ..none
        },
        None => Textbook {
            syscalls: Some(1.0),
            mode_switches: Some(2.0),
            dma_copies: Some(2.0),
            cpu_copies: Some(1.0),
            cpu_copies_with_sg_dma: Some(0.0),
            note: "sendfile: one CPU copy page cache->socket buffer, none with a scatter-gather \
                   NIC (SG-DMA)",
        },
    }
}
