//! Developer tasks: toolchain setup, the Quick-start commands, and the test suite.
mod bench;
mod setup;
mod vm;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly toolchain (rust-src) and a matching bpf-linker if missing.
    Setup,
    /// Set up, build zcprof (release) and run it with the given arguments as root.
    Run {
        /// Arguments for zcprof, e.g. `compare` or `run --method sendfile`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up and run every test: unit tests, CLI tests, the privileged kernel tests, and (as
    /// root) the kernel matrix in VMs.
    Test,
    /// Run the benchmarks (as root): zcprof's overhead beside bpftrace, perf and strace, its cost to
    /// bystanders, per-program kernel cost, trace capacity, start-up, and workload fidelity.
    /// Writes docs/benchmarks.md and target/bench/results.json.
    Bench {
        /// Repetitions of every case (interleaved with the baseline).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Syscalls per loop of the overhead case.
        #[arg(long, default_value_t = 3_000_000)]
        syscalls: u64,
    },
    /// Run the privileged kernel tests inside VMs booting Debian's cloud kernels.
    VmTest {
        /// Only the kernels whose label contains this (e.g. `bookworm`).
        #[arg(long)]
        only: Option<String>,
    },
}

/// Runs a command, failing on a non-zero exit.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("PATH", setup::path_with_cargo_bin());
    cmd
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Prefixes `sudo` when not root: loading eBPF needs privileges.
fn as_root(program: &std::path::Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Run { args } => {
            setup::setup()?;
            run(cargo().args(["build", "--release", "--package", "zcprof"]))?;
            let bin = workspace_root().join("target/release/zcprof");
            run(as_root(&bin).args(if args.is_empty() {
                vec!["compare".to_owned()]
            } else {
                args
            }))
        }
        Task::Test => {
            setup::setup()?;
            // The privileged tests drive the zcprof binary, so build it first.
            run(cargo().args(["build", "--package", "zcprof"]))?;
            run(cargo().args([
                "test",
                "--workspace",
                "--exclude",
                "zcprof-tests",
                "--exclude",
                "zcprof-ebpf",
            ]))?;
            // Kernel state is shared: one test at a time, as aya's integration tests do.
            let mut kernel = cargo();
            kernel.args([
                "test",
                "--package",
                "zcprof-tests",
                "--",
                "--test-threads=1",
            ]);
            kernel.env("ZCPROF_BIN", workspace_root().join("target/debug/zcprof"));
            // Programs the kernel tests measure (they skip, saying so, where one is missing).
            if is_root() {
                setup::install_packages(
                    "test",
                    &setup::missing_packages(&[
                        ("nginx", "nginx"),
                        ("prometheus", "prometheus"),
                        ("strace", "strace"),
                        ("curl", "curl"),
                        ("tmux", "tmux"),
                        ("chromium", "chromium"),
                        ("setpriv", "util-linux"),
                    ]),
                )?;
            }
            if !is_root() {
                eprintln!(
                    "xtask: not root: the kernel tests skip and the VM matrix does not run (run `sudo -E cargo xtask test`)"
                );
                return run(&mut kernel);
            }
            run(&mut kernel)?;
            vm::vm_test(&workspace_root(), None)
        }
        Task::Bench { reps, syscalls } => bench::bench(
            &workspace_root(),
            &bench::Options {
                reps: reps.max(1),
                syscalls: syscalls.max(300),
            },
        ),
        Task::VmTest { only } => {
            setup::setup()?;
            vm::vm_test(&workspace_root(), only.as_deref())
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
