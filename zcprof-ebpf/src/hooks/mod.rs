//! Hook variants: one per hook type and measurement point, each a thin wrapper over `account`.
//! The loader loads only the variant that capability probing chose.
mod copy;
mod device;
mod faults;
mod kernel_copies;
mod process;
mod sched;
mod serve;
mod syscalls;
