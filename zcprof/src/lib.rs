//! zcprof: measures what a file transfer really costs the kernel, with eBPF.
//!
//! Data flows one way, and no module imports one that calls it: `cli` (what was asked, checked
//! into `options`) -> `app` (running it) -> `measure` (one measured run) -> `caps` (what the
//! kernel allows), `workload` (the transfer being measured), `probes` (eBPF programs attached to
//! it), `collect` (reading their maps), `devices` (what the device numbers in the counts mean)
//! -> `model` (figures with provenance) -> `report` (rendering), `output` (where it goes) and
//! `export` (traces). `serve` (the always-on Prometheus exporter) runs beside `measure`: `probes`
//! (its own data-path hook set) -> `collect` -> `model::fleet` -> `export::prometheus`.
//! `cancel`, `files`, `timing` and `units` serve them all.
pub mod app;
pub mod cancel;
pub mod caps;
pub mod cli;
pub mod collect;
pub mod devices;
pub mod doctor;
pub mod export;
pub mod files;
pub mod measure;
pub mod model;
pub mod options;
pub mod output;
pub mod probes;
pub mod process;
pub mod report;
pub mod serve;
pub mod sink;
pub mod timing;
pub mod units;
pub mod workload;
