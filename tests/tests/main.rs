//! zcprof's integration tests: one test binary, a module per concept (ripgrep's layout), the
//! shared helpers in `zcprof_tests` (tests/src/lib.rs). Most tests load the real eBPF programs
//! and assert facts the kernel must show; without root they skip, saying so on stderr (and fail
//! under `CI=true` or `ZCPROF_REQUIRE_ROOT=1`).
//!
//! `cargo xtask test` runs each top-level module as a suite of its own on the host, and the
//! modules whose checks depend on the kernel in every VM of the matrix (xtask/src/vm.rs).

/// Per-thread and per-process accounting: threads, reused ids, seccomp, early calls, exec.
mod accounting;
/// `exec` and `attach`: strace's counts, forks, exit status, live tables, real programs.
mod attach_exec;
/// Figures charged to the process that caused them: peers, pipes, devices, block I/O.
mod attribution;
/// Floods under `--trace`: every event kept, counted or counted as lost, memory bounded.
mod flood;
/// The copy ledger: every CPU copy by path, kernel-internal ones included.
mod ledger;
/// Every method, classic and modern, run for real.
mod methods;
/// `--net veth`, scatter-gather, and `zcprof sink`.
mod network;
/// The note's table over a real driver: an emulated e1000 NIC in a VM (xtask vm-test).
mod nic;
/// The table in a real terminal and the HTML page in a real browser.
mod pictures;
/// `zcprof serve` scraped by a real Prometheus.
mod serve;
/// Signals and cleanup: nothing left behind, whatever ends zcprof.
mod signals;
/// Sampled and timed figures agree.
mod timing;
/// `zcprof top`: rows of two workloads at once, plain and JSON output, the screen in tmux.
mod top;
/// `--trace` files and `report`.
mod trace;
