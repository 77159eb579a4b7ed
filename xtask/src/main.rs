//! Developer tasks: toolchain setup, the Quick-start commands, and the test suite.
mod bench;
mod setup;
mod summary;
mod textbook;
mod vm;

use std::{path::Path, process::Command};

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
    /// root) the kernel matrix in VMs. Ends with a summary of every suite.
    Test {
        /// Only the unit and CLI tests and a host kernel smoke (every method once, small
        /// payloads): the edit loop's check, a few minutes.
        #[arg(long)]
        quick: bool,
    },
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
        /// Only this case (repeat for several): overhead, bystander, kernel-stats, capacity,
        /// startup, fidelity, serve, scrape, siege. Its sections replace theirs in
        /// docs/benchmarks.md, marked as re-run alone.
        #[arg(long, value_name = "CASE", value_parser = clap::builder::PossibleValuesParser::new(bench::CASES))]
        only: Vec<String>,
    },
    /// Measure the note's table on real drivers (the `nic` VMs: an emulated e1000 NIC and a
    /// disk) and write docs/textbook.md beside the reports and pictures it was made from.
    Textbook,
    /// Run the privileged kernel tests inside VMs booting Debian's kernels.
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
        Task::Test { quick } => {
            setup::setup()?;
            finish(&test_suites(&workspace_root(), quick)?);
            Ok(())
        }
        Task::Bench {
            reps,
            syscalls,
            only,
        } => bench::bench(
            &workspace_root(),
            &bench::Options {
                reps: reps.max(1),
                syscalls: syscalls.max(300),
                only,
            },
        ),
        Task::Textbook => {
            setup::setup()?;
            textbook::textbook(&workspace_root())
        }
        Task::VmTest { only } => {
            setup::setup()?;
            finish(&vm::vm_test(&workspace_root(), only.as_deref())?);
            Ok(())
        }
    }
}

/// Prints the closing summary. When anything failed, exits 1 at once, so that the summary's
/// plain closing line stays the last line of the output.
fn finish(suites: &[summary::Suite]) {
    if !summary::print(suites) {
        std::process::exit(1);
    }
}

/// Whether a privileged test that cannot run must fail rather than skip: under CI (`CI=true`)
/// or `ZCPROF_REQUIRE_ROOT=1`, as `zcprof_tests::root_required` decides for the tests.
fn root_required() -> bool {
    let set = |name: &str| {
        std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v.trim() == "1")
    };
    set("CI") || set("ZCPROF_REQUIRE_ROOT")
}

/// The suites of `cargo xtask test`: the workspace's unit and CLI tests, each privileged test
/// target on the host (`quick`: the kernel smoke alone), and as root the VM matrix. A failed
/// suite does not stop the later ones.
fn test_suites(root: &Path, quick: bool) -> Result<Vec<summary::Suite>> {
    // The privileged tests drive the zcprof binary, so build it first.
    run(cargo().args(["build", "--package", "zcprof"]))?;
    let mut suites = vec![summary::run_suite(
        "unit and CLI tests",
        cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "zcprof-tests",
            "--exclude",
            "zcprof-ebpf",
        ]),
    )];
    if !is_root() {
        eprintln!(
            "xtask: not root: the kernel tests skip (and fail under CI=true or \
             ZCPROF_REQUIRE_ROOT=1), the VM matrix does not run (run `sudo -E cargo xtask test`)"
        );
    }
    // Built once beforehand, so that each suite's seconds are its tests' own.
    let build = summary::run_suite(
        "kernel tests build",
        cargo().args(["test", "--package", "zcprof-tests", "--no-run"]),
    );
    let compiled = build.ok;
    suites.push(build);
    if !compiled {
        return Ok(suites);
    }
    if quick {
        suites.extend(kernel_smoke(root));
        return Ok(suites);
    }
    if is_root() {
        install_test_programs()?;
    }
    for module in test_modules()? {
        if let Some(why) = vm_only(&module) {
            eprintln!("xtask: the {module} tests run in the VMs only: {why}");
            continue;
        }
        let filter = format!("{module}::");
        suites.push(kernel_suite(root, &format!("host {module}"), &[&filter]));
    }
    if is_root() {
        suites.extend(vm::vm_test(root, None)?);
    } else {
        suites.push(summary::Suite::not_run(
            "VM matrix",
            "needs root (run `sudo -E cargo xtask test`)",
            root_required(),
        ));
    }
    Ok(suites)
}

/// Why the integration module `module` runs in the VMs only, when it does: its tests need
/// hardware this host does not have.
fn vm_only(module: &str) -> Option<&'static str> {
    (module == "nic").then_some(
        "they need a NIC that does DMA (an emulated e1000, in the nic VMs of the matrix); this \
         host's devices are virtual",
    )
}

/// The host kernel smoke of `--quick`: every method once with small payloads. The
/// `methods::modern` module runs the six methods beyond the note at 8 MiB (without its Ctrl-C
/// test, which writes a 1 GiB file first); `compare_runs_every_method` the note's six in one
/// `compare` at 4 MiB.
fn kernel_smoke(root: &Path) -> Vec<summary::Suite> {
    vec![
        kernel_suite(
            root,
            "smoke: methods",
            &["methods::modern::", "--skip", "ctrl_c"],
        ),
        kernel_suite(
            root,
            "smoke: compare",
            &["--exact", "methods::classic::compare_runs_every_method"],
        ),
    ]
}

/// The one integration test binary of the `zcprof-tests` package (tests/tests/main.rs).
pub const TEST_BINARY: &str = "integration";

/// Runs tests of the integration binary (one at a time: kernel state is shared, as in aya's
/// integration tests) with libtest's `filter` arguments, as the suite `name`.
fn kernel_suite(root: &Path, name: &str, filter: &[&str]) -> summary::Suite {
    let mut cmd = integration_tests();
    cmd.arg("--test-threads=1")
        .args(filter)
        .env("ZCPROF_BIN", root.join("target/debug/zcprof"));
    summary::run_suite(name, &mut cmd)
}

/// `cargo test` of the integration binary, ready for libtest's own arguments.
fn integration_tests() -> Command {
    let mut cmd = cargo();
    cmd.args(["test", "--package", "zcprof-tests", "--test", TEST_BINARY])
        .arg("--");
    cmd
}

/// The top-level modules of the integration binary, from its own list of tests (`module::...`),
/// in order.
fn test_modules() -> Result<Vec<String>> {
    let out = integration_tests()
        .args(["--list", "--format", "terse"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("listing the integration tests")?;
    if !out.status.success() {
        bail!("listing the integration tests failed");
    }
    let modules: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter_map(|name| name.split_once("::").map(|(m, _)| m.to_owned()))
        .collect();
    if modules.is_empty() {
        bail!("the integration binary lists no test in a module");
    }
    Ok(modules.into_iter().collect())
}

/// Programs the kernel tests measure (they skip, saying so, where one is missing).
fn install_test_programs() -> Result<()> {
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
            // tests/tests/attribution/servers.rs: a real proxy in front of a backend behind a
            // veth, nginx behind one, and bpftrace counting their packets by port.
            ("haproxy", "haproxy"),
            ("ethtool", "ethtool"),
            ("bpftrace", "bpftrace"),
        ]),
    )
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
