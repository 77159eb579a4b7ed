//! zcprof's in-kernel side: hook programs that feed shared accounting into per-CPU maps.
#![no_std]
#![no_main]
// Atomic adds on map values (the BPF target has no atomic types).
#![expect(
    internal_features,
    reason = "core_intrinsics is the only atomic add for BPF"
)]
#![feature(core_intrinsics)]

mod account;
mod filter;
mod hooks;
mod maps;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot unwind; the verifier proves this is unreachable.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
