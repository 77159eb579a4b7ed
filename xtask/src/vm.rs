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

/// The matrix: Debian's current cloud kernel of each suite, resolved when the test runs, from
/// 5.10 to the newest (sid). Two at a time (see `vm_test`).
const KERNELS: [(&str, &str); 4] = [
    ("debian-bullseye", "bullseye"),
    ("debian-bookworm", "bookworm"),
    ("debian-trixie", "trixie"),
    ("debian-sid", "sid"),
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

/// Drivers the VM needs, when the kernel builds them as modules: its disk, and veth for the
/// tests that send over a veth pair into a network namespace (`--net veth`).
const MODULES: [&str; 3] = ["virtio_pci", "virtio_blk", "veth"];

/// The list of unpacked modules; its name changes whenever `MODULES` does, so that a kernel
/// cached with fewer modules is unpacked again.
const MODULE_LIST: &str = "modules-virtio-veth.order";

/// Downloads (once) the suite's current cloud kernel package and unpacks what the VM needs.
fn fetch_kernel(suite: &str, uri: &str) -> Result<Kernel> {
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
        .args(["depends", "linux-image-cloud-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let image = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|d| d.starts_with("linux-image-"))
        })
        .with_context(|| format!("no cloud kernel in {suite}: {text}"))?
        .to_owned();
    let release = image.trim_start_matches("linux-image-").to_owned();
    let unpacked = dir.join(&release);
    let vmlinuz = unpacked.join("vmlinuz");
    let order = unpacked.join(MODULE_LIST);
    if !order.exists() {
        // Newer kernels (sid's 7.x) split the image package: the kernel in linux-binary-*, the
        // modules in linux-modules-*, the image package itself holds only docs. Older ones ship
        // both in the image package. Each is taken unsigned where the archive has that.
        let out = Command::new("apt-cache")
            .args(&opts)
            .args(["depends", &image])
            .output()?;
        let parts: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-"))
            .map(str::to_owned)
            .collect();
        let wanted = if parts.is_empty() {
            vec![image.clone()]
        } else {
            parts
        };
        let packages: Vec<String> = wanted
            .into_iter()
            .map(|p| {
                let unsigned = format!("{p}-unsigned");
                let has_unsigned = Command::new("apt-cache")
                    .args(&opts)
                    .args(["show", &unsigned])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if has_unsigned { unsigned } else { p }
            })
            .collect();
        eprintln!("vm-test: downloading {}", packages.join(" "));
        let _ = fs::remove_dir_all(&unpacked);
        let tree = unpacked.join("tree");
        fs::create_dir_all(&tree)?;
        run(Command::new("apt-get")
            .args(&opts)
            .arg("download")
            .args(&packages)
            .current_dir(&unpacked)
            .stdout(Stdio::null()))?;
        let debs: Vec<PathBuf> = fs::read_dir(&unpacked)?
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
                 2>/dev/null; true",
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
        let modules = resolve_modules(&tree, &unpacked)?;
        let list: Vec<String> = modules.iter().map(|m| m.display().to_string()).collect();
        for deb in &debs {
            fs::remove_file(deb)?;
        }
        fs::remove_dir_all(&tree)?;
        fs::write(&order, list.join("\n"))?;
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

/// Finds `MODULES` and their dependencies under `tree`, writes them decompressed to `out`,
/// and returns them in load order (dependencies first). Built-in drivers are simply absent.
fn resolve_modules(tree: &Path, out: &Path) -> Result<Vec<PathBuf>> {
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
    let mut stack: Vec<(String, bool)> = MODULES
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

/// Builds the initramfs: busybox, zcprof, the kernel tests and their libraries, the kernel's
/// disk modules, and an init that mounts the test disk, runs `zcprof doctor` and the tests, and
/// prints the verdict.
fn build_initramfs(
    work: &Path,
    kernel: &Kernel,
    zcprof: &Path,
    tests: &Path,
    tmpdir: &Path,
) -> Result<PathBuf> {
    let root = work.join("root");
    let _ = fs::remove_dir_all(&root);
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "sbin", "usr/bin", "usr/sbin", "modules",
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
    // namespace); first on the PATH.
    if let Some(ip) = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    {
        fs::create_dir_all(root.join("usr/local/bin"))?;
        install_with_libs(ip, &root.join("usr/local/bin/ip"), &root)?;
    }
    install_with_libs(zcprof, &root.join("zcprof"), &root)?;
    install_with_libs(tests, &root.join("tests"), &root)?;
    if let Some(debug) = std::env::var_os("ZCPROF_VM_DEBUG") {
        fs::copy(debug, root.join("debug.sh"))?;
    }
    let mut filters = VM_MODULES.iter().fold(String::new(), |mut all, m| {
        let _ = write!(all, " {m}::");
        all
    });
    for (skip, _) in SKIPPED_IN_VM {
        let _ = write!(filters, " --skip {skip}");
    }
    let init = format!(
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
/zcprof doctor
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
if [ $ok = 1 ]; then echo "init: success"; else echo "init: failure"; fi
poweroff -f
"#,
        tmp = tmpdir.display(),
    );
    let init_path = root.join("init");
    fs::write(&init_path, init)?;
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

/// Boots one kernel with a fresh ext4 disk and returns its verdict (none when the VM gave
/// none in time) and the tally of its console, which is echoed with a prefix.
fn boot(label: &str, kernel: &Kernel, initrd: &Path, disk: &Path) -> Result<(Option<bool>, Tally)> {
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

/// Runs the kernel tests on every kernel of the matrix (or those whose label contains `only`):
/// one suite per kernel. A kernel that cannot be fetched is a skipped suite, one that cannot be
/// booted or fails its tests a failed one.
///
/// # Errors
/// When the tools, the archive or the test binaries cannot be had.
pub fn vm_test(root: &Path, only: Option<&str>) -> Result<Vec<Suite>> {
    ensure_tools()?;
    let uri = archive_uri()?;
    let (zcprof, tests) = build_test_binaries(root)?;
    let kernels: Vec<(&str, &str)> = match only {
        None => KERNELS.to_vec(),
        Some(o) => KERNELS.into_iter().filter(|(l, _)| l.contains(o)).collect(),
    };
    // Each VM has one vCPU (see `boot`) and runs CPU-bound under TCG: on two cores two of them
    // at a time take about the time of one, each with a work directory of its own. Each worker
    // takes the next kernel as it finishes one, the newest (slowest) first.
    let parallel = std::env::var("ZCPROF_VM_PARALLEL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .max(1);
    let queue = Mutex::new(
        kernels
            .iter()
            .rev()
            .copied()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while let Some((label, suite)) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        one_kernel(root, label, suite, &uri, &zcprof, &tests)
                    }))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("its thread panicked")))
                    .unwrap_or_else(|e| {
                        eprintln!("vm-test: {label}: FAILED: {e:#}");
                        Suite::not_run(&format!("vm {label}"), &format!("{e:#}"), true)
                    });
                    if let Ok(mut d) = done.lock() {
                        d.push((label, result));
                    }
                }
            });
        }
    });
    // In the matrix's order, whichever finished first.
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(label, _)| KERNELS.iter().position(|(l, _)| l == label));
    let suites = done.into_iter().map(|(_, suite)| suite).collect();
    Ok(suites)
}

/// Fetches, boots and tests one kernel, in a work directory of its own.
fn one_kernel(
    root: &Path,
    label: &str,
    suite: &str,
    uri: &str,
    zcprof: &Path,
    tests: &Path,
) -> Result<Suite> {
    let start = Instant::now();
    // The archive changes under us (sid daily): a kernel that cannot be had is a loud skip, not
    // a failure; one that boots and fails its tests is.
    let kernel = match fetch_kernel(suite, uri) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("vm-test: SKIPPING {label}: its kernel cannot be fetched: {e:#}");
            let why = format!("its kernel cannot be fetched: {e:#}");
            return Ok(Suite::not_run(&format!("vm {label}"), &why, false));
        }
    };
    let work = root.join("target/vm").join(label);
    fs::create_dir_all(&work)?;
    let initrd = build_initramfs(&work, &kernel, zcprof, tests, &root.join("target/tmp"))?;
    let label = format!("{label} {}", kernel.release);
    eprintln!("vm-test: booting {label}");
    let (verdict, mut tally) = boot(&label, &kernel, &initrd, &work.join("disk.img"))?;
    for (pattern, why) in SKIPPED_IN_VM {
        let line = format!("skipping tests matching {pattern} in the VM (host only): {why}");
        eprintln!("vm-test: {label}: {line}");
        tally.skips.insert(line);
    }
    let ok = verdict == Some(true);
    eprintln!("vm-test: {label}: {}", if ok { "passed" } else { "FAILED" });
    let note = match verdict {
        None => Some(format!(
            "no verdict on the console (the VM ended, or ran past {VM_DEADLINE:?})"
        )),
        Some(false) if tally.failed == 0 => {
            Some("init: failure without a failed test (did a test executable crash?)".into())
        }
        _ => None,
    };
    Ok(Suite {
        name: format!("vm {label}"),
        tally,
        ok,
        seconds: start.elapsed().as_secs_f64(),
        note,
    })
}
