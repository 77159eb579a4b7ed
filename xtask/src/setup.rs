//! Toolchain setup: the nightly toolchain with rust-src, and bpf-linker built against that
//! nightly's own libLLVM. Idempotent: each step first checks, and does nothing when satisfied.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// The rustup toolchain the eBPF crate builds with (aya-build's default).
pub const NIGHTLY: &str = "nightly";

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `$CARGO_HOME/bin`, where `cargo install` puts bpf-linker.
pub fn cargo_bin() -> PathBuf {
    cargo_home().join("bin")
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"),
        PathBuf::from,
    )
}

/// PATH with `$CARGO_HOME/bin` first, for the builds this xtask starts.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).unwrap_or_default()
}

/// Installs whatever is missing.
///
/// # Errors
/// When rustup or cargo install fails.
pub fn setup() -> Result<()> {
    ensure_nightly()?;
    let lib = nightly_llvm()?;
    ensure_bpf_linker(&lib)?;
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed (https://rustup.rs)")?;
    if !toolchains
        .lines()
        .any(|l| l.starts_with(&format!("{NIGHTLY}-")))
    {
        eprintln!("setup: installing the {NIGHTLY} toolchain with rust-src");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        return Ok(());
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to {NIGHTLY}");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    Ok(())
}

/// The nightly's shared LLVM library: (directory, file name), e.g.
/// `libLLVM.so.22.1-rust-1.97.0-nightly`.
struct NightlyLlvm {
    path: PathBuf,
    name: String,
    major: String,
}

fn nightly_llvm() -> Result<NightlyLlvm> {
    let sysroot = output(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let name = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    // libLLVM.so.22.1-rust-... -> 22
    let major = name
        .trim_start_matches("libLLVM.so.")
        .split(['.', '-'])
        .next()
        .filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty())
        .with_context(|| format!("cannot read the LLVM version from {name}"))?
        .to_owned();
    Ok(NightlyLlvm {
        path: lib_dir.join(&name),
        name,
        major,
    })
}

/// True when bpf-linker exists and resolves exactly the nightly's libLLVM at run time.
fn linker_matches(linker: &Path, llvm: &NightlyLlvm) -> bool {
    let Ok(ldd) = output(Command::new("ldd").arg(linker)) else {
        return false;
    };
    ldd.lines().any(|l| {
        let l = l.trim();
        l.starts_with(&format!("{} => ", llvm.name)) && !l.contains("not found")
    })
}

fn ensure_bpf_linker(llvm: &NightlyLlvm) -> Result<()> {
    let linker = cargo_bin().join("bpf-linker");
    if linker_matches(&linker, llvm) {
        return Ok(());
    }
    // bpf-linker's build wants an LLVM prefix whose lib/ holds libLLVM.so; the nightly ships
    // only the versioned file, so link both names to it from a prefix of our own. The binary
    // keeps this directory as its RUNPATH, so it lives beside cargo's own files.
    let prefix = cargo_home().join("zcprof-llvm");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in ["libLLVM.so", llvm.name.as_str()] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm.path, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "setup: building bpf-linker against {} (about a minute)",
        llvm.name
    );
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{}", llvm.major))
        .env("LLVM_PREFIX", &prefix))?;
    if !linker_matches(&linker, llvm) {
        bail!(
            "bpf-linker was built but does not load {} (see ldd {})",
            llvm.name,
            linker.display()
        );
    }
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian packages of the (command, package) pairs whose command is not on PATH.
pub fn missing_packages(tools: &[(&str, &'static str)]) -> Vec<&'static str> {
    tools
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(_, pkg)| *pkg)
        .collect()
}

/// Installs Debian packages (as root; the test and VM steps only run as root).
///
/// # Errors
/// When apt-get fails.
pub fn install_packages(who: &str, packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    eprintln!("{who}: installing {}", packages.join(" "));
    run(Command::new("apt-get")
        .arg("update")
        .stdout(std::process::Stdio::null()))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null()))
}
