//! Kernel matrix: boots Debian's cloud kernels under QEMU (TCG) with an initramfs holding
//! busybox, zcprof and the privileged kernel tests, runs them inside, and reads `init: success`
//! or `init: failure` from the serial console, as aya's own xtask does.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    TEST_BINARY, cargo, run,
    summary::{Suite, Tally},
};

/// Which of Debian's kernel packages a target boots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `linux-image-cloud-amd64`: small, virtio only, no drivers for emulated hardware.
    Cloud,
    /// `linux-image-amd64`: the generic kernel users run, with the e1000 driver.
    Generic,
}

impl Flavor {
    fn metapackage(self) -> &'static str {
        match self {
            Self::Cloud => "linux-image-cloud-amd64",
            Self::Generic => "linux-image-amd64",
        }
    }

    /// Drivers the VM needs, when the kernel builds them as modules: its disk, veth for the
    /// tests that send over a veth pair into a network namespace (`--net veth`), and the
    /// emulated Intel NIC of the `nic` targets.
    fn modules(self) -> &'static [&'static str] {
        match self {
            Self::Cloud => &["virtio_pci", "virtio_blk", "veth"],
            // ext4 is a module there, crc32c first (ext4's soft dependency, for its checksums).
            Self::Generic => &[
                "virtio_pci",
                "virtio_blk",
                "e1000",
                "crc32c_generic",
                "crc32c_intel",
                "ext4",
            ],
        }
    }

    /// The list of unpacked modules; its name changes whenever `modules` does, so that a kernel
    /// cached with fewer modules is unpacked again.
    fn module_list(self) -> &'static str {
        match self {
            Self::Cloud => "modules-virtio-veth.order",
            Self::Generic => "modules-virtio-e1000-ext4.order",
        }
    }
}

/// What a VM does once booted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The kernel tests of `VM_MODULES`.
    Matrix,
    /// The `nic` tests: the note's table over an emulated e1000 NIC that does DMA, sending
    /// through QEMU's user network to a `zcprof sink` on the host's loopback.
    Nic,
    /// `cargo xtask textbook`: the `nic` tests, keeping their reports on a second disk.
    Textbook,
}

/// One VM of `vm-test`: a label, the Debian suite whose current kernel it boots (resolved when
/// the test runs), the kernel package and the job.
#[derive(Clone, Copy)]
pub struct Target {
    pub label: &'static str,
    suite: &'static str,
    flavor: Flavor,
    pub job: Job,
}

/// The `nic` targets, keeping their reports (`cargo xtask textbook`).
pub fn textbook_targets() -> Vec<Target> {
    TARGETS
        .into_iter()
        .filter(|t| t.job == Job::Nic)
        .map(|t| Target {
            job: Job::Textbook,
            ..t
        })
        .collect()
}

/// QEMU's devices of the `nic` targets, as the textbook names them.
pub const NIC_MACHINE: &str = "QEMU (TCG, one vCPU) with `-nic user,model=e1000` (an emulated \
     Intel 82540EM NIC on QEMU's user network) and a virtio disk holding ext4";

const fn target(label: &'static str, suite: &'static str, flavor: Flavor, job: Job) -> Target {
    Target {
        label,
        suite,
        flavor,
        job,
    }
}

/// The matrix, from 5.10 to the newest (sid), and the real-driver targets: a kernel with the
/// `dma:` tracepoints (6.12) and one without (6.1). Two VMs at a time (see `vm_test`).
pub const TARGETS: [Target; 6] = [
    target("debian-bullseye", "bullseye", Flavor::Cloud, Job::Matrix),
    target("debian-bookworm", "bookworm", Flavor::Cloud, Job::Matrix),
    target("debian-trixie", "trixie", Flavor::Cloud, Job::Matrix),
    target("debian-sid", "sid", Flavor::Cloud, Job::Matrix),
    target("nic-bookworm", "bookworm", Flavor::Generic, Job::Nic),
    target("nic-trixie", "trixie", Flavor::Generic, Job::Nic),
];

/// A VM that has not finished by then is stopped and counts as failed (sid 7.2, the slowest under
/// emulation, takes about 11 minutes for every target beside another VM).
const VM_DEADLINE: Duration = Duration::from_secs(25 * 60);

/// Tests that run on the host only (libtest `--skip` filters, each with why): what they check is
/// zcprof's own behaviour, the same on every kernel, and under emulation they cost minutes that
/// the matrix's time budget (`cargo xtask test` in 30 minutes) cannot spare.
const SKIPPED_IN_VM: [(&str, &str); 6] = [
    // Signals and cleanup: they need a 1 GiB file in RAM and a transfer long enough to kill.
    (
        "ctrl_c",
        "signals and cleanup: a 1 GiB transfer to interrupt",
    ),
    (
        "a_signal_",
        "signals and cleanup: a 1 GiB transfer to interrupt",
    ),
    (
        "sigkill_during",
        "signals and cleanup: a 512 MiB transfer to kill",
    ),
    // Floods: a full table folds into an "others" row the same way on every kernel.
    ("processes_beyond_the_table", "a flood of 5,000 processes"),
    // Report rendering and argument checks: no kernel is involved.
    ("report_rejects_", "report rendering"),
    ("unwritable_dir_is_one_line", "argument checks"),
];

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/zcprof/vm")
}

/// Installs QEMU, cpio and a static busybox from the distribution when missing.
fn ensure_tools() -> Result<()> {
    let mut missing = crate::setup::missing_packages(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("dpkg-deb", "dpkg"),
        ("mkfs.ext4", "e2fsprogs"),
    ]);
    if !Path::new("/bin/busybox").exists() || !is_static("/bin/busybox") {
        missing.push("busybox-static");
    }
    crate::setup::install_packages("vm-test", &missing)
}

fn is_static(path: &str) -> bool {
    Command::new("ldd").arg(path).output().is_ok_and(|o| {
        !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
    })
}

/// The Debian archive URI this machine's apt already uses, so that the matrix reaches the same
/// mirror without naming one.
fn archive_uri() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.push(fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    // Debian's own archive: signed by its archive keyring, or at a path ending in /debian.
    let debian = |uri: &str, signed_by: &str| {
        signed_by.contains("debian-archive-keyring")
            || uri.trim_end_matches('/').ends_with("/debian")
    };
    for text in &texts {
        // deb822 stanzas.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && !suites.contains("security")
                && let Some(uri) = uris.split_whitespace().next()
                && debian(uri, field("Signed-By:").unwrap_or_default())
            {
                return Ok(uri.to_owned());
            }
        }
        // One-line format: deb [options] URI suite components
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("deb "))
        {
            let words: Vec<_> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
                .collect();
            if words.len() >= 3 && !words[2].contains("security") && debian(words[1], line) {
                return Ok(words[1].to_owned());
            }
        }
    }
    bail!("no Debian archive found in this machine's apt sources")
}

/// apt options for a private package list of one suite, leaving the system's untouched.
fn apt_options(dir: &Path) -> Vec<String> {
    vec![
        "-o".into(),
        format!(
            "Dir::Etc::SourceList={}",
            dir.join("sources.list").display()
        ),
        "-o".into(),
        "Dir::Etc::SourceParts=/dev/null".into(),
        "-o".into(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        "-o".into(),
        format!("Dir::Cache={}", dir.join("cache").display()),
        // The private directories belong to root; apt's _apt sandbox user cannot write them.
        "-o".into(),
        "APT::Sandbox::User=root".into(),
    ]
}

/// A kernel of the matrix, unpacked: its image and the modules the VM loads, in load order.
struct Kernel {
    release: String,
    vmlinuz: PathBuf,
    modules: Vec<PathBuf>,
}

/// Downloads (once) the suite's current kernel package of `flavor` and unpacks what the VM needs.
fn fetch_kernel(suite: &str, flavor: Flavor, uri: &str) -> Result<Kernel> {
    let dir = cache_dir().join(suite);
    fs::create_dir_all(dir.join("lists/partial"))?;
    fs::create_dir_all(dir.join("cache/archives/partial"))?;
    fs::write(
        dir.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
        ),
    )?;
    let opts = apt_options(&dir);
    run(Command::new("apt-get")
        .args(&opts)
        .arg("update")
        .stdout(Stdio::null()))?;
    // The metapackage names the current ABI; security updates change it.
    let out = Command::new("apt-cache")
        .args(&opts)
        .args(["depends", flavor.metapackage()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let image = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|d| d.starts_with("linux-image-"))
        })
        .with_context(|| format!("no {} in {suite}: {text}", flavor.metapackage()))?
        .to_owned();
    let release = image.trim_start_matches("linux-image-").to_owned();
    let unpacked = dir.join(&release);
    let vmlinuz = unpacked.join("vmlinuz");
    let order = unpacked.join(flavor.module_list());
    if !order.exists() {
        unpack_kernel(&image, &opts, flavor, &unpacked)?;
    }
    let modules = fs::read_to_string(&order)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok(Kernel {
        release,
        vmlinuz,
        modules,
    })
}

/// Downloads the kernel package `image` (or, where the archive splits it, its binary and modules
/// packages; unsigned where there are), and unpacks the kernel image and the modules `flavor`
/// needs into `unpacked`, with their list in load order.
fn unpack_kernel(image: &str, opts: &[String], flavor: Flavor, unpacked: &Path) -> Result<()> {
    let vmlinuz = unpacked.join("vmlinuz");
    let order = unpacked.join(flavor.module_list());
    // Newer kernels (sid's 7.x) split the image package: the kernel in linux-binary-*, the
    // modules in linux-modules-*, the image package itself holds only docs. Older ones ship
    // both in the image package. Each is taken unsigned where the archive has that.
    let out = Command::new("apt-cache")
        .args(opts)
        .args(["depends", image])
        .output()?;
    let parts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-"))
        .map(str::to_owned)
        .collect();
    let wanted = if parts.is_empty() {
        vec![image.to_owned()]
    } else {
        parts
    };
    let packages: Vec<String> = wanted
        .into_iter()
        .map(|p| {
            let unsigned = format!("{p}-unsigned");
            let has_unsigned = Command::new("apt-cache")
                .args(opts)
                .args(["show", &unsigned])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if has_unsigned { unsigned } else { p }
        })
        .collect();
    eprintln!("vm-test: downloading {}", packages.join(" "));
    let _ = fs::remove_dir_all(unpacked);
    let tree = unpacked.join("tree");
    fs::create_dir_all(&tree)?;
    run(Command::new("apt-get")
        .args(opts)
        .arg("download")
        .args(&packages)
        .current_dir(unpacked)
        .stdout(Stdio::null()))?;
    let debs: Vec<PathBuf> = fs::read_dir(unpacked)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    if debs.is_empty() {
        bail!("downloaded .deb not found");
    }
    for deb in &debs {
        let script = format!(
            // The kernel sits in /boot or (split packages) beside the modules; modules in
            // /lib or (merged /usr) /usr/lib; drivers built in have none, so a pattern may
            // match nothing: tar's status is not the judge, the image's presence is.
            "dpkg-deb --fsys-tarfile '{}' | tar -xf - -C '{}' --wildcards './boot/vmlinuz-*' \
             '*/modules/*/vmlinuz' '*/modules/*/kernel/drivers/virtio/*' \
             '*/modules/*/kernel/drivers/block/*' '*/modules/*/kernel/drivers/net/veth.ko*' \
             '*/modules/*/kernel/drivers/net/ethernet/intel/e1000/*' '*/modules/*/kernel/fs/ext4/*' \
             '*/modules/*/kernel/fs/jbd2/*' '*/modules/*/kernel/fs/mbcache.ko*' \
             '*/modules/*/kernel/lib/crc16.ko*' '*/modules/*/kernel/crypto/crc32c*' \
             '*/modules/*/kernel/arch/x86/crypto/crc32c*' 2>/dev/null; true",
            deb.display(),
            tree.display()
        );
        run(Command::new("sh").args(["-c", &script]))?;
    }
    let find = Command::new("find")
        .arg(&tree)
        .args(["-name", "vmlinuz*", "-type", "f"])
        .output()?;
    let image = String::from_utf8_lossy(&find.stdout)
        .lines()
        .next()
        .map(PathBuf::from)
        .context("no vmlinuz in the package")?;
    fs::rename(image, &vmlinuz)?;
    let modules = resolve_modules(&tree, flavor.modules(), unpacked)?;
    let list: Vec<String> = modules.iter().map(|m| m.display().to_string()).collect();
    for deb in &debs {
        fs::remove_file(deb)?;
    }
    fs::remove_dir_all(&tree)?;
    fs::write(&order, list.join("\n"))?;
    Ok(())
}

/// Module bytes, decompressed when the package ships them compressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return Ok(fs::read(path)?);
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("{tool} is needed"))?;
    if !out.status.success() {
        bail!("{tool} -dc {name} failed");
    }
    Ok(out.stdout)
}

/// A module's `depends=` list, from its .modinfo section.
fn depends(bytes: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    bytes
        .windows(key.len())
        .position(|w| w == key)
        .map(|at| {
            let rest = &bytes[at + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Finds `wanted` and their dependencies under `tree`, writes them decompressed to `out`,
/// and returns them in load order (dependencies first). Built-in drivers are simply absent.
fn resolve_modules(tree: &Path, wanted: &[&str], out: &Path) -> Result<Vec<PathBuf>> {
    let mut found = std::collections::HashMap::new();
    let listing = Command::new("find")
        .arg(tree)
        .args(["-name", "*.ko*"])
        .output()?;
    for path in String::from_utf8_lossy(&listing.stdout).lines() {
        let file = Path::new(path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file
            .split(".ko")
            .next()
            .unwrap_or_default()
            .replace('-', "_");
        found.insert(name, PathBuf::from(path));
    }
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Depth-first: a module is written once all its dependencies are.
    let mut stack: Vec<(String, bool)> = wanted
        .iter()
        .rev()
        .map(|m| ((*m).to_owned(), false))
        .collect();
    while let Some((name, deps_done)) = stack.pop() {
        let Some(path) = found.get(&name) else {
            continue;
        };
        if deps_done {
            let dest = out.join(format!("{:02}-{name}.ko", order.len()));
            fs::write(&dest, module_bytes(path)?)?;
            order.push(dest);
            continue;
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        stack.push((name.clone(), true));
        for dep in depends(&module_bytes(path)?) {
            let dep = dep.replace('-', "_");
            if !seen.contains(&dep) {
                stack.push((dep, false));
            }
        }
    }
    Ok(order)
}

/// Modules of the integration binary that run inside the VMs: those whose checks depend on the
/// kernel (hook choice and fallbacks, attach, the copy ledger's sources, the modern methods'
/// refusals and verdicts). `flood`, `timing`, `pictures` and `serve` (floods, long timing
/// statistics, rendering, Prometheus: the same on every kernel) run on the host only.
const VM_MODULES: [&str; 8] = [
    "methods",
    "attach_exec",
    "signals",
    "network",
    "trace",
    "ledger",
    "accounting",
    "attribution",
];

/// The zcprof binary and the integration test executable, built for the host.
fn build_test_binaries(root: &Path) -> Result<(PathBuf, PathBuf)> {
    run(cargo().args(["build", "--package", "zcprof"]))?;
    let out = cargo()
        .args(["test", "--package", "zcprof-tests", "--test", TEST_BINARY])
        .args(["--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the kernel tests failed");
    }
    let tests = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == TEST_BINARY)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("no {TEST_BINARY} test executable in cargo's output"))?;
    Ok((root.join("target/debug/zcprof"), tests))
}

/// Copies `bin` and the shared libraries it needs into `root`, at the same paths.
fn install_with_libs(bin: &Path, dest: &Path, root: &Path) -> Result<()> {
    fs::copy(bin, dest).with_context(|| format!("copying {}", bin.display()))?;
    let ldd = Command::new("ldd").arg(bin).output()?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            let target = root.join(path.trim_start_matches('/'));
            fs::create_dir_all(target.parent().context("lib path")?)?;
            fs::copy(path, &target).with_context(|| format!("copying {path}"))?;
        }
    }
    Ok(())
}

/// Where the `nic` targets' VM finds the host's `zcprof sink`: QEMU's user network answers
/// 10.0.2.2 with the host's loopback, so the packets leave the guest through its e1000 NIC and
/// nothing leaves this machine.
const SLIRP_HOST: &str = "10.0.2.2";

/// Builds the initramfs: busybox, zcprof, the kernel tests and their libraries, the kernel's
/// modules, and an init that mounts the test disk, runs `zcprof doctor` and the job's tests, and
/// prints the verdict. `sink_port`: the host's sink, for the `nic` jobs.
fn build_initramfs(
    work: &Path,
    kernel: &Kernel,
    (zcprof, tests): (&Path, &Path),
    tmpdir: &Path,
    job: Job,
    sink_port: Option<u16>,
) -> Result<PathBuf> {
    let root = work.join("root");
    let _ = fs::remove_dir_all(&root);
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "modules",
        "usr/local/bin",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    for module in &kernel.modules {
        fs::copy(
            module,
            root.join("modules")
                .join(module.file_name().context("module name")?),
        )?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    // iproute2's ip, for --net veth (busybox's cannot create a veth pair with its peer in a
    // namespace), and ethtool, to turn the NIC's scatter-gather off; first on the PATH.
    for (tool, needed) in [("ip", true), ("ethtool", job != Job::Matrix)] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .into_iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists());
        match found {
            Some(path) => install_with_libs(&path, &root.join("usr/local/bin").join(tool), &root)?,
            None if needed && job != Job::Matrix => bail!("{tool} is needed on the host"),
            None => {}
        }
    }
    install_with_libs(zcprof, &root.join("zcprof"), &root)?;
    install_with_libs(tests, &root.join("tests"), &root)?;
    if let Some(debug) = std::env::var_os("ZCPROF_VM_DEBUG") {
        fs::copy(debug, root.join("debug.sh"))?;
    }
    let init_path = root.join("init");
    fs::write(&init_path, init_script(job, tmpdir, sink_port))?;
    fs::set_permissions(
        &init_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let initrd = work.join(format!("initrd-{}.gz", kernel.release));
    run(Command::new("sh")
        .args([
            "-c",
            &format!(
                "find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
                initrd.display()
            ),
        ])
        .current_dir(&root))?;
    Ok(initrd)
}

/// libtest's filter arguments for the job: the kernel-dependent modules less the host-only
/// tests, or the `nic` module.
fn test_filters(job: Job) -> String {
    if job != Job::Matrix {
        return " nic::".to_owned();
    }
    let mut filters = VM_MODULES.iter().fold(String::new(), |mut all, m| {
        let _ = write!(all, " {m}::");
        all
    });
    for (skip, _) in SKIPPED_IN_VM {
        let _ = write!(filters, " --skip {skip}");
    }
    filters
}

/// The `nic` jobs' network: the e1000 NIC up with QEMU's user-network address, no default route
/// (only the host's sink is reached), and where the tests find the sink.
fn nic_setup(job: Job, sink_port: Option<u16>) -> String {
    let Some(port) = sink_port.filter(|_| job != Job::Matrix) else {
        return String::new();
    };
    let keep = if job == Job::Textbook {
        " ZCPROF_TEXTBOOK_OUT=/out"
    } else {
        ""
    };
    format!(
        "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 \
   || echo \"init: no e1000 NIC (eth0): the nic tests will fail\"
mkdir -p /out
export ZCPROF_NIC=eth0 ZCPROF_NIC_SINK={SLIRP_HOST}:{port}{keep}
"
    )
}

/// What the textbook job does after its tests: its reports, as a tar on the second disk.
fn keep_reports(job: Job) -> &'static str {
    if job == Job::Textbook {
        "(cd /out && tar -cf /dev/vdb .) || { echo \"init: the reports could not be kept\"; ok=0; }\n"
    } else {
        ""
    }
}

/// The VM's init: mounts, modules, the scratch disk, the job's network, `zcprof doctor`, then
/// each test alone, timed, and the verdict on the console.
fn init_script(job: Job, tmpdir: &Path, sink_port: Option<u16>) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
# Thread and process ids come round after 4,096 rather than 32,768: the tests of reused ids meet
# one in a seventh of the threads (a minute less under emulation), as on a small system.
echo 4096 > /proc/sys/kernel/pid_max
mkdir -p {tmp}
# The scratch directory lives on ext4 on a virtio disk, so O_DIRECT, the block tracepoints and
# filemap_read behave as on a real machine (tmpfs would show none of them).
for m in /modules/*.ko; do [ -e "$m" ] && insmod "$m"; done
for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda {tmp} || echo "init: no disk: the scratch directory stays on rootfs"
echo "init: kernel $(uname -r)"
export ZCPROF_BIN=/zcprof ZCPROF_EXPECT_HOOKED=1 HOME=/tmp PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
{net}/zcprof doctor
if [ -e /debug.sh ]; then . /debug.sh; fi
ok=1
# One test per run, timed, so that the closing summary can name the slowest.
now() {{ cut -d' ' -f1 /proc/uptime; }}
names=$(/tests --list --format terse{filters} | sed -n 's/: test$//p')
[ -n "$names" ] || {{ echo "init: the test binary listed no test"; ok=0; }}
for name in $names; do
  s=$(now)
  /tests --exact "$name" --test-threads=1 || ok=0
  echo "init: took $name $(echo "$(now) $s" | awk '{{printf "%.1f", $1 - $2}}') s"
done
{keep}if [ $ok = 1 ]; then echo "init: success"; else echo "init: failure"; fi
poweroff -f
"#,
        tmp = tmpdir.display(),
        net = nic_setup(job, sink_port),
        filters = test_filters(job),
        keep = keep_reports(job),
    )
}

/// QEMU's devices for the job beyond the scratch disk: the `nic` jobs' emulated e1000 on the
/// user network (QEMU's default NIC otherwise, which the cloud kernels do not drive), and the
/// textbook job's second disk for its reports.
fn job_devices(job: Job, reports: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if job != Job::Matrix {
        args.extend(["-nic".to_owned(), "user,model=e1000".to_owned()]);
    }
    if job == Job::Textbook {
        args.extend([
            "-drive".to_owned(),
            format!("file={},format=raw,if=virtio", reports.display()),
        ]);
    }
    args
}

/// Boots one kernel with a fresh ext4 disk (and `devices`) and returns its verdict (none when
/// the VM gave none in time) and the tally of its console, which is echoed with a prefix.
fn boot(
    label: &str,
    kernel: &Kernel,
    initrd: &Path,
    disk: &Path,
    devices: &[String],
) -> Result<(Option<bool>, Tally)> {
    let _ = fs::remove_file(disk);
    run(Command::new("truncate").args(["-s", "1G"]).arg(disk))?;
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(disk))?;
    // One vCPU: attaching and detaching tracepoints live-patches kernel text (int3 + IPI), and
    // multi-threaded TCG sometimes runs a half-patched instruction on the other vCPU (seen as
    // "Oops: int3" in __schedule on 6.12). The workloads do not need two CPUs.
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "2048",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,cache=unsafe",
            disk.display()
        ))
        .args(devices)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = qemu.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let watched = watch_console(label, &rx);
    let _ = qemu.kill();
    let _ = qemu.wait();
    drop(rx);
    let _ = reader.join();
    let _ = fs::remove_file(disk);
    Ok(watched)
}

/// Echoes the console's lines with the prefix `[label] ` until the VM ends or `VM_DEADLINE`
/// passes, tallying its tests, and returns init's verdict.
fn watch_console(label: &str, rx: &mpsc::Receiver<String>) -> (Option<bool>, Tally) {
    let start = Instant::now();
    let mut verdict = None;
    let mut tally = Tally::default();
    let mut out = std::io::stdout();
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                let _ = writeln!(out, "[{label}] {line}");
                tally.read_line(line);
                if line.contains("init: success") {
                    verdict = Some(true);
                } else if line.contains("init: failure") {
                    verdict = Some(false);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > VM_DEADLINE {
            let _ = writeln!(
                out,
                "[{label}] vm-test: no verdict after {VM_DEADLINE:?}, stopping the VM"
            );
            break;
        }
    }
    (verdict, tally)
}

/// Runs the kernel tests on every target (or those whose label contains `only`): one suite per
/// target. A kernel that cannot be fetched is a skipped suite, one that cannot be booted or
/// fails its tests a failed one.
///
/// # Errors
/// When the tools, the archive or the test binaries cannot be had.
pub fn vm_test(root: &Path, only: Option<&str>) -> Result<Vec<Suite>> {
    let targets: Vec<Target> = TARGETS
        .into_iter()
        .filter(|t| only.is_none_or(|o| t.label.contains(o)))
        .collect();
    run_targets(root, &targets, None)
}

/// Boots `targets`, two at a time; the textbook job keeps its reports in `reports`.
///
/// # Errors
/// When the tools, the archive or the test binaries cannot be had.
pub fn run_targets(root: &Path, targets: &[Target], reports: Option<&Path>) -> Result<Vec<Suite>> {
    ensure_tools()?;
    let uri = archive_uri()?;
    let (zcprof, tests) = build_test_binaries(root)?;
    // Each VM has one vCPU (see `boot`) and runs CPU-bound under TCG: on two cores two of them
    // at a time take about the time of one, each with a work directory of its own. Each worker
    // takes the next target as it finishes one: the matrix newest (slowest) first, then the
    // short `nic` targets.
    let parallel = std::env::var("ZCPROF_VM_PARALLEL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .max(1);
    let mut order: Vec<Target> = targets.to_vec();
    order.sort_by_key(|t| {
        let at = TARGETS.iter().position(|x| x.label == t.label);
        (t.job != Job::Matrix, std::cmp::Reverse(at))
    });
    let queue = Mutex::new(order.into_iter().collect::<std::collections::VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    let ctx = Context {
        root,
        uri: &uri,
        binaries: (&zcprof, &tests),
        reports,
    };
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while let Some(t) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        one_target(&ctx, t)
                    }))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("its thread panicked")))
                    .unwrap_or_else(|e| {
                        eprintln!("vm-test: {}: FAILED: {e:#}", t.label);
                        Suite::not_run(&format!("vm {}", t.label), &format!("{e:#}"), true)
                    });
                    if let Ok(mut d) = done.lock() {
                        d.push((t.label, result));
                    }
                }
            });
        }
    });
    // In the targets' order, whichever finished first.
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(label, _)| TARGETS.iter().position(|t| t.label == *label));
    let suites = done.into_iter().map(|(_, suite)| suite).collect();
    Ok(suites)
}

/// What every VM of a run shares.
struct Context<'a> {
    root: &'a Path,
    uri: &'a str,
    /// zcprof and the integration test executable.
    binaries: (&'a Path, &'a Path),
    /// Where the textbook job's reports go.
    reports: Option<&'a Path>,
}

/// A `zcprof sink` on the host's loopback for a `nic` VM, stopped when dropped.
struct HostSink {
    child: std::process::Child,
    port: u16,
}

impl HostSink {
    fn start(zcprof: &Path, log: &Path) -> Result<Self> {
        // A port the kernel just handed out and nobody holds: the sink binds it at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(zcprof)
            .args(["sink", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(fs::File::create(log)?)
            .stderr(fs::File::create(log.with_extension("err"))?)
            .spawn()
            .context("starting zcprof sink")?;
        Ok(Self { child, port })
    }
}

impl Drop for HostSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches, boots and tests one target, in a work directory of its own.
fn one_target(ctx: &Context<'_>, t: Target) -> Result<Suite> {
    let start = Instant::now();
    // The archive changes under us (sid daily): a kernel that cannot be had is a loud skip, not
    // a failure; one that boots and fails its tests is.
    let kernel = match fetch_kernel(t.suite, t.flavor, ctx.uri) {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "vm-test: SKIPPING {}: its kernel cannot be fetched: {e:#}",
                t.label
            );
            let why = format!("its kernel cannot be fetched: {e:#}");
            return Ok(Suite::not_run(&format!("vm {}", t.label), &why, false));
        }
    };
    let work = ctx.root.join("target/vm").join(t.label);
    fs::create_dir_all(&work)?;
    let sink = match t.job {
        Job::Matrix => None,
        Job::Nic | Job::Textbook => Some(HostSink::start(ctx.binaries.0, &work.join("sink.log"))?),
    };
    let initrd = build_initramfs(
        &work,
        &kernel,
        ctx.binaries,
        &ctx.root.join("target/tmp"),
        t.job,
        sink.as_ref().map(|s| s.port),
    )?;
    let reports = work.join("reports.tar");
    if t.job == Job::Textbook {
        let _ = fs::remove_file(&reports);
        run(Command::new("truncate").args(["-s", "64M"]).arg(&reports))?;
    }
    let label = format!("{} {}", t.label, kernel.release);
    eprintln!("vm-test: booting {label}");
    let devices = job_devices(t.job, &reports);
    let (verdict, mut tally) = boot(&label, &kernel, &initrd, &work.join("disk.img"), &devices)?;
    drop(sink);
    if let (Job::Textbook, Some(dir)) = (t.job, ctx.reports) {
        unpack_reports(&reports, &dir.join(t.label))?;
    }
    if t.job == Job::Matrix {
        for (pattern, why) in SKIPPED_IN_VM {
            let line = format!("skipping tests matching {pattern} in the VM (host only): {why}");
            eprintln!("vm-test: {label}: {line}");
            tally.skips.insert(line);
        }
    }
    let ok = verdict == Some(true);
    eprintln!("vm-test: {label}: {}", if ok { "passed" } else { "FAILED" });
    Ok(Suite {
        name: format!("vm {label}"),
        note: verdict_note(verdict, &tally),
        tally,
        ok,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Why a VM failed without a failed test, when it did.
fn verdict_note(verdict: Option<bool>, tally: &Tally) -> Option<String> {
    match verdict {
        None => Some(format!(
            "no verdict on the console (the VM ended, or ran past {VM_DEADLINE:?})"
        )),
        Some(false) if tally.failed == 0 => {
            Some("init: failure without a failed test (did a test executable crash?)".into())
        }
        _ => None,
    }
}

/// Unpacks the tar the textbook job wrote on its second disk into `dir`.
fn unpack_reports(tar: &Path, dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    run(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(dir))
        .context("the textbook VM left no reports")
}
