//! Footnotes for the methods beyond the note (copy-file-range, vmsplice, msg-zerocopy): what
//! the kernel did with each "zero-copy" request, from the measured copy ledger.
use super::{CopyPath, FileInfo, NetPath, Route, Station};
use crate::workload::Method;

/// What the footnotes are drawn from.
pub struct Inputs<'a> {
    pub method: Method,
    pub block_size: u64,
    pub copies: &'a [CopyPath],
    pub file: Option<&'a FileInfo>,
    pub net: Option<&'a NetPath>,
}

/// Blocks per step copied on `path` (0 when the ledger has no such path).
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn blocks(inputs: &Inputs<'_>, route: &Route) -> f64 {
    inputs
        .copies
        .iter()
        .filter(|p| p.path == *route && !p.contradicted)
        .filter_map(|p| p.per_transfer)
        .fold(0.0, |a, b| a + b)
        / inputs.block_size.max(1) as f64
}

/// Blocks per step copied on every path, with the short names of the paths.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn all_blocks(inputs: &Inputs<'_>) -> (f64, String) {
    let counted: Vec<&CopyPath> = inputs.copies.iter().filter(|p| !p.contradicted).collect();
    // fold from +0.0: an empty f64 sum is -0.0, printed "-0.00".
    let per_step = counted
        .iter()
        .filter_map(|p| p.per_transfer)
        .fold(0.0, |a, b| a + b);
    let names: Vec<&str> = counted.iter().map(|p| p.short).collect();
    (
        per_step / inputs.block_size.max(1) as f64,
        if names.is_empty() {
            "no path".to_owned()
        } else {
            names.join(", ")
        },
    )
}

/// The footnote of a method beyond the note (none for the note's own methods).
#[must_use]
pub fn note(inputs: &Inputs<'_>) -> Option<String> {
    match inputs.method {
        Method::CopyFileRange => Some(copy_file_range(inputs)),
        Method::Vmsplice => Some(vmsplice(inputs)),
        _ => None,
    }
}

fn copy_file_range(inputs: &Inputs<'_>) -> String {
    let fs = inputs.file.map_or("?", |f| f.filesystem.as_str());
    let pc = blocks(
        inputs,
        &Route::plain(Station::PageCache, Station::PageCache),
    );
    if pc > 0.5 {
        format!(
            "copy_file_range: no byte crossed a user buffer, but {fs} cannot share extents, so the \
             kernel copied the source's page-cache pages into the destination's page cache: \
             {pc:.2} block copies per step page cache -> page cache, counted where {fs} finishes \
             each buffered write. A reflink file system (btrfs, xfs) would share the extents \
             instead."
        )
    } else {
        let (all, names) = all_blocks(inputs);
        format!(
            "copy_file_range on {fs}: {all:.2} block copies per step ({names}); page cache -> \
             page cache is counted only where ext4's write_end can be seen, so a file system that \
             shares extents (reflink) and one that copies unseen look alike here."
        )
    }
}

fn vmsplice(inputs: &Inputs<'_>) -> String {
    let (all, names) = all_blocks(inputs);
    let device = inputs.net.map_or_else(
        || "the device".to_owned(),
        |n| {
            format!(
                "{} (scatter-gather {})",
                n.device,
                match n.scatter_gather {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "unknown",
                }
            )
        },
    );
    format!(
        "vmsplice: the kernel put references to the process's own pages in the pipe, without a \
         copy, and splice handed them on to the socket, which sent them as page fragments \
         through {device}: {all:.2} block copies per step in all ({names}). Without \
         SPLICE_F_GIFT (used here) the pages stay the process's and it must not write them until \
         the receiver has them; with it, a consumer that steals pages (FUSE's device) could take \
         them over, but a socket only references them either way, so the copies are the same."
    )
}
