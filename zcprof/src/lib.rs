//! zcprof: measures what a file transfer really costs the kernel, with eBPF.
//!
//! Data flows one way: `cli` (what was asked) -> `app` -> `measure` (one measured run: plan the
//! hooks, start the `workload`, attach the `probes`, `collect` their maps) -> `model` (figures
//! with provenance) -> `report` (rendering) and `export` (traces); `serve` (the always-on
//! Prometheus exporter) runs `probes` -> `collect` -> `model::fleet` -> `export::prometheus`;
//! `top` (the live view) runs serve's `probes` -> `collect` -> `top::sample` -> its screen.
//!
//! Imports only go down this list; each module imports only modules after it (checked by
//! `tests/layers.rs`; docs/architecture.md says why each sits where it does):
//! `app`, `cli`, `doctor`, `top`, `serve`, `measure`, `options`, `export`, `report`, `devices`, `model`,
//! `process`, `collect`, `probes`, `workload`, `caps`, `sink`, `output`, and the leaves `cancel`,
//! `files`, `timing`, `units`.
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
pub mod top;
pub mod units;
pub mod workload;
