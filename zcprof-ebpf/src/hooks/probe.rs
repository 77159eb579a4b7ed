//! Capability probes: programs that do nothing but show whether a hook type loads and attaches
//! on this kernel (used by `zcprof doctor`; the hooked copy accounting will use the same types).
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

/// fentry on `filemap_read`, the page-cache read path (traceable on Debian 6.1 and 6.12).
#[fentry(function = "filemap_read")]
pub fn filemap_read_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// kprobe on `filemap_read`.
#[kprobe]
pub fn filemap_read_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
