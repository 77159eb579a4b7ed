//! Privileged tests: load the real eBPF programs, run every method, and assert facts the kernel
//! must show. Without root they skip, saying so on stderr.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use zcprof_tests::{
    calls, catalog_programs, data_file, fig, privileged, run, run_json, scratch_dir, skip,
    zcprof_bin, zcprof_programs_loaded,
};

const SIZE: u64 = 8 << 20;
const BLOCK: u64 = 64 << 10;
const STEPS: u64 = SIZE / BLOCK;

fn measure(method: &str, dir: &Path) -> Value {
    measure_with(method, dir, "warm")
}

fn measure_with(method: &str, dir: &Path, cache: &str) -> Value {
    let dir = dir.to_str().unwrap();
    let r = run_json(&[
        "run",
        "--method",
        method,
        "--size",
        "8M",
        "--block-size",
        "64K",
        "--dir",
        dir,
        "--cache",
        cache,
    ]);
    check_common(&r);
    r
}

/// Bytes read from disk while measuring, when the block tracepoint could be attached here.
fn disk_read(r: &Value) -> Option<u64> {
    r["figures"]["disk_read_bytes"]["value"].as_u64()
}

/// Facts every run must show, whatever the method.
fn check_common(r: &Value) {
    let method = r["method"].as_str().unwrap();
    // The receiver got exactly what was sent, on every stream.
    for got in r["received"].as_array().unwrap() {
        assert_eq!(got.as_u64(), Some(SIZE), "{method}: receiver byte count");
    }
    // Every syscall entered in the window returned, except the final exit_group.
    let entries = fig(r, "syscalls");
    assert_eq!(calls(r, "exit_group"), 1, "{method}: one exit_group");
    let returns = fig(r, "mode_switches") - entries;
    assert_eq!(
        returns,
        entries - 1,
        "{method}: returns = entries - exit_group"
    );
    // The per-syscall counts add up to the entries counted separately.
    let sum: u64 = r["syscalls_by_name"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, entries, "{method}: per-syscall counts add up");
    // Scheduler switches inside the window cannot exceed the kernel's own rusage for the whole
    // process life. (Not strictly fewer: under emulation the child may find the go byte already
    // there and never sleep before the window.)
    let vol = fig(r, "context_switches_voluntary");
    let invol = fig(r, "context_switches_involuntary");
    let usage = &r["process_rusage"];
    assert!(
        vol <= usage["voluntary_switches"].as_u64().unwrap(),
        "{method}: voluntary {vol} vs rusage {usage}"
    );
    assert!(
        invol <= usage["involuntary_switches"].as_u64().unwrap(),
        "{method}: involuntary {invol} vs rusage {usage}"
    );
    assert!(r["elapsed_ns"].as_u64().unwrap() > 0, "{method}: elapsed");
    assert_eq!(r["transfers"].as_u64(), Some(STEPS));
    for (key, f) in r["figures"].as_object().unwrap() {
        assert!(
            f["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{method}: {key} has no source"
        );
        if f["value"].is_null() {
            assert!(
                f["note"].as_str().is_some_and(|s| !s.is_empty()),
                "{method}: {key} null without a reason"
            );
        }
    }
}

#[test]
fn read_write_copies_every_byte_through_a_user_buffer_twice() {
    if !privileged("read_write") {
        return;
    }
    let dir = scratch_dir("rw", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("read-write", &dir);
    assert!(
        calls(&r, "read") >= STEPS && calls(&r, "write") >= STEPS,
        "{}",
        r["syscalls_by_name"]
    );
    assert_eq!(fig(&r, "cpu_copy_to_user_bytes"), SIZE);
    assert_eq!(fig(&r, "cpu_copy_from_user_bytes"), SIZE);
    assert_eq!(fig(&r, "cpu_copy_bytes"), 2 * SIZE);
    let read = r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "read")
        .unwrap();
    assert!(
        read["total_ns"].as_u64().unwrap() > 0,
        "time in read was measured"
    );
}

#[test]
fn direct_io_reads_bypass_the_page_cache_copy() {
    if !privileged("direct_io") {
        return;
    }
    let dir = scratch_dir("dio", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("direct-io", &dir);
    assert!(calls(&r, "read") >= STEPS);
    if r["file"]["block_device"].as_bool().unwrap() {
        assert_eq!(
            fig(&r, "cpu_copy_to_user_bytes"),
            0,
            "O_DIRECT from a disk is DMA, not a CPU copy"
        );
    } else {
        assert_eq!(fig(&r, "cpu_copy_to_user_bytes"), SIZE);
    }
    assert_eq!(fig(&r, "cpu_copy_from_user_bytes"), SIZE);
    // O_DIRECT bypasses the page cache, so even a warm file comes from the disk again.
    if r["file"]["block_device"].as_bool().unwrap() {
        let read = disk_read(&r).expect("block_rq_issue attaches on this kernel");
        assert!(
            read >= SIZE,
            "disk read {read} for an O_DIRECT transfer of {SIZE}"
        );
    }
}

#[test]
fn cold_cache_makes_the_disk_deliver_the_file() {
    if !privileged("cold_cache") {
        return;
    }
    let dir = scratch_dir("cold", env!("CARGO_TARGET_TMPDIR"));
    let r = measure_with("sendfile", &dir, "cold");
    assert_eq!(r["file"]["cache"], "cold");
    if !r["file"]["block_device"].as_bool().unwrap() {
        skip(
            "cold_cache disk check",
            &format!("{} has no block device", r["file"]["filesystem"]),
        );
        return;
    }
    let read = disk_read(&r).expect("block_rq_issue attaches on this kernel");
    // Readahead may read a little past the end, never less than the file.
    assert!(
        read >= SIZE,
        "cold sendfile read {read} bytes from disk for {SIZE}"
    );
}

#[test]
fn loopback_is_a_virtual_device_without_dma() {
    if !privileged("loopback") {
        return;
    }
    let dir = scratch_dir("lo", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("read-write", &dir);
    let net = r["devices"]["net"].as_array().unwrap();
    let lo = net
        .iter()
        .find(|n| n["device"] == "lo")
        .unwrap_or_else(|| panic!("no transmit on lo: {net:?}"));
    assert_eq!(lo["physical"], false);
    assert!(lo["bytes"].as_u64().unwrap() > 0);
    assert_eq!(fig(&r, "nic_dma_bytes"), 0);
}

#[test]
fn mmap_write_copies_once() {
    if !privileged("mmap_write") {
        return;
    }
    let dir = scratch_dir("mmap", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("mmap-write", &dir);
    assert_eq!(calls(&r, "mmap"), 1);
    assert_eq!(calls(&r, "read"), 0);
    assert!(calls(&r, "write") >= STEPS);
    assert_eq!(fig(&r, "cpu_copy_to_user_bytes"), 0);
    assert_eq!(fig(&r, "cpu_copy_from_user_bytes"), SIZE);
    // write() copies from pages that are not mapped yet: the kernel faults them in itself.
    assert!(
        fig(&r, "page_faults_kernel") > 0,
        "kernel-mode faults while copying from the mapping"
    );
}

#[test]
fn sendfile_moves_the_payload_without_user_buffers() {
    if !privileged("sendfile") {
        return;
    }
    let dir = scratch_dir("sendfile", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("sendfile", &dir);
    assert!(calls(&r, "sendfile") >= STEPS);
    assert_eq!(
        calls(&r, "read") + calls(&r, "write"),
        0,
        "{}",
        r["syscalls_by_name"]
    );
    assert_eq!(fig(&r, "cpu_copy_bytes"), 0);
    assert_eq!(fig(&r, "in_kernel_bytes"), SIZE);
}

#[test]
fn splice_makes_two_calls_per_step_and_no_user_copies() {
    if !privileged("splice") {
        return;
    }
    let dir = scratch_dir("splice", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("splice", &dir);
    let splices = calls(&r, "splice");
    assert!(
        splices >= 2 * STEPS,
        "{splices} splice calls for {STEPS} steps"
    );
    assert_eq!(fig(&r, "cpu_copy_bytes"), 0);
    // Every byte crosses the pipe twice, file -> pipe and pipe -> socket, and is payload once,
    // where it leaves: where splice's output could be classified, the splices into the pipe are
    // not counted again (issue 21, item 3); elsewhere both crossings are.
    let once = r["descriptors"]["classified"] == true;
    assert_eq!(
        fig(&r, "in_kernel_bytes"),
        if once { SIZE } else { 2 * SIZE },
        "{}",
        r["descriptors"]
    );
    if once {
        assert_eq!(r["descriptors"]["spliced_into"]["pipe"], SIZE);
        assert_eq!(r["descriptors"]["spliced_into"]["socket"], SIZE);
    }
}

#[test]
fn tee_duplicates_each_step_once() {
    if !privileged("tee") {
        return;
    }
    let dir = scratch_dir("tee", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("tee", &dir);
    assert_eq!(calls(&r, "tee"), STEPS);
    assert!(calls(&r, "splice") >= 3 * STEPS);
    assert_eq!(r["received"].as_array().unwrap().len(), 2, "two consumers");
    assert_eq!(fig(&r, "cpu_copy_bytes"), 0);
}

#[test]
fn compare_runs_every_method() {
    if !privileged("compare") {
        return;
    }
    let dir = scratch_dir("compare", env!("CARGO_TARGET_TMPDIR"));
    let pictures = scratch_dir("compare-svg", env!("CARGO_TARGET_TMPDIR"));
    let svg = pictures.join("paths.svg");
    let d = run_json(&[
        "compare",
        "--size",
        "4M",
        "--block-size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    check_picture(
        &d,
        &std::fs::read_to_string(&svg).expect("the SVG was written"),
    );
    let _ = std::fs::remove_dir_all(&pictures);
    let methods: Vec<_> = d["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "read-write",
            "direct-io",
            "mmap-write",
            "sendfile",
            "splice",
            "tee"
        ]
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the temporary file is removed"
    );
    assert!(
        programs_left().is_empty(),
        "programs detached after the run"
    );
}

/// The `--svg` picture of a compare: one lane per run, each with the stations, and one CPU-copy
/// arrow per path of the run's copy ledger, labelled with its measured blocks per step; a run
/// whose ledger holds no copy (sendfile over loopback) has no CPU-copy arrow.
fn check_picture(d: &Value, svg: &str) {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let has_class = |n: &roxmltree::Node, c: &str| {
        n.attribute("class")
            .is_some_and(|v| v.split(' ').any(|w| w == c))
    };
    let lanes: Vec<_> = doc.descendants().filter(|n| has_class(n, "lane")).collect();
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(lanes.len(), runs.len());
    let mut without_copies = 0;
    for (lane, r) in lanes.iter().zip(runs) {
        let method = r["method"].as_str().unwrap();
        assert_eq!(lane.attribute("data-row"), Some(method));
        let stations = lane
            .descendants()
            .filter(|n| has_class(n, "station"))
            .count();
        assert!(stations >= 7, "{method}: {stations} stations");
        let arrows: Vec<(String, String)> = lane
            .descendants()
            .filter(|n| has_class(n, "cpu-copy"))
            .filter(|n| !n.attribute("data-path").unwrap().contains("receiver"))
            .map(|n| {
                let text = n.descendants().filter_map(|t| t.text()).collect::<String>();
                (n.attribute("data-path").unwrap().to_owned(), text)
            })
            .collect();
        let block = r["block_size"].as_f64().unwrap();
        let copies: Vec<&Value> = r["copies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["bytes"].as_u64().unwrap() > 0 && c["contradicted"] == false)
            .collect();
        assert_eq!(arrows.len(), copies.len(), "{method}: {arrows:?}");
        for c in &copies {
            let path = c["path"].as_str().unwrap();
            let blocks = format!("{:.2}", c["per_transfer"].as_f64().unwrap() / block);
            assert!(
                arrows
                    .iter()
                    .any(|(p, text)| p == path && text.contains(&blocks)),
                "{method}: no arrow for {path} with {blocks}: {arrows:?}"
            );
        }
        if copies.is_empty() {
            without_copies += 1;
        }
        let dma = lane.descendants().filter(|n| has_class(n, "dma")).count();
        assert_eq!(dma, 2, "{method}: the disk's and the device's DMA");
    }
    assert!(without_copies > 0, "sendfile over loopback copies nothing");
}

#[test]
fn unwritable_dir_is_one_line() {
    if !privileged("unwritable_dir") {
        return;
    }
    let out = run(&[
        "run", "--method", "sendfile", "--size", "1M", "--dir", "/proc",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot write a temporary file in /proc"),
        "{err}"
    );
}

/// Children of every thread of `pid` (the transfer process is spawned from a worker thread).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The kernel frees a program after its last reference goes, in deferred work: wait a bounded
/// while for that, then report what is still there.
fn programs_left() -> Vec<String> {
    for _ in 0..500 {
        let left = zcprof_programs_loaded(&catalog_programs());
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    zcprof_programs_loaded(&catalog_programs())
}

/// Kills zcprof if the test fails midway, so one failure does not leave programs for the next.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether process `pid` holds a descriptor of a file in `dir` (the generated file has no name,
/// so it shows only there, as `DIR/#INODE (deleted)`).
fn holds_file_in(pid: u32, dir: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)))
    })
}

/// Sends `signal` to zcprof at `stage` (once `wait_for` holds) and checks that nothing is left:
/// no file in --dir, no transfer process, no program. SIGINT, SIGTERM and SIGHUP end it cleanly
/// with one line; SIGKILL ends it at once, and the kernel must still free everything.
fn interrupt_during(
    stage: &str,
    signal: nix::sys::signal::Signal,
    wait_for: impl Fn(u32, &Path) -> bool,
) {
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt as _;
    let dir = scratch_dir(
        &format!("sig-{stage}-{signal}"),
        env!("CARGO_TARGET_TMPDIR"),
    );
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "read-write",
            "--size",
            "1G",
            "--block-size",
            "4K",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let pid = guard.0.id();
    while !wait_for(pid, &dir) {
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "zcprof ended before the {stage} stage"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let workers = children_of(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        signal,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    if signal == Signal::SIGKILL {
        assert_eq!(status.signal(), Some(9), "{stage}: {status:?}");
    } else {
        assert_eq!(
            status.code(),
            Some(128 + signal as i32),
            "{stage} {signal}: exit status; stderr: {err}"
        );
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "{stage} {signal}: temporary file removed"
    );
    // A killed parent's transfer process dies with it (PR_SET_PDEATHSIG): give the kernel a
    // moment to deliver that.
    for w in workers {
        for _ in 0..200 {
            if !alive(w) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !alive(w),
            "{stage} {signal}: transfer process {w} still alive"
        );
    }
    assert!(
        programs_left().is_empty(),
        "{stage} {signal}: programs still loaded"
    );
}

const SIGNALS: [nix::sys::signal::Signal; 4] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGKILL,
];

#[test]
fn a_signal_while_writing_the_file_leaves_nothing() {
    if !privileged("signal_file") {
        return;
    }
    for signal in SIGNALS {
        interrupt_during("file", signal, holds_file_in);
    }
}

#[test]
fn a_signal_during_the_transfer_leaves_nothing() {
    if !privileged("signal_transfer") {
        return;
    }
    // Wait until the probes are really attached, which also proves the leftover check can see
    // zcprof's programs at all.
    for signal in SIGNALS {
        interrupt_during("transfer", signal, |pid, _| {
            !children_of(pid).is_empty() && !zcprof_programs_loaded(&catalog_programs()).is_empty()
        });
    }
}

#[test]
fn doctor_tries_every_hook_and_explains_refusals() {
    if !privileged("doctor") {
        return;
    }
    let out = run(&["doctor", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in d["points"].as_array().unwrap() {
        if p["required"] == true {
            assert!(!p["chosen"].is_null(), "required point without a hook: {p}");
        }
        for c in p["checks"].as_array().unwrap() {
            // Every refusal carries a reason; every success none.
            assert_eq!(c["works"] == false, c["reason"].is_string(), "{c}");
        }
        // The chosen hook is the first that works, in order of preference.
        let first = p["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["works"] == true)
            .map(|c| c["hook"].clone());
        assert_eq!(p["chosen"], first.unwrap_or(Value::Null));
    }
    // The page-cache probe point is tried with fentry and kprobe.
    let filemap = d["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["point"] == "filemap_read")
        .unwrap();
    let hooks: Vec<_> = filemap["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hook"].as_str().unwrap())
        .collect();
    // filemap_read, then its 5.10 name generic_file_buffered_read, each with both.
    assert_eq!(hooks, ["fexit", "kretprobe", "fexit", "kretprobe"]);
    if d["kernel"]["kprobes"] == false {
        let kprobe = &filemap["checks"][1];
        assert!(
            kprobe["reason"]
                .as_str()
                .unwrap()
                .contains("without kprobes"),
            "{kprobe}"
        );
    }
    assert!(programs_left().is_empty(), "doctor detaches everything");
}

/// The hooked copy tier, where the kernel allows fexit or kretprobe. The VM runner sets
/// `ZCPROF_EXPECT_HOOKED=1` on kernels where it must be there.
fn hooked(r: &Value, key: &str) -> Option<u64> {
    let value = r["figures"][key]["value"].as_u64();
    // filemap_read is ftrace-traceable on the matrix's kernels; the iov_iter copy routines are
    // not on all of them (Debian 6.1 refuses both fexit and kretprobe there).
    if value.is_none()
        && matches!(key, "filemap_read_bytes" | "page_cache_to_user_bytes")
        && std::env::var_os("ZCPROF_EXPECT_HOOKED").is_some()
    {
        panic!(
            "{key} must be hooked on this kernel: {}",
            r["figures"][key]["note"]
        );
    }
    value
}

#[test]
fn hooked_copy_routines_count_the_page_cache_copy() {
    if !privileged("hooked_copies") {
        return;
    }
    let dir = scratch_dir("hooked", env!("CARGO_TARGET_TMPDIR"));
    let rw = measure("read-write", &dir);
    let Some(from_cache) = hooked(&rw, "page_cache_to_user_bytes") else {
        skip(
            "hooked copy checks",
            &rw["figures"]["filemap_read_bytes"]["note"].to_string(),
        );
        return;
    };
    let hook = rw["hooks"]["filemap_read"].as_str().unwrap();
    assert!(
        hook.starts_with("fexit") || hook.starts_with("kretprobe"),
        "{hook}"
    );
    // read() returned exactly SIZE bytes, all of them copied from the page cache.
    assert_eq!(from_cache, SIZE, "filemap_read bytes for read-write");
    if let Some(from_user) = hooked(&rw, "copy_from_iter_bytes") {
        assert!(
            from_user >= SIZE,
            "write() copied {from_user} of {SIZE} bytes from user memory"
        );
    }
    // sendfile reads the page cache by splice, never through filemap_read's copy.
    let sf = measure("sendfile", &dir);
    assert_eq!(
        hooked(&sf, "page_cache_to_user_bytes"),
        Some(0),
        "sendfile copies nothing to user memory"
    );
    if let Some(to_user) = hooked(&sf, "copy_to_iter_bytes") {
        assert!(
            to_user < SIZE / 10,
            "sendfile: {to_user} bytes through _copy_to_iter"
        );
    }
}

#[test]
fn sampling_sees_copies_in_read_write_and_none_in_sendfile() {
    if !privileged("sampled_copies") {
        return;
    }
    let dir = scratch_dir("sampled", env!("CARGO_TARGET_TMPDIR"));
    let args = |m: &'static str| {
        [
            "run",
            "--method",
            m,
            "--size",
            "64M",
            "--dir",
            dir.to_str().unwrap(),
        ]
    };
    let rw = run_json(&args("read-write"));
    let sf = run_json(&args("sendfile"));
    let share = |r: &Value| r["figures"]["copy_cpu_share"]["value"].as_f64();
    let (Some(rw_share), Some(sf_share)) = (share(&rw), share(&sf)) else {
        skip(
            "sampled copy checks",
            &rw["figures"]["copy_cpu_share"]["note"].to_string(),
        );
        return;
    };
    // read-write copies every byte twice through the CPU; sendfile over loopback (a device with
    // scatter-gather) hands page references to the socket.
    assert!(
        rw_share > 0.10,
        "read-write copy share {rw_share}: {}",
        rw["figures"]["copy_cpu_share"]["note"]
    );
    assert!(
        sf_share < rw_share / 2.0,
        "sendfile {sf_share} vs read-write {rw_share}"
    );
    let note = rw["figures"]["copy_cpu_share"]["note"].as_str().unwrap();
    assert!(
        // filemap_read is generic_file_buffered_read before 5.11.
        note.contains("filemap_read")
            || note.contains("generic_file_buffered_read")
            || note.contains("tcp_sendmsg"),
        "{note}"
    );
}

#[test]
fn the_socket_copies_what_write_hands_it_and_not_what_sendfile_does() {
    if !privileged("socket_copies") {
        return;
    }
    let dir = scratch_dir("socket", env!("CARGO_TARGET_TMPDIR"));
    let rw = measure("read-write", &dir);
    let Some(copied) = rw["figures"]["socket_copy_bytes"]["value"].as_u64() else {
        skip(
            "socket copy checks",
            &rw["figures"]["socket_copy_bytes"]["note"].to_string(),
        );
        return;
    };
    // Every byte write() handed to the TCP socket was copied into its buffers.
    assert_eq!(copied, SIZE, "{}", rw["hooks"]["sock_send"]);
    let sf = measure("sendfile", &dir);
    assert_eq!(
        sf["figures"]["socket_copy_bytes"]["value"].as_u64(),
        Some(0),
        "sendfile copies nothing from user memory"
    );
}

fn exec_json(args: &[&str]) -> (Value, Option<i32>) {
    let mut all = vec!["exec", "--format", "json"];
    all.extend(args);
    let out = run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "zcprof {all:?}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

#[test]
fn exec_counts_what_strace_counts() {
    if !privileged("exec_dd") {
        return;
    }
    let dir = scratch_dir("exec-dd", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    let input = format!("if={}", file.display());
    let dd = ["dd", input.as_str(), "of=/dev/null", "bs=64k"];
    let mut args = vec!["--"];
    args.extend(dd);
    let (r, code) = exec_json(&args);
    assert_eq!(code, Some(0));
    assert_eq!(r["kind"], "program");
    let (reads, writes) = (calls(&r, "read"), calls(&r, "write"));
    assert!(
        reads >= STEPS && writes >= STEPS,
        "{}",
        r["syscalls_by_name"]
    );
    // The file, plus dd's few-line summary on stderr.
    let written = fig(&r, "cpu_copy_from_user_bytes");
    assert!(
        (SIZE..SIZE + 4096).contains(&written),
        "dd wrote {written} bytes"
    );
    let strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(dir.join("strace.txt"))
        .args(dd)
        .output();
    let Ok(out) = strace else {
        skip("exec_dd strace comparison", "strace is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(dir.join("strace.txt")).unwrap();
    let strace_calls = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        reads,
        strace_calls("read"),
        "read calls, zcprof vs strace -c -f"
    );
    assert_eq!(
        writes,
        strace_calls("write"),
        "write calls, zcprof vs strace -c -f"
    );
}

/// The `syscalls` row of `name`.
fn syscall_row<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} row: {}", r["syscalls"]))
}

#[test]
fn syscall_time_is_sampled_unless_every_call_is_timed() {
    if !privileged("syscall_timing") {
        return;
    }
    let dir = scratch_dir("timing", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    let input = format!("if={}", file.display());
    // 2048 reads and 2048 writes of 4 KiB.
    let dd = ["--", "dd", input.as_str(), "of=/dev/null", "bs=4k"];
    let (sampled, code) = exec_json(&dd);
    assert_eq!(code, Some(0));
    let read = syscall_row(&sampled, "read");
    let (count, timed) = (
        read["count"].as_u64().unwrap(),
        read["timed"].as_u64().unwrap(),
    );
    assert!(count >= STEPS * 16, "{read}");
    // One in 16 at random plus the first 256 per CPU (at most 608 of 2048 on two CPUs): far
    // from both ends.
    assert!(
        (256..count * 3 / 4).contains(&timed),
        "{timed} of {count} reads timed"
    );
    assert!(read["total_ns"].as_u64().unwrap() > 0, "{read}");
    assert!(
        sampled["syscall_timing"]
            .as_str()
            .unwrap()
            .contains("1 call in 16"),
        "{}",
        sampled["syscall_timing"]
    );
    let mut every = vec!["--time-every", "1"];
    every.extend(dd);
    let (all, code) = exec_json(&every);
    assert_eq!(code, Some(0));
    let read = syscall_row(&all, "read");
    assert_eq!(read["timed"], read["count"], "every read timed: {read}");
    // dd has one thread: its syscalls' times cannot add up to more than the window from its
    // first syscall entry to its last event, both taken from the same kernel clock.
    let in_syscalls: u64 = all["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["total_ns"].as_u64().unwrap())
        .sum();
    let window = all["elapsed_ns"].as_u64().unwrap();
    assert!(
        in_syscalls > 0 && in_syscalls <= window,
        "{in_syscalls} ns in syscalls, window {window} ns"
    );
    assert!(
        all["syscall_timing"]
            .as_str()
            .unwrap()
            .starts_with("every call"),
        "{}",
        all["syscall_timing"]
    );
}

#[test]
fn exec_cp_shows_how_the_installed_cp_copies() {
    if !privileged("exec_cp") {
        return;
    }
    let dir = scratch_dir("exec-cp", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    let copy = dir.join("copy.bin");
    let (r, code) = exec_json(&["--", "cp", file.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());
    let moved_in_kernel = fig(&r, "in_kernel_bytes");
    if calls(&r, "copy_file_range") > 0 {
        // The file never passes through user memory; cp reads only its own small files.
        assert_eq!(moved_in_kernel, SIZE, "{}", r["syscalls_by_name"]);
        // Kernel-internal copies (page cache -> page cache on ext4) are the copy ledger's; see
        // tests/ledger.rs.
        let copied = fig(&r, "user_buffer_copy_bytes");
        assert!(
            copied < SIZE / 100,
            "cp copied {copied} bytes through user buffers"
        );
    } else {
        skip(
            "exec_cp copy_file_range check",
            &format!("this cp copies with {}", r["syscalls_by_name"]),
        );
        assert!(fig(&r, "cpu_copy_bytes") >= 2 * SIZE || moved_in_kernel >= SIZE);
    }
}

#[test]
fn exec_follows_forks_unless_told_not_to() {
    if !privileged("exec_follow") {
        return;
    }
    let dir = scratch_dir("exec-follow", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    // "; true" makes the shell fork dd instead of exec'ing it.
    let script = format!(
        "dd if={} of=/dev/null bs=64k 2>/dev/null; true",
        file.display()
    );
    let (followed, code) = exec_json(&["--", "sh", "-c", &script]);
    assert_eq!(code, Some(0));
    assert!(
        calls(&followed, "read") >= STEPS,
        "dd's reads are followed: {}",
        followed["syscalls_by_name"]
    );
    let (alone, _) = exec_json(&["--no-follow", "--", "sh", "-c", &script]);
    assert!(
        calls(&alone, "read") < STEPS,
        "only the shell is measured: {}",
        alone["syscalls_by_name"]
    );
    // The shell forked in both runs; the fork counter and wait4 agree on one child at least.
    assert!(
        calls(&alone, "wait4") >= 1 || calls(&alone, "waitid") >= 1,
        "{}",
        alone["syscalls_by_name"]
    );
}

#[test]
fn exec_exits_with_the_commands_status() {
    if !privileged("exec_status") {
        return;
    }
    let out = run(&["exec", "--format", "json", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = run(&["exec", "--", "zcprof-no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("command not found"), "{err}");
}

#[test]
fn attach_measures_a_running_process_and_leaves_it_running() {
    if !privileged("attach") {
        return;
    }
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=4k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = dd.id().to_string();
    let out = run(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "1s",
        "--format",
        "json",
    ]);
    let still_running = dd.try_wait().unwrap().is_none();
    let _ = dd.kill();
    let _ = dd.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        still_running,
        "attach must not stop the process it measures"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["method"], format!("pid {pid}"));
    assert!(
        calls(&r, "read") > 0 && calls(&r, "write") > 0,
        "{}",
        r["syscalls_by_name"]
    );
    // dd copies /dev/zero to /dev/null through its buffer: read and write bytes match closely.
    let to_user = fig(&r, "cpu_copy_to_user_bytes");
    let from_user = fig(&r, "cpu_copy_from_user_bytes");
    assert!(
        to_user.abs_diff(from_user) <= 4096,
        "{to_user} vs {from_user}"
    );
    assert!(programs_left().is_empty(), "attach detaches everything");

    let out = run(&["attach", "--pid", "999999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process with PID 999999999"));
}

/// Waits (bounded) until zcprof's programs are attached, so a signal lands while measuring.
fn wait_attached(zcprof: &mut std::process::Child) {
    for _ in 0..2000 {
        if !zcprof_programs_loaded(&catalog_programs()).is_empty() {
            return;
        }
        assert!(
            zcprof.try_wait().unwrap().is_none(),
            "zcprof ended before attaching"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("zcprof never attached");
}

fn sigint(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

#[test]
fn ctrl_c_during_exec_prints_the_summary_and_stops_the_command() {
    if !privileged("ctrl_c_exec") {
        return;
    }
    let zcprof = Command::new(zcprof_bin())
        .args(["exec", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(zcprof);
    wait_attached(&mut guard.0);
    // Released and running: the child has exec'd sleep and sleeps in it.
    let sleeping = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(sleep) S"))
    };
    for _ in 0..2000 {
        if children_of(guard.0.id()).into_iter().any(sleeping) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let command = children_of(guard.0.id());
    assert!(command.iter().copied().any(sleeping), "sleep never started");
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("nanosleep") || err.contains("clock_nanosleep"),
        "the summary so far: {err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .contains("interrupted"),
        "{err}"
    );
    for pid in command {
        assert!(!alive(pid), "the command {pid} is gone");
    }
    assert!(programs_left().is_empty(), "programs detached");
}

#[test]
fn ctrl_c_during_attach_prints_the_summary_and_leaves_the_process() {
    if !privileged("ctrl_c_attach") {
        return;
    }
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let zcprof = Command::new(zcprof_bin())
        .args(["attach", "--pid", &target.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(zcprof);
    wait_attached(&mut guard.0);
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    let untouched = target.try_wait().unwrap().is_none();
    let _ = target.kill();
    let _ = target.wait();
    assert!(status.success(), "Ctrl-C ends an attach normally: {err}");
    assert!(err.contains("pid "), "the summary: {err}");
    assert!(untouched, "the attached process keeps running");
    assert!(programs_left().is_empty(), "programs detached");
}

/// What Kafka and Netty do for zero-copy: FileChannel.transferTo to a socket.
const JAVA_SENDER: &str = r"
import java.io.InputStream;
import java.net.*;
import java.nio.channels.*;
import java.nio.file.*;

public class TransferTo {
    public static void main(String[] args) throws Exception {
        Path file = Paths.get(args[0]);
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Thread drain = new Thread(() -> {
                try (Socket s = server.accept(); InputStream in = s.getInputStream()) {
                    byte[] buf = new byte[1 << 16];
                    while (in.read(buf) >= 0) { }
                } catch (Exception e) { throw new RuntimeException(e); }
            });
            drain.start();
            try (FileChannel ch = FileChannel.open(file);
                 SocketChannel out = SocketChannel.open(server.getLocalSocketAddress())) {
                long sent = 0, size = ch.size();
                while (sent < size) sent += ch.transferTo(sent, size - sent, out);
            }
            drain.join();
        }
    }
}
";

#[test]
fn java_transfer_to_uses_sendfile() {
    if !privileged("java_transfer_to") {
        return;
    }
    if Command::new("javac").arg("-version").output().is_err() {
        skip("java_transfer_to", "no JDK (javac) on this machine");
        return;
    }
    let dir = scratch_dir("java", env!("CARGO_TARGET_TMPDIR"));
    let file = data_file(&dir, SIZE);
    std::fs::write(dir.join("TransferTo.java"), JAVA_SENDER).unwrap();
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(dir.join("TransferTo.java"))
        .output()
        .unwrap();
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let (r, code) = exec_json(&[
        "--",
        "java",
        "-cp",
        dir.to_str().unwrap(),
        "TransferTo",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{}", r["syscalls_by_name"]);
    // The JVM's transferTo is sendfile underneath: the file never enters the Java heap.
    assert!(calls(&r, "sendfile") >= 1, "{}", r["syscalls_by_name"]);
    let sendfile_bytes = r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sendfile")
        .unwrap()["bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(sendfile_bytes, SIZE, "sendfile moved the whole file");
}

/// Stops an nginx master the way nginx wants (SIGTERM: it stops its workers, then exits), so
/// no worker outlives the test, whether it passes or panics.
struct StopNginx(std::process::Child);

impl Drop for StopNginx {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Serves a 16 MiB file from an nginx of the test's own (loopback port, private prefix), with
/// `sendfile` on or off, and measures its worker by PID while curl fetches the file.
fn nginx_serving(sendfile: bool) -> Option<Value> {
    if Command::new("nginx").arg("-v").output().is_err() {
        skip(
            "nginx tests",
            "nginx is not installed (cargo xtask test installs it as root)",
        );
        return None;
    }
    let dir = scratch_dir(
        if sendfile { "nginx-on" } else { "nginx-off" },
        env!("CARGO_TARGET_TMPDIR"),
    );
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let size = 16 << 20;
    std::fs::write(www.join("file.bin"), vec![7u8; size]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off; sendfile {}; tcp_nopush off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }}
}}
",
        if sendfile { "on" } else { "off" }
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let master = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let master = StopNginx(master);
    let mut worker = None;
    for _ in 0..2000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && let Some(&w) = children_of(master.0.id()).first()
        {
            worker = Some(w);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let worker = worker.expect("nginx started a worker");
    let zcprof = Command::new(zcprof_bin())
        .args(["attach", "--pid", &worker.to_string(), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut zcprof = KillOnDrop(zcprof);
    wait_attached(&mut zcprof.0);
    // A moment for the last program to attach after the first is seen.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("http://127.0.0.1:{port}/file.bin"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        size.to_string(),
        "curl got the whole file"
    );
    sigint(&zcprof.0);
    let status = zcprof.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(zcprof.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success());
    Some(serde_json::from_str(&out).unwrap())
}

#[test]
fn nginx_with_sendfile_on_moves_the_file_without_user_copies() {
    if !privileged("nginx_sendfile_on") {
        return;
    }
    let Some(r) = nginx_serving(true) else { return };
    assert!(calls(&r, "sendfile") >= 1, "{}", r["syscalls_by_name"]);
    assert!(
        fig(&r, "in_kernel_bytes") >= 16 << 20,
        "{}",
        r["figures"]["in_kernel_bytes"]
    );
    // Only the request and the response headers pass through user buffers.
    assert!(
        fig(&r, "cpu_copy_bytes") < 64 << 10,
        "{}",
        r["figures"]["cpu_copy_bytes"]
    );
}

#[test]
fn nginx_with_sendfile_off_reads_the_file_into_user_space() {
    if !privileged("nginx_sendfile_off") {
        return;
    }
    let Some(r) = nginx_serving(false) else {
        return;
    };
    assert_eq!(calls(&r, "sendfile"), 0, "{}", r["syscalls_by_name"]);
    assert!(
        fig(&r, "cpu_copy_to_user_bytes") >= 16 << 20,
        "read into user space: {}",
        r["syscalls_by_name"]
    );
    assert!(
        fig(&r, "cpu_copy_from_user_bytes") >= 16 << 20,
        "written out of user space"
    );
}

#[test]
fn attach_with_an_interval_shows_the_table_while_measuring() {
    if !privileged("attach_interval") {
        return;
    }
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=4k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = run(&[
        "attach",
        "--pid",
        &dd.id().to_string(),
        "--duration",
        "1s",
        "--interval",
        "200ms",
        "--format",
        "json",
    ]);
    let _ = dd.kill();
    let _ = dd.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = String::from_utf8_lossy(&out.stderr);
    // At least one refresh happens inside a one-second attach at 200 ms; each shows the cost row.
    assert!(live.lines().any(|l| l.starts_with("--- ")), "{live}");
    assert!(live.contains(&format!("pid {}", dd.id())), "{live}");
    // The final report is the usual JSON on stdout.
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(calls(&r, "read") > 0);
}

// ---- --net veth: a veth pair into a private network namespace, and nothing left after it ----

/// Whether `ip` (iproute2) is there for `--net veth`; says why not on stderr.
fn veth_possible(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ip").is_file()));
    if !found {
        skip(test, "--net veth needs iproute2's ip in PATH");
    }
    found
}

/// Interfaces of this namespace whose names start with `zcp` (`ip -o link`: "N: name@peer: ...").
fn zcp_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .filter(|n| n.starts_with("zcp"))
        .collect()
}

/// The `zcp` links left by the zcprof of `pid`, or by any zcprof that is gone. Links of another
/// zcprof that still runs (a concurrent test elsewhere) are its own business.
fn leftover_links(pid: u32) -> Vec<String> {
    zcp_links()
        .into_iter()
        .filter(|name| {
            let owner: Option<u32> = name
                .strip_prefix("zcp")
                .and_then(|n| n.strip_suffix(['s', 'p']))
                .and_then(|n| n.parse().ok());
            owner.is_none_or(|o| o == pid || !alive(o))
        })
        .collect()
}

/// Polls up to five seconds for the kernel to free a dead zcprof's namespace and its links.
fn links_left_after(pid: u32) -> Vec<String> {
    for _ in 0..500 {
        if leftover_links(pid).is_empty() {
            return Vec::new();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    leftover_links(pid)
}

/// Live processes whose command line contains `needle` (zombies excluded).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && alive(pid)
        })
        .collect()
}

/// Runs `sendfile --net veth --sg STATE` and returns zcprof's pid and its JSON report.
fn sendfile_over_veth(sg: &str, dir: &Path) -> (u32, Value) {
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "sendfile",
            "--net",
            "veth",
            "--sg",
            sg,
            "--size",
            "8M",
            "--block-size",
            "64K",
            "--format",
            "json",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "--sg {sg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        pid,
        serde_json::from_slice(&out.stdout).expect("valid JSON"),
    )
}

#[test]
fn sendfile_over_veth_with_and_without_scatter_gather_leaves_nothing() {
    if !veth_possible("veth_sg") {
        return;
    }
    let dir = scratch_dir("veth-sg", env!("CARGO_TARGET_TMPDIR"));
    for (sg, on) in [("off", false), ("on", true)] {
        let (pid, r) = sendfile_over_veth(sg, &dir);
        let net = &r["net"];
        assert_eq!(net["kind"], "veth", "{net}");
        assert_eq!(net["device"], format!("zcp{pid}s"), "{net}");
        assert_eq!(
            net["scatter_gather"].as_bool(),
            Some(on),
            "--sg {sg} read back: {net}"
        );
        let receiver = net["receiver"].as_str().unwrap();
        assert!(receiver.starts_with("10."), "a private address: {receiver}");
        assert_eq!(
            r["received"],
            serde_json::json!([SIZE]),
            "every byte arrived"
        );
        assert_eq!(r["bytes"].as_u64(), Some(SIZE));
        assert!(
            leftover_links(pid).is_empty(),
            "--sg {sg}: links left: {:?}",
            leftover_links(pid)
        );
        let ip = receiver.split(':').next().unwrap();
        assert!(
            processes_mentioning(&format!("--addr {ip} ")).is_empty(),
            "--sg {sg}: a transfer process to {ip} is still alive"
        );
        assert!(
            processes_mentioning(&format!("zcp{pid}")).is_empty(),
            "--sg {sg}: an ip command for zcp{pid} is still alive"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "temporary file removed"
        );
    }
    assert!(programs_left().is_empty(), "programs detached");
}

#[test]
fn loopback_runs_say_so() {
    if !privileged("loopback_net") {
        return;
    }
    let dir = scratch_dir("loopback-net", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("sendfile", &dir);
    let net = &r["net"];
    assert_eq!(
        (net["kind"].as_str(), net["device"].as_str()),
        (Some("loopback"), Some("lo")),
        "{net}"
    );
    assert_eq!(net["scatter_gather"].as_bool(), Some(true), "{net}");
    assert!(
        net["receiver"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{net}"
    );
}

#[test]
fn compare_over_veth_puts_sendfile_without_and_with_scatter_gather_side_by_side() {
    if !veth_possible("veth_compare") {
        return;
    }
    let dir = scratch_dir("veth-compare", env!("CARGO_TARGET_TMPDIR"));
    let r = run_json(&[
        "compare",
        "--methods",
        "sendfile,splice",
        "--net",
        "veth",
        "--size",
        "8M",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let rows: Vec<(String, Option<bool>)> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            assert_eq!(run["received"], serde_json::json!([SIZE]));
            assert_eq!(run["net"]["kind"], "veth");
            (
                run["method"].as_str().unwrap().to_owned(),
                run["net"]["scatter_gather"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("sendfile".to_owned(), Some(false)),
            ("sendfile".to_owned(), Some(true)),
            ("splice".to_owned(), Some(true)),
        ]
    );
    assert!(
        r["failed"].as_array().unwrap().is_empty(),
        "{}",
        r["failed"]
    );
    let device = r["runs"][0]["net"]["device"].as_str().unwrap();
    let pid: u32 = device
        .trim_start_matches("zcp")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(leftover_links(pid).is_empty(), "{:?}", leftover_links(pid));
}

/// Starts a veth sendfile large and slow enough (512 MiB in 4 KiB steps, SG off) to be signalled
/// while it transfers; returns once the probes are attached and the transfer process runs. The
/// VMs' scratch disk holds 1 GiB and writes its file slowly under emulation: hence the size, and
/// a wait by the clock rather than by a count of polls.
fn veth_transfer_under_way(name: &str) -> (KillOnDrop, std::path::PathBuf, Vec<u32>) {
    let dir = scratch_dir(name, env!("CARGO_TARGET_TMPDIR"));
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "sendfile",
            "--net",
            "veth",
            "--sg",
            "off",
            "--size",
            "512M",
            "--block-size",
            "4K",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let pid = guard.0.id();
    let host = format!("zcp{pid}s");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(600) {
        if !children_of(pid).is_empty()
            && !zcprof_programs_loaded(&catalog_programs()).is_empty()
            && zcp_links().contains(&host)
        {
            break;
        }
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "{name}: zcprof ended before the transfer"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        zcp_links().contains(&host),
        "{name}: {host} was never created"
    );
    let workers = children_of(pid);
    assert!(!workers.is_empty(), "{name}: no transfer process");
    (guard, dir, workers)
}

#[test]
fn ctrl_c_during_a_veth_transfer_leaves_nothing() {
    if !veth_possible("veth_ctrl_c") {
        return;
    }
    let (mut guard, dir, workers) = veth_transfer_under_way("veth-ctrlc");
    let pid = guard.0.id();
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // The pair is deleted before zcprof exits, not left to the namespace's release.
    assert!(
        leftover_links(pid).is_empty(),
        "links left: {:?}",
        leftover_links(pid)
    );
    for w in workers {
        assert!(!alive(w), "transfer process {w} still alive");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "temporary file removed"
    );
    assert!(programs_left().is_empty(), "programs still loaded");
}

#[test]
fn sigkill_during_a_veth_transfer_leaves_no_link_or_process() {
    if !veth_possible("veth_sigkill") {
        return;
    }
    let (mut guard, dir, workers) = veth_transfer_under_way("veth-kill");
    let pid = guard.0.id();
    guard.0.kill().unwrap();
    let _ = guard.0.wait();
    // Nothing ran any cleanup: the kernel frees the namespace once its last descriptor closes,
    // and with it the peer and so the host end.
    assert_eq!(
        links_left_after(pid),
        Vec::<String>::new(),
        "the namespace was not freed"
    );
    for _ in 0..500 {
        if !workers.iter().any(|&w| alive(w)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for w in workers {
        assert!(!alive(w), "transfer process {w} outlived zcprof");
    }
    assert!(programs_left().is_empty(), "programs still loaded");
    // A SIGKILL leaves the temporary file (nothing can run to remove it); the test's own.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `CAP_NET_ADMIN` the pair cannot be created; `ip`'s own reason is in the one line, and
/// nothing is left: no link, no file. Without `ip` the same, with that reason.
#[test]
fn veth_that_cannot_be_created_is_one_line_and_leaves_nothing() {
    if !veth_possible("veth_refused") {
        return;
    }
    let dir = scratch_dir("veth-refused", env!("CARGO_TARGET_TMPDIR"));
    let args = [
        "run", "--method", "sendfile", "--net", "veth", "--size", "1M", "--dir",
    ];
    let check = |mut cmd: Command, want: &str| {
        let child = cmd
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{want}: {err}");
        assert!(out.stdout.is_empty());
        assert!(leftover_links(pid).is_empty(), "{:?}", leftover_links(pid));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file");
    };
    let mut no_ip = Command::new(zcprof_bin());
    no_ip.env("PATH", "/nonexistent").args(args);
    check(no_ip, "needs the ip command");
    // util-linux's setpriv; busybox's has no --bounding-set.
    let help = Command::new("setpriv").arg("--help").output();
    if !help.is_ok_and(|h| {
        String::from_utf8_lossy(&h.stdout).contains("bounding-set")
            || String::from_utf8_lossy(&h.stderr).contains("bounding-set")
    }) {
        skip(
            "veth_refused",
            "no setpriv with --bounding-set (util-linux) to drop CAP_NET_ADMIN",
        );
        return;
    }
    // setpriv execs zcprof with its pid, so the link name still follows the spawned pid.
    let mut no_net_admin = Command::new("setpriv");
    no_net_admin
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(zcprof_bin())
        .args(args);
    check(no_net_admin, "Operation not permitted");
}

#[test]
fn output_file_keeps_the_report_apart_from_the_commands_stdout() {
    if !privileged("output_file") {
        return;
    }
    let dir = scratch_dir("output", env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("report.json");
    let out = Command::new(zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&file)
        .args(["--", "sh", "-c", "echo hello"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(calls(&r, "write") >= 1, "{}", r["syscalls_by_name"]);
    assert_eq!(r["method"], "sh", "{}", r["method"]);
}

/// A user that is not root, with only `CAP_BPF` and `CAP_PERFMON`, can measure: the syscall path's
/// hooks are raw tracepoints, which need nothing more. What needs more (tracefs, named kernel
/// symbols) is unavailable with its reason, never a wrong number.
#[test]
fn bpf_and_perfmon_capabilities_are_enough() {
    use std::os::unix::fs::PermissionsExt as _;
    if !privileged("capabilities") {
        return;
    }
    let dir = scratch_dir("caps", env!("CARGO_TARGET_TMPDIR"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // nobody must reach the binary too: a copy in the scratch directory.
    let bin = dir.join("zcprof");
    std::fs::copy(zcprof_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut parent = dir.parent();
    while let Some(p) = parent {
        if std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 == 0) {
            skip(
                "capabilities",
                &format!("{} is not searchable by other users", p.display()),
            );
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        parent = p.parent();
    }
    // util-linux's setpriv (busybox's has no --reuid).
    let util_linux = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("util-linux"));
    if !util_linux {
        skip("capabilities", "util-linux setpriv is not installed here");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+bpf,+perfmon",
            "--ambient-caps=+bpf,+perfmon",
            "--",
        ])
        .arg(&bin)
        .args([
            "run",
            "--method",
            "read-write",
            "--size",
            "4M",
            "--format",
            "json",
            "--dir",
        ])
        .arg(&dir)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            skip(
                "capabilities",
                &format!("setpriv (util-linux) cannot run here: {e}"),
            );
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 64 reads and 64 writes of 64 KiB, and the exit.
    assert_eq!(fig(&r, "syscalls"), 129, "{}", r["syscalls"]);
    let share = &r["figures"]["copy_cpu_share"];
    assert!(
        share["value"].as_f64().is_some_and(|v| v > 0.0)
            || share["note"].as_str().unwrap().contains("kallsyms"),
        "{share}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
