//! Privileged tests: load the real eBPF programs, run every method, and assert facts the kernel
//! must show. Without root they skip, saying so on stderr.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use zcprof_tests::{
    privileged, run, run_json, scratch_dir, skip, zcprof_bin, zcprof_programs_loaded,
};

const SIZE: u64 = 8 << 20;
const BLOCK: u64 = 64 << 10;
const STEPS: u64 = SIZE / BLOCK;
/// Program names of the catalog (zcprof/src/probes/catalog.rs).
const PROGRAMS: [&str; 26] = [
    "tcp_sendmsg_fexit",
    "tcp_sendmsg_kretprobe",
    "sock_send_length_tracepoint",
    "dma_map_phys_tracepoint",
    "dma_map_page_tracepoint",
    "dma_map_sg_tracepoint",
    "filemap_read_fexit",
    "filemap_read_kretprobe",
    "copy_to_iter_fexit",
    "copy_to_iter_kretprobe",
    "copy_from_iter_fexit",
    "copy_from_iter_kretprobe",
    "copy_sample_perf_event",
    "page_fault_user_raw_tp",
    "page_fault_user_tracepoint",
    "page_fault_kernel_raw_tp",
    "page_fault_kernel_tracepoint",
    "block_rq_issue_tracepoint",
    "net_dev_xmit_tracepoint",
    "sys_enter_raw_tp",
    "sys_enter_tracepoint",
    "sys_exit_raw_tp",
    "sys_exit_tracepoint",
    "sched_switch_tp_btf",
    "sched_switch_raw_tp",
    "sched_switch_tracepoint",
];

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

fn calls(r: &Value, name: &str) -> u64 {
    r["syscalls_by_name"]
        .get(name)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn fig(r: &Value, key: &str) -> u64 {
    r["figures"][key]["value"]
        .as_u64()
        .unwrap_or_else(|| panic!("figure {key} is not a whole number: {}", r["figures"][key]))
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
    // Every byte crosses the pipe twice: file -> pipe, pipe -> socket.
    assert_eq!(fig(&r, "in_kernel_bytes"), 2 * SIZE);
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
    let d = run_json(&[
        "compare",
        "--size",
        "4M",
        "--block-size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
    ]);
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
        let left = zcprof_programs_loaded(&PROGRAMS);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    zcprof_programs_loaded(&PROGRAMS)
}

/// Kills zcprof if the test fails midway, so one failure does not leave programs for the next.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctrl_c_during(stage: &str, wait_for: impl Fn(u32, &Path) -> bool) {
    let dir = scratch_dir(&format!("ctrlc-{stage}"), env!("CARGO_TARGET_TMPDIR"));
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
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{stage}: exit status; stderr: {err}"
    );
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "{stage}: temporary file removed"
    );
    for w in workers {
        assert!(!alive(w), "{stage}: transfer process {w} still alive");
    }
    assert!(programs_left().is_empty(), "{stage}: programs still loaded");
}

#[test]
fn ctrl_c_while_writing_the_file_leaves_nothing() {
    if !privileged("ctrl_c_file") {
        return;
    }
    ctrl_c_during("file", |_, dir| std::fs::read_dir(dir).unwrap().count() > 0);
}

#[test]
fn ctrl_c_during_the_transfer_leaves_nothing() {
    if !privileged("ctrl_c_transfer") {
        return;
    }
    // Wait until the probes are really attached, which also proves the leftover check can see
    // zcprof's programs at all.
    ctrl_c_during("transfer", |pid, _| {
        !children_of(pid).is_empty() && !zcprof_programs_loaded(&PROGRAMS).is_empty()
    });
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
    assert_eq!(hooks, ["fexit", "kretprobe"]);
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
/// ZCPROF_EXPECT_HOOKED=1 on kernels where it must be there.
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
        note.contains("filemap_read") || note.contains("tcp_sendmsg"),
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
