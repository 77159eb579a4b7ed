//! Figures belong to the process they are charged to: a process that shares the kernel with a
//! busy peer is charged none of the peer's packets, copies or devices, and a process is named by
//! its own main thread. Without root these tests skip, saying so on stderr.
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::Value;
use zcprof_tests::{exec_self, fig, privileged, run, scratch_dir, skip, zcprof_bin};

/// A peer that sends over a veth pair without scatter-gather, so that software segmentation
/// copies every byte into linear packet data and the receiver's ACKs, processed on whatever task
/// is on the CPU, send the peer's next packets from there. Each report is kept.
fn peer_sending(dir: &Path, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Value>> {
    let dir = dir.to_owned();
    // On one CPU every ACK is processed on the bystander's CPU, and a small transfer shows it
    // (the VMs, under emulation); on more, a larger one gives the kernel time to.
    let one_cpu = thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let size = if one_cpu { "32M" } else { "128M" };
    thread::spawn(move || {
        let mut reports = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let out = run(&[
                "run",
                "--method",
                "sendfile",
                "--size",
                size,
                "--net",
                "veth",
                "--sg",
                "off",
                "--dir",
                dir.to_str().unwrap(),
                "--format",
                "json",
            ]);
            assert!(
                out.status.success(),
                "the peer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            reports.push(serde_json::from_slice(&out.stdout).expect("the peer's JSON"));
        }
        reports
    })
}

/// Bytes of the ledger's path `name` in a report.
fn path_bytes(r: &Value, name: &str) -> u64 {
    r["copies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["path"] == name)
        .filter_map(|p| p["bytes"].as_u64())
        .sum()
}

/// Whether `--net veth` works here (no veth module, no `CAP_NET_ADMIN`: a loud skip).
fn veth_or_skip(test: &str, dir: &Path) -> bool {
    let out = run(&[
        "run",
        "--method",
        "sendfile",
        "--size",
        "64K",
        "--net",
        "veth",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    if !out.status.success() {
        skip(
            test,
            &format!(
                "--net veth does not work here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
    }
    out.status.success()
}

/// issue 21, item 1: a shell loop that makes syscalls and owns no socket, attached while a peer
/// sends over a veth without scatter-gather, was charged the peer's segmentation copies (853 MB
/// in 14 s) and its veth. None of it is the loop's.
#[test]
fn a_process_without_sockets_is_charged_none_of_a_peers_packets() {
    const TEST: &str = "a_process_without_sockets";
    if !privileged(TEST) {
        return;
    }
    let dir = scratch_dir("attribution-peer", env!("CARGO_TARGET_TMPDIR"));
    if !veth_or_skip(TEST, &dir) {
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let peer = peer_sending(&dir, Arc::clone(&stop));
    thread::sleep(Duration::from_millis(300));
    let r = attach_to_a_shell_loop(&dir, 4);
    stop.store(true, Ordering::Relaxed);
    let peers = peer.join().expect("the peer thread");
    // The peer really copied into packets meanwhile: the kernel fact the check stands on.
    let peer_copied: u64 = peers
        .iter()
        .map(|p| path_bytes(p, "page cache -> socket buffer"))
        .sum();
    assert!(peer_copied > 0, "the peer made no segmentation copy");
    assert!(fig(&r, "syscalls") > 1000, "the loop made few syscalls");
    for p in r["copies"].as_array().into_iter().flatten() {
        assert!(
            p["bytes"].as_u64() == Some(0) || p["contradicted"] == true,
            "a path charged to a process without sockets: {p}"
        );
    }
    assert_eq!(
        r["figures"]["cpu_copy_bytes"]["value"].as_u64(),
        Some(0),
        "{}",
        r["figures"]["cpu_copy_bytes"]
    );
    assert_eq!(
        r["devices"]["net"],
        Value::Array(vec![]),
        "the peer's devices"
    );
    let name = &r["processes"][0]["name"];
    assert!(name == "sh" || name == "dash", "the loop is named {name}");
}

/// The workloads, run as this test executable again (`exec_self`).
#[test]
fn workload() {
    if std::env::var("ZCPROF_TEST_WORKLOAD").as_deref() == Ok("renamed-thread") {
        renamed_thread();
    }
}

/// A process whose busiest thread names itself otherwise: the main thread keeps the
/// executable's name, a second thread calls itself "worker-renamed" and makes the syscalls.
fn renamed_thread() {
    // The main thread's syscalls on the first CPU, the worker's later on the second: the old
    // rule (the name of whichever task ran first on each CPU, the latest CPU's winning) named
    // the process after the worker.
    pin_to_cpu(0);
    syscalls(1000);
    let worker = thread::Builder::new()
        .name("worker-renamed".to_owned())
        .spawn(|| {
            pin_to_cpu(1);
            thread::sleep(Duration::from_millis(20));
            syscalls(200_000);
        })
        .expect("a thread");
    worker.join().expect("the worker");
}

fn syscalls(n: u32) {
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        let _ = unsafe { libc::getppid() };
    }
}

/// Moves the calling thread to `cpu`, where the machine has it (a one-CPU VM has not).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// issue 21, item 6: a process is named by its main thread (the JVM's row was named after
/// "VM Periodic Tas", caddy's after curl), not by whichever of its threads, or another task,
/// ran first on a CPU.
#[test]
fn a_process_is_named_by_its_main_thread() {
    const TEST: &str = "a_process_is_named";
    if !privileged(TEST) {
        return;
    }
    let dir = scratch_dir("attribution-name", env!("CARGO_TARGET_TMPDIR"));
    let r = exec_self(
        module_path!(),
        "renamed-thread",
        &[],
        &[],
        &dir.join("report.json"),
    );
    let exe = std::env::current_exe().expect("current exe");
    let main: String = exe
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let names: Vec<&str> = r["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&main.as_str()) && !names.contains(&"worker-renamed"),
        "the process's rows are named {names:?}, its main thread {main}"
    );
}

/// Runs `sh -c 'while :; do : </dev/null; done'` (syscalls without end, no socket, no file I/O)
/// and attaches to it for `seconds`, returning the report.
fn attach_to_a_shell_loop(dir: &Path, seconds: u32) -> Value {
    let mut bystander = Command::new("sh")
        .args(["-c", "while :; do : </dev/null; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("sh starts");
    let report = dir.join("bystander.json");
    let out = Command::new(zcprof_bin())
        .args(["attach", "--pid", &bystander.id().to_string()])
        .args([
            "--duration",
            &format!("{seconds}s"),
            "--format",
            "json",
            "-o",
        ])
        .arg(&report)
        .output()
        .expect("zcprof attach runs");
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(
        out.status.success(),
        "attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON")
}

/// issue 21, item 7: block I/O was counted device-wide into the attached process's DMA (vsftpd
/// serving from the page cache showed 1978 MiB). A process is charged the I/O it queued itself;
/// another process's writes show device-wide, apart, and never in its cell.
#[test]
fn a_process_is_charged_only_the_block_io_it_queued() {
    const TEST: &str = "block_io_of_its_own";
    if !privileged(TEST) {
        return;
    }
    let dir = scratch_dir("attribution-disk", env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("written.bin");
    // Another process writes 8 MiB straight to the disk, over and over, until the loop's
    // measurement ends (however long zcprof takes to attach on a loaded machine).
    // dd without O_DIRECT support (an old busybox) cannot write straight to the disk: said below.
    let probe = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=8", "oflag=direct"])
        .arg(format!("of={}", file.display()))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !probe {
        skip(TEST, "dd cannot write with oflag=direct here");
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (file, stop) = (file.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let status = Command::new("dd")
                    .args([
                        "if=/dev/zero",
                        "bs=1M",
                        "count=8",
                        "oflag=direct",
                        "conv=notrunc",
                    ])
                    .arg(format!("of={}", file.display()))
                    .stderr(Stdio::null())
                    .status()
                    .expect("dd runs");
                assert!(status.success(), "dd with O_DIRECT failed");
            }
        })
    };
    let r = attach_to_a_shell_loop(&dir, 3);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer");
    let hook = r["figures"]["disk_read_bytes"]["source"]
        .as_str()
        .unwrap_or("");
    if !hook.contains("block_bio_queue") {
        skip(
            TEST,
            &format!("block_bio_queue is not attached here: {hook}"),
        );
        return;
    }
    let written: u64 = r["devices"]["disk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["write_bytes"].as_u64())
        .sum();
    assert!(
        written >= 8 << 20,
        "the writer's I/O was seen device-wide: {written}"
    );
    for key in ["disk_read_bytes", "disk_write_bytes", "dma_bytes"] {
        assert_eq!(fig(&r, key), 0, "{key} of a process that did no I/O");
    }
    // And its own I/O, to the byte: dd reading the file straight from the disk.
    let direct = Command::new(zcprof_bin())
        .args(["exec", "--format", "json", "--"])
        .args(["dd", "bs=1M", "iflag=direct", "of=/dev/null"])
        .arg(format!("if={}", file.display()))
        .output()
        .expect("zcprof exec runs");
    if !direct.status.success() {
        skip(
            TEST,
            &format!(
                "dd cannot read with iflag=direct here: {}",
                String::from_utf8_lossy(&direct.stderr).trim()
            ),
        );
        return;
    }
    let d: Value = serde_json::from_slice(&direct.stdout).expect("JSON");
    let size = std::fs::metadata(&file).expect("the file").len();
    assert_eq!(size, 8 << 20, "dd rewrote the same 8 MiB over and over");
    assert_eq!(
        fig(&d, "disk_read_bytes"),
        size,
        "{}",
        d["figures"]["dma_bytes"]
    );
}

/// Runs `zcprof exec --format json -- sh -c SCRIPT` and returns the report.
fn exec_shell(script: &str) -> Value {
    let out = Command::new(zcprof_bin())
        .args(["exec", "--format", "json", "--", "sh", "-c", script])
        .output()
        .expect("zcprof exec runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The paths of a report's ledger, with their bytes.
fn paths(r: &Value) -> Vec<(String, u64)> {
    r["copies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["contradicted"] != true)
        .map(|p| {
            (
                p["path"].as_str().unwrap_or("").to_owned(),
                p["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Whether the kernel side classified descriptors here (raw syscall tracepoints with the
/// saved registers, struct offsets from BTF); says why not on stderr.
fn classified_or_skip(test: &str, r: &Value) -> bool {
    let yes = r["hooks"]["sys_exit"]
        .as_str()
        .is_some_and(|h| h.starts_with("raw_tp"));
    if !yes {
        skip(
            test,
            &format!(
                "the syscall return is hooked by {} here: no saved registers, no descriptor kinds",
                r["hooks"]["sys_exit"]
            ),
        );
    }
    yes
}

/// issue 21, item 5: a read was "page cache -> user buffer" whatever its descriptor was, and a
/// write nobody took a copy: `dd if=/dev/zero of=/dev/null` showed 2 copies per MiB, none made.
#[test]
fn dev_zero_to_dev_null_copies_nothing() {
    const TEST: &str = "dev_zero_to_dev_null";
    if !privileged(TEST) {
        return;
    }
    let r = exec_shell("dd if=/dev/zero of=/dev/null bs=65536 count=256 2>/dev/null");
    if !classified_or_skip(TEST, &r) {
        return;
    }
    // The 16 MiB are copied nowhere; what is left is the dynamic loader reading the headers of
    // the libraries dd links (a few KiB, really copied out of the page cache).
    let copied = fig(&r, "cpu_copy_bytes");
    assert!(copied < 64 << 10, "{copied} B copied: {}", r["copies"]);
    for (path, _) in paths(&r) {
        assert_eq!(path, "page cache -> user buffer", "{}", r["copies"]);
    }
    assert!(
        r["notes"].as_array().into_iter().flatten().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("16 MiB read from /dev/zero"))),
        "{}",
        r["notes"]
    );
}

/// The same rule through a pipe and from a device: `cat FILE | wc -c` copies the file out of
/// the page cache and through the pipe (or, where cat is busybox's and sends the file into the
/// pipe in the kernel, only out of the pipe); `head -c N /dev/urandom > FILE` copies from the
/// device.
#[test]
fn pipes_and_devices_have_paths_of_their_own() {
    const TEST: &str = "pipes_and_devices";
    if !privileged(TEST) {
        return;
    }
    let dir = scratch_dir("attribution-pipe", env!("CARGO_TARGET_TMPDIR"));
    let file = zcprof_tests::data_file(&dir, 4 << 20);
    let r = exec_shell(&format!("cat {} | wc -c >/dev/null", file.display()));
    if !classified_or_skip(TEST, &r) {
        return;
    }
    let bytes = |r: &Value, name: &str| {
        paths(r)
            .into_iter()
            .find(|(p, _)| p == name)
            .map_or(0, |(_, b)| b)
    };
    let size = 4 << 20;
    // The loader's reads of ELF headers come on top of the file.
    let loader = 64 << 10;
    let from_cache = bytes(&r, "page cache -> user buffer");
    // wc copies everything out of the pipe, whichever way cat filled it.
    let from_pipe = bytes(&r, "pipe buffer -> user buffer");
    assert_eq!(from_pipe, size, "pipe -> user: {}", r["copies"]);
    if zcprof_tests::calls(&r, "sendfile") + zcprof_tests::calls(&r, "splice") > 0 {
        // busybox's cat (the VMs') moves the file into the pipe in the kernel: no user buffer
        // holds it on the way in.
        assert_eq!(
            bytes(&r, "user buffer -> pipe buffer"),
            0,
            "{}",
            r["copies"]
        );
        assert!(
            from_cache < loader,
            "page cache -> user: {from_cache}: {}",
            r["copies"]
        );
    } else {
        assert_eq!(
            bytes(&r, "user buffer -> pipe buffer"),
            size,
            "{}",
            r["copies"]
        );
        assert!(
            (size..size + loader).contains(&from_cache),
            "page cache -> user: {from_cache}: {}",
            r["copies"]
        );
    }
    let random = dir.join("random.bin");
    let r = exec_shell(&format!(
        "head -c 1048576 /dev/urandom > {}",
        random.display()
    ));
    let from_device = bytes(&r, "device -> user buffer");
    assert!(
        ((1 << 20)..(1 << 20) + (64 << 10)).contains(&from_device),
        "device -> user: {from_device}: {}",
        r["copies"]
    );
    assert!(
        bytes(&r, "page cache -> user buffer") < 64 << 10,
        "{}",
        r["copies"]
    );
}

/// A backend in a network namespace of its own, behind a veth pair whose namespace end has
/// scatter-gather off (the backend's packets are linearised: copied), serving `dir` over HTTP on
/// `ADDR:PORT`. Everything goes when it is dropped: the server, the namespace and its link.
struct Backend {
    ns: String,
    host_if: String,
    server: std::process::Child,
}

impl Backend {
    const PORT: u16 = 18081;

    fn addr() -> String {
        format!("10.213.{}.2", std::process::id() % 250)
    }

    fn start(dir: &Path) -> Result<Backend, String> {
        let id = std::process::id();
        let ns = format!("zcpt-{id}");
        let (host_if, ns_if) = (format!("zcpt{id}h"), format!("zcpt{id}n"));
        let net = format!("10.213.{}", id % 250);
        let sh = |script: &str| -> Result<(), String> {
            let out = Command::new("sh")
                .args(["-ec", script])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{script}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        sh(&format!(
            "ip netns add {ns}
             ip link add {host_if} type veth peer name {ns_if} netns {ns}
             ip addr add {net}.1/30 dev {host_if}
             ip link set {host_if} up
             ip -n {ns} addr add {net}.2/30 dev {ns_if}
             ip -n {ns} link set {ns_if} up
             ip -n {ns} link set lo up
             ip netns exec {ns} ethtool -K {ns_if} sg off"
        ))
        .inspect_err(|_| {
            let _ = sh(&format!(
                "ip netns del {ns} 2>/dev/null; ip link del {host_if} 2>/dev/null; true"
            ));
        })?;
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-m", "http.server"])
            .arg(Self::PORT.to_string())
            .args(["--bind", &format!("{net}.2"), "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let backend = Backend {
            ns,
            host_if,
            server,
        };
        // Ready when it answers (python's start-up takes a moment).
        for _ in 0..100 {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null"])
                .arg(format!("http://{}:{}/", Backend::addr(), Self::PORT))
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(backend);
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err("the backend did not answer within 10 s".to_owned())
    }

    /// Bytes the host end of the veth received (the backend's responses) and sent (the
    /// proxy's requests): the kernel's own counters, not zcprof's.
    fn veth_bytes(&self) -> (u64, u64) {
        let read = |what: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{what}", self.host_if))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        (read("rx_bytes"), read("tx_bytes"))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes its end of the pair, and with it the host end.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

/// haproxy on loopback in front of the backend, splicing or not; killed on drop.
struct Proxy(std::process::Child);

impl Proxy {
    fn start(dir: &Path, port: u16, splice: bool) -> Proxy {
        let config = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(
            &config,
            format!(
                "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout \
                 client 30s\n  timeout server 30s\n{}listen p\n  bind 127.0.0.1:{port}\n  server b \
                 {}:{}\n",
                if splice {
                    "  option splice-response\n  option splice-request\n"
                } else {
                    ""
                },
                Backend::addr(),
                Backend::PORT
            ),
        )
        .expect("the haproxy config");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        Proxy(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The programs the proxy test needs, or the first one missing.
fn proxy_tools() -> Result<(), String> {
    for tool in ["haproxy", "python3", "ethtool", "curl", "ip"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).exists()));
        if !found {
            return Err(format!(
                "{tool} is not installed (cargo xtask test installs it as root)"
            ));
        }
    }
    Ok(())
}

/// Fetches the file through the proxy until `stop`; returns the bytes curl received.
fn clients(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut got = 0;
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "-w", "%{size_download}"])
                .arg(format!("http://127.0.0.1:{port}/data.bin"))
                .output()
                .expect("curl runs");
            got += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
        got
    })
}

/// issue 21, items 1 and 3, on a real server: haproxy in front of a backend whose veth has
/// scatter-gather off was charged the backend's linearised packets (292.76 MiB of "socket
/// buffer -> packet") and the backend's veth; splicing, its payload twice (652 MiB for 330).
/// Checked against the kernel's own counters of the veth.
#[test]
fn a_proxy_is_charged_its_own_packets_and_its_payload_once() {
    const TEST: &str = "a_proxy_is_charged";
    if !privileged(TEST) {
        return;
    }
    if let Err(why) = proxy_tools() {
        skip(TEST, &why);
        return;
    }
    let dir = scratch_dir("attribution-proxy", env!("CARGO_TARGET_TMPDIR"));
    let _ = zcprof_tests::data_file(&dir, 8 << 20);
    let backend = match Backend::start(&dir) {
        Ok(b) => b,
        Err(why) => {
            skip(TEST, &format!("no backend behind a veth here: {why}"));
            return;
        }
    };
    for (port, splice) in [(18090, false), (18091, true)] {
        let proxy = Proxy::start(&dir, port, splice);
        let (rx_before, tx_before) = backend.veth_bytes();
        let stop = Arc::new(AtomicBool::new(false));
        let load = clients(port, Arc::clone(&stop));
        let report = dir.join(format!("haproxy-{port}.json"));
        let out = Command::new(zcprof_bin())
            .args([
                "attach",
                "--pid",
                &proxy.0.id().to_string(),
                "--duration",
                "3s",
            ])
            .args(["--format", "json", "-o"])
            .arg(&report)
            .output()
            .expect("zcprof attach runs");
        stop.store(true, Ordering::Relaxed);
        let delivered = load.join().expect("the clients");
        let (rx, tx) = backend.veth_bytes();
        drop(proxy);
        assert!(
            out.status.success(),
            "attach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value =
            serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
        let (from_backend, to_backend) = (rx - rx_before, tx - tx_before);
        // The kernel's counters: the backend really sent the files over the veth.
        assert!(
            from_backend >= 8 << 20 && delivered >= 8 << 20,
            "{from_backend} {delivered}"
        );
        // haproxy's own packets: requests to the backend (small) and responses to curl on lo.
        let net = |device: &str| -> u64 {
            r["devices"]["net"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["device"] == device)
                .filter_map(|d| d["bytes"].as_u64())
                .sum()
        };
        assert!(
            net(&backend.host_if) <= to_backend + (64 << 10),
            "splice {splice}: haproxy charged {} B on the backend's veth, which carried {to_backend} B \
             of requests: {}",
            net(&backend.host_if),
            r["devices"]
        );
        let segmented: u64 = paths(&r)
            .into_iter()
            .filter(|(p, _)| p.contains("packet") || p.starts_with("page cache -> socket"))
            .map(|(_, b)| b)
            .sum();
        assert!(
            segmented < 64 << 10,
            "splice {splice}: {segmented} B of the backend's segmentation charged: {}",
            r["copies"]
        );
        let sent_to_clients = net("lo");
        assert!(sent_to_clients > 0, "no packet to curl: {}", r["devices"]);
        if splice {
            if zcprof_tests::calls(&r, "splice") == 0 {
                skip(TEST, "haproxy did not splice here");
                continue;
            }
            // Payload once: what it spliced out to clients, not also what it spliced in.
            let moved = fig(&r, "in_kernel_bytes");
            assert!(
                moved <= sent_to_clients + sent_to_clients / 5,
                "in_kernel_bytes {moved} against {sent_to_clients} B sent to clients: {}",
                r["descriptors"]
            );
        }
    }
}
