//! The methods beyond the note (copy-file-range, vmsplice, msg-zerocopy, io-uring,
//! io-uring-splice, io-uring-send-zc) against the real kernel: their syscalls equal what strace
//! saw of the same run, and the copy ledger shows what the kernel did with each "zero-copy"
//! request. Without root they skip, saying so on stderr.
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use zcprof_tests::{calls, fig, privileged, scratch_dir, skip, zcprof_bin};

const SIZE: u64 = 8 << 20;
const BLOCK: u64 = 64 << 10;
const STEPS: u64 = SIZE / BLOCK;

/// Runs `method` under `strace -f -ff` (one file per process), so that zcprof and strace watch
/// the same run. Returns zcprof's report and, when strace is installed, the syscalls strace saw
/// the transfer process make after it was released (the read of the go byte): zcprof's window.
fn measure_under_strace(method: &str, dir: &Path) -> (Value, Option<BTreeMap<String, u64>>) {
    let args = [
        "run",
        "--method",
        method,
        "--size",
        "8M",
        "--block-size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ];
    let traces = dir.join("strace");
    std::fs::create_dir_all(&traces).unwrap();
    let out = Command::new("strace")
        .args(["-f", "-ff", "-qq", "-o"])
        .arg(traces.join("st"))
        .arg(zcprof_bin())
        .args(args)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            // The directory for its files must not be left for the tests that check that the
            // scratch directory is empty afterwards.
            let _ = std::fs::remove_dir_all(&traces);
            skip(
                &format!("{method} strace comparison"),
                &format!("strace cannot run: {e}"),
            );
            let out = zcprof_tests::run(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return (serde_json::from_slice(&out.stdout).expect("JSON"), None);
        }
    };
    assert!(
        out.status.success(),
        "zcprof {args:?} under strace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let seen = transfer_calls(&traces);
    let _ = std::fs::remove_dir_all(&traces);
    (report, Some(seen))
}

/// The syscalls of the `__transfer` process's strace file after it read its go byte.
fn transfer_calls(traces: &Path) -> BTreeMap<String, u64> {
    for entry in std::fs::read_dir(traces).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if !text.contains("\"__transfer\"") {
            continue;
        }
        let mut calls = BTreeMap::new();
        let mut released = false;
        for line in text.lines() {
            if line.starts_with("+++") || line.starts_with("---") {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if released && !name.is_empty() {
                *calls.entry(name).or_default() += 1;
            } else if line.starts_with("read(0, \"g\"") {
                released = true;
            }
        }
        assert!(released, "the transfer process never read its go byte");
        return calls;
    }
    panic!("strace saw no __transfer process");
}

/// The ledger's bytes on `path`.
fn path_bytes(r: &Value, path: &str) -> u64 {
    r["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["path"] == path && p["contradicted"] == false)
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum()
}

/// zcprof's syscall counts equal strace's for the same run, call for call.
fn check_strace(method: &str, r: &Value, strace: Option<&BTreeMap<String, u64>>) {
    let method_calls: BTreeMap<String, u64> = r["syscalls_by_name"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    if let Some(strace) = strace {
        assert_eq!(&method_calls, strace, "{method}: zcprof vs strace -f");
    }
}

/// Facts of every run: the bytes arrived, every syscall but `exit_group` returned.
fn check_common(r: &Value) {
    let method = r["method"].as_str().unwrap();
    let received = r["received"].as_array().unwrap();
    assert!(!received.is_empty(), "{method}: nothing verified");
    for got in received {
        assert_eq!(got.as_u64(), Some(SIZE), "{method}: bytes delivered");
    }
    assert_eq!(calls(r, "exit_group"), 1, "{method}: one exit_group");
    let entries = fig(r, "syscalls");
    assert_eq!(fig(r, "mode_switches"), 2 * entries - 1, "{method}");
    assert_eq!(r["transfers"].as_u64(), Some(STEPS));
    assert_eq!(r["textbook"]["cpu_copies"], Value::Null, "{method}: no row");
}

#[test]
fn copy_file_range_copies_page_cache_to_page_cache_on_ext4() {
    if !privileged("copy_file_range") {
        return;
    }
    let dir = scratch_dir("m-cfr", env!("CARGO_TARGET_TMPDIR"));
    let (r, strace) = measure_under_strace("copy-file-range", &dir);
    check_common(&r);
    check_strace("copy-file-range", &r, strace.as_ref());
    assert_eq!(calls(&r, "copy_file_range"), STEPS);
    assert_eq!(fig(&r, "in_kernel_bytes"), SIZE);
    assert_eq!(fig(&r, "user_buffer_copy_bytes"), 0);
    assert_eq!(r["net"], Value::Null, "a file, not a socket");
    assert_eq!(r["receiver_copies"].as_array().unwrap().len(), 0);
    if zcprof_tests::filesystem_of(&dir) == "ext4" {
        let pc = path_bytes(&r, "page cache -> page cache");
        assert!(
            (SIZE..=SIZE + SIZE / 100).contains(&pc),
            "page cache -> page cache {pc} of {SIZE}: {}",
            r["copies"]
        );
        assert_eq!(fig(&r, "cpu_copy_bytes"), pc, "the only copy");
    } else {
        skip(
            "copy_file_range ledger",
            "the scratch directory is not on ext4",
        );
    }
    // The source and the destination are gone.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn vmsplice_sends_user_pages_without_a_copy() {
    if !privileged("vmsplice") {
        return;
    }
    let dir = scratch_dir("m-vmsplice", env!("CARGO_TARGET_TMPDIR"));
    let (r, strace) = measure_under_strace("vmsplice", &dir);
    check_common(&r);
    check_strace("vmsplice", &r, strace.as_ref());
    assert_eq!(calls(&r, "vmsplice"), STEPS, "{}", r["syscalls_by_name"]);
    assert!(calls(&r, "splice") >= STEPS);
    assert_eq!(calls(&r, "read") + calls(&r, "write"), 0);
    // Loopback has scatter-gather: the pages go by reference all the way.
    assert_eq!(fig(&r, "cpu_copy_bytes"), 0, "{}", r["copies"]);
    // Into the pipe (vmsplice) and out (splice): payload once where it leaves, where splice's
    // output could be classified.
    let once = r["descriptors"]["classified"] == true;
    assert_eq!(
        fig(&r, "in_kernel_bytes"),
        if once { SIZE } else { 2 * SIZE },
        "{}",
        r["descriptors"]
    );
}

#[test]
fn msg_zerocopy_on_loopback_is_copied_and_the_kernel_says_so() {
    if !privileged("msg_zerocopy") {
        return;
    }
    let dir = scratch_dir("m-zerocopy", env!("CARGO_TARGET_TMPDIR"));
    let (r, strace) = measure_under_strace("msg-zerocopy", &dir);
    check_common(&r);
    check_strace("msg-zerocopy", &r, strace.as_ref());
    let v = &r["zerocopy"];
    let sends = v["sends"].as_u64().unwrap();
    assert_eq!(
        calls(&r, "sendto"),
        sends,
        "one completion id per send: {v}"
    );
    assert!(sends >= STEPS, "{v}");
    assert_eq!(v["completed"].as_u64(), Some(sends), "every send completed");
    // Local delivery: the kernel copies the pinned pages anyway and says so in every
    // completion (Documentation/networking/msg_zerocopy.rst, "Loopback").
    assert_eq!(v["copied"].as_u64(), Some(sends), "verdict: {v}");
    assert_eq!(v["copied_bytes"].as_u64(), Some(SIZE), "{v}");
    assert_eq!(v["zerocopy_bytes"].as_u64(), Some(0), "{v}");
    // At least one recvmsg(MSG_ERRQUEUE) read a notification.
    assert!(calls(&r, "recvmsg") >= v["notifications"].as_u64().unwrap());
    // The ledger shows the copy: about one per byte, on the MSG_ZEROCOPY path, and no plain
    // user -> socket copy (the socket took the pages by reference).
    let zc = path_bytes(
        &r,
        "user buffer -> socket buffer (MSG_ZEROCOPY, copied after all)",
    );
    assert_eq!(zc, SIZE, "{}", r["copies"]);
    assert_eq!(path_bytes(&r, "user buffer -> socket buffer"), 0);
    assert_eq!(fig(&r, "cpu_copy_bytes"), SIZE);
    let notes = r["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("SO_EE_CODE_ZEROCOPY_COPIED")),
        "the verdict is in a note: {notes:?}"
    );
}

#[test]
fn msg_zerocopy_over_veth_to_another_namespace_is_copied_too() {
    if !privileged("msg_zerocopy_veth") {
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        skip("msg_zerocopy_veth", "ip (iproute2) is not installed");
        return;
    }
    let dir = scratch_dir("m-zerocopy-veth", env!("CARGO_TARGET_TMPDIR"));
    let out = zcprof_tests::run(&[
        "run",
        "--method",
        "msg-zerocopy",
        "--net",
        "veth",
        "--size",
        "8M",
        "--block-size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    check_common(&r);
    assert_eq!(r["net"]["kind"], "veth");
    // The far end is another namespace of this host: still local delivery, still copied.
    let v = &r["zerocopy"];
    assert_eq!(v["copied"], v["sends"], "{v}");
    assert_eq!(v["copied_bytes"].as_u64(), Some(SIZE), "{v}");
    assert_eq!(fig(&r, "cpu_copy_bytes"), SIZE, "{}", r["copies"]);
}

/// Kills zcprof if the test fails midway.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_during_copy_file_range_removes_the_destination_too() {
    if !privileged("ctrl_c_copy_file_range") {
        return;
    }
    let dir = scratch_dir("m-cfr-ctrlc", env!("CARGO_TARGET_TMPDIR"));
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "copy-file-range",
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
    // The destination exists once the transfer process is being started. Both files have no
    // name: they show as zcprof's descriptors of files in the directory.
    let pid = guard.0.id();
    let has_copy = || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&dir)))
                .count()
                >= 2
        })
    };
    while !has_copy() {
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "zcprof ended before the copy began"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = i32::try_from(guard.0.id()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whether this kernel lets `method` use `io_uring`: a small run, whose one-line refusal (the
/// kernel's reason) is the skip message when it cannot.
fn io_uring_usable(method: &str, dir: &Path) -> bool {
    let out = zcprof_tests::run(&[
        "run",
        "--method",
        method,
        "--size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    if out.status.success() {
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io_uring") && err.trim().lines().count() == 1,
        "{method} failed for another reason than io_uring's refusal: {err}"
    );
    skip(method, err.trim());
    false
}

/// The `io_uring` note's count of kernel-mode samples taken in io-wq workers, and of all.
fn io_wq_samples(r: &Value) -> Option<(u64, u64)> {
    let note = r["notes"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.contains("kernel-mode samples were taken in io_uring's io-wq workers"))?;
    let mut words = note.split_whitespace();
    let workers = words.next()?.parse().ok()?;
    let all = words.nth(1)?.parse().ok()?;
    Some((workers, all))
}

/// Facts of every `io_uring` run: the window holds only `io_uring_enter` (the ring, its probe and
/// its buffer were set up before it) and `exit_group`, and the completions' own count of
/// `io_uring_enter` calls is the kernel's.
fn check_io_uring(r: &Value) {
    let method = r["method"].as_str().unwrap();
    assert_eq!(calls(r, "io_uring_setup"), 0, "{method}: set up before");
    assert_eq!(
        calls(r, "io_uring_register"),
        0,
        "{method}: registered before"
    );
    let tally = &r["io_uring"];
    assert_eq!(
        tally["enters"].as_u64(),
        Some(calls(r, "io_uring_enter")),
        "{method}: {tally}"
    );
    assert_eq!(
        fig(r, "syscalls"),
        calls(r, "io_uring_enter") + 1,
        "{method}: {}",
        r["syscalls_by_name"]
    );
    let notes = r["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("covers a batch")),
        "{method}: the batch note: {notes:?}"
    );
}

#[test]
fn io_uring_reads_into_a_registered_buffer_and_sends_from_it_copying_twice() {
    if !privileged("io_uring") {
        return;
    }
    let dir = scratch_dir("m-uring", env!("CARGO_TARGET_TMPDIR"));
    if !io_uring_usable("io-uring", &dir) {
        return;
    }
    let (r, strace) = measure_under_strace("io-uring", &dir);
    check_common(&r);
    check_strace("io-uring", &r, strace.as_ref());
    check_io_uring(&r);
    // One io_uring_enter per step submits READ_FIXED linked to SEND and reaps both.
    assert_eq!(calls(&r, "io_uring_enter"), STEPS, "{}", r["io_uring"]);
    assert_eq!(r["io_uring"]["read_bytes"].as_u64(), Some(SIZE));
    assert_eq!(r["io_uring"]["sent_bytes"].as_u64(), Some(SIZE));
    // Two CPU copies per byte over loopback: into the registered buffer, out to the socket.
    assert_eq!(
        path_bytes(&r, "page cache -> user buffer"),
        SIZE,
        "{}",
        r["copies"]
    );
    assert_eq!(
        path_bytes(&r, "user buffer -> socket buffer"),
        SIZE,
        "{}",
        r["copies"]
    );
    assert_eq!(fig(&r, "cpu_copy_bytes"), 2 * SIZE);
}

#[test]
fn io_uring_splice_copies_nothing_over_loopback_and_its_workers_are_measured() {
    if !privileged("io_uring_splice") {
        return;
    }
    let dir = scratch_dir("m-uring-splice", env!("CARGO_TARGET_TMPDIR"));
    if !io_uring_usable("io-uring-splice", &dir) {
        return;
    }
    let (r, strace) = measure_under_strace("io-uring-splice", &dir);
    check_common(&r);
    check_strace("io-uring-splice", &r, strace.as_ref());
    check_io_uring(&r);
    assert_eq!(calls(&r, "io_uring_enter"), STEPS, "{}", r["io_uring"]);
    assert_eq!(
        calls(&r, "splice"),
        0,
        "no splice syscall: {}",
        r["syscalls_by_name"]
    );
    assert_eq!(r["io_uring"]["spliced_bytes"].as_u64(), Some(SIZE));
    assert_eq!(fig(&r, "cpu_copy_bytes"), 0, "{}", r["copies"]);
    // io_uring runs splices in its io-wq workers, threads the kernel starts without a fork
    // event (since 5.12; kernel threads before): sampling (perf events inherited by them) must
    // see them as the process's.
    let release = r["kernel"].as_str().unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit());
    let version: (u32, u32) = (
        v.next().unwrap().parse().unwrap(),
        v.next().unwrap().parse().unwrap(),
    );
    match io_wq_samples(&r) {
        _ if version < (5, 12) => skip(
            "io_uring_splice io-wq samples",
            &format!("on {release} io-wq workers are kernel threads, not the process's"),
        ),
        Some((workers, all)) if all >= 20 => {
            assert!(workers > 0, "{workers} of {all} samples in io-wq workers");
        }
        other => skip(
            "io_uring_splice io-wq samples",
            &format!("too few kernel samples to tell: {other:?}"),
        ),
    }
}

#[test]
fn io_uring_send_zc_on_loopback_is_copied_and_the_kernel_says_so() {
    if !privileged("io_uring_send_zc") {
        return;
    }
    let dir = scratch_dir("m-uring-zc", env!("CARGO_TARGET_TMPDIR"));
    if !io_uring_usable("io-uring-send-zc", &dir) {
        return;
    }
    let (r, strace) = measure_under_strace("io-uring-send-zc", &dir);
    check_common(&r);
    check_strace("io-uring-send-zc", &r, strace.as_ref());
    check_io_uring(&r);
    let v = &r["zerocopy"];
    let sends = v["sends"].as_u64().unwrap();
    assert!(sends >= STEPS, "{v}");
    // One notification CQE per send, each with the usage report.
    assert_eq!(v["notifications"].as_u64(), Some(sends), "{v}");
    assert_eq!(v["completed"].as_u64(), Some(sends), "every send completed");
    // Local delivery: the kernel copied the pinned pages after all, and every notification's
    // res carries IORING_NOTIF_USAGE_ZC_COPIED.
    assert_eq!(v["copied"].as_u64(), Some(sends), "verdict: {v}");
    assert_eq!(v["copied_bytes"].as_u64(), Some(SIZE), "{v}");
    assert_eq!(v["zerocopy_bytes"].as_u64(), Some(0), "{v}");
    let zc = path_bytes(
        &r,
        "user buffer -> socket buffer (SEND_ZC, copied after all)",
    );
    assert_eq!(zc, SIZE, "{}", r["copies"]);
    assert_eq!(path_bytes(&r, "user buffer -> socket buffer"), 0);
    assert_eq!(fig(&r, "cpu_copy_bytes"), SIZE, "about one copy per byte");
    let notes = r["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("IORING_NOTIF_USAGE_ZC_COPIED")),
        "the verdict is in a note: {notes:?}"
    );
}

/// Puts `kernel.io_uring_disabled` back as it was, even when the test fails.
struct RestoreSysctl(String);

impl Drop for RestoreSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/io_uring_disabled", &self.0);
    }
}

#[test]
fn io_uring_disabled_fails_the_row_with_the_kernels_reason_and_compare_goes_on() {
    if !privileged("io_uring_disabled") {
        return;
    }
    let path = "/proc/sys/kernel/io_uring_disabled";
    let Ok(was) = std::fs::read_to_string(path) else {
        skip(
            "io_uring_disabled",
            "this kernel has no kernel.io_uring_disabled (before 6.6)",
        );
        return;
    };
    let dir = scratch_dir("m-uring-off", env!("CARGO_TARGET_TMPDIR"));
    let restore = RestoreSysctl(was);
    std::fs::write(path, "2").unwrap();
    let out = zcprof_tests::run(&[
        "compare",
        "--methods",
        "io-uring,sendfile",
        "--size",
        "1M",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    drop(restore);
    assert_eq!(out.status.code(), Some(1), "a failed row: exit 1");
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["method"], "io-uring");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("io_uring_setup") && error.contains("kernel.io_uring_disabled = 2"),
        "{error}"
    );
    assert!(!error.contains('\n'), "one line: {error}");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["method"], "sendfile", "the rest goes on");
}
