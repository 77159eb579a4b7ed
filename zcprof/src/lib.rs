//! zcprof: measures what a file transfer really costs the kernel, with eBPF.
//!
//! The modules follow the flow of a run: `cli` (what was asked), `caps` (what the kernel
//! allows), `workload` (the transfer being measured), `probes` (eBPF programs attached to it),
//! `collect` (reading their maps), `model` (figures with provenance), `report` (rendering).
pub mod app;
pub mod cancel;
pub mod caps;
pub mod cli;
pub mod collect;
pub mod doctor;
pub mod export;
pub mod measure;
pub mod model;
pub mod probes;
pub mod process;
pub mod report;
pub mod units;
pub mod workload;
