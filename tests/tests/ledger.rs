//! The copy ledger against the real kernel: every CPU copy of payload, kernel-internal ones
//! included, by path. Without root these tests skip, saying so on stderr.
use std::path::Path;

use serde_json::Value;
use zcprof_tests::{data_file, filesystem_of, privileged, run, run_json, scratch_dir, skip};

const SIZE: u64 = 8 << 20;
const BLOCK: u64 = 64 << 10;

fn measure(method: &str, dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--method",
        method,
        "--size",
        "8M",
        "--block-size",
        "64K",
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend(extra);
    run_json(&args)
}

/// The ledger's entry for `path`, if any bytes were copied on it.
fn path<'a>(r: &'a Value, path: &str) -> Option<&'a Value> {
    r["copies"]
        .as_array()
        .expect("copies is a list")
        .iter()
        .find(|p| p["path"] == path)
}

fn path_bytes(r: &Value, name: &str) -> u64 {
    path(r, name).map_or(0, |p| p["bytes"].as_u64().unwrap())
}

/// CPU copies per step, in blocks.
#[expect(clippy::cast_precision_loss, reason = "a ratio")]
fn copies_per_step(r: &Value) -> f64 {
    r["figures"]["cpu_copy_bytes"]["per_transfer"]
        .as_f64()
        .unwrap()
        / BLOCK as f64
}

/// Whether the hook behind a measured path was attached on this kernel (else: why not).
fn attached(r: &Value, point: &str) -> Result<(), String> {
    let hook = r["hooks"][point].as_str().unwrap_or("");
    if hook.contains("not attached") {
        Err(format!("{point}: {hook}"))
    } else {
        Ok(())
    }
}

/// The ledger's invariants on every run: the figure is the sum of the uncontradicted paths, and
/// every path says how it was measured.
fn check_ledger(r: &Value) {
    let copies = r["copies"].as_array().unwrap();
    let sum: u64 = copies
        .iter()
        .filter(|p| p["contradicted"] == false)
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        r["figures"]["cpu_copy_bytes"]["value"].as_u64(),
        Some(sum),
        "cpu_copy_bytes is the ledger's sum: {copies:?}"
    );
    for p in copies {
        assert!(p["source"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
        assert!(
            matches!(
                p["evidence"].as_str(),
                Some("measured" | "derived" | "unverified" | "contradicted")
            ),
            "{p}"
        );
        assert_eq!(
            p["evidence"] == "contradicted",
            p["contradicted"] == true,
            "{p}"
        );
    }
}

/// The receiver's socket -> user copy, shown apart from the sender's.
fn receiver_bytes(r: &Value) -> Option<u64> {
    r["receiver_copies"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|p| p["bytes"].as_u64())
}

#[test]
fn read_write_copies_twice_and_the_receiver_once_apart() {
    if !privileged("ledger_read_write") {
        return;
    }
    let dir = scratch_dir("ledger-rw", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("read-write", &dir, &[]);
    check_ledger(&r);
    let per_step = copies_per_step(&r);
    assert!(
        (per_step - 2.0).abs() < 0.02,
        "read-write: {per_step} copies per step"
    );
    assert_eq!(path_bytes(&r, "page cache -> user buffer"), SIZE);
    match attached(&r, "sock_send") {
        Ok(()) => {
            let p = path(&r, "user buffer -> socket buffer").expect("user -> socket path");
            assert_eq!(p["bytes"].as_u64(), Some(SIZE));
            assert_eq!(p["evidence"], "measured");
        }
        Err(why) => skip("ledger_read_write socket path", &why),
    }
    match attached(&r, "skb_copy_datagram") {
        Ok(()) => assert_eq!(receiver_bytes(&r), Some(SIZE), "{}", r["receiver_copies"]),
        Err(why) => skip("ledger_read_write receiver", &why),
    }
    // Loopback has scatter-gather: nothing is copied again into packets.
    assert_eq!(path_bytes(&r, "socket buffer -> packet (segmentation)"), 0);
}

#[test]
fn mmap_write_copies_once_from_the_mapping() {
    if !privileged("ledger_mmap") {
        return;
    }
    let dir = scratch_dir("ledger-mmap", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("mmap-write", &dir, &[]);
    check_ledger(&r);
    let per_step = copies_per_step(&r);
    assert!((per_step - 1.0).abs() < 0.02, "mmap-write: {per_step}");
    if attached(&r, "sock_send").is_ok() {
        assert_eq!(path_bytes(&r, "mapped page cache -> socket buffer"), SIZE);
    }
    assert_eq!(path_bytes(&r, "page cache -> user buffer"), 0);
}

#[test]
fn direct_io_copies_only_into_the_socket() {
    if !privileged("ledger_direct_io") {
        return;
    }
    let dir = scratch_dir("ledger-dio", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("direct-io", &dir, &[]);
    check_ledger(&r);
    let per_step = copies_per_step(&r);
    if r["file"]["block_device"].as_bool().unwrap() {
        assert!((per_step - 1.0).abs() < 0.02, "direct-io: {per_step}");
    } else {
        skip(
            "ledger_direct_io one-copy check",
            "the scratch directory has no block device: O_DIRECT reads are CPU copies there",
        );
        assert!(
            (per_step - 2.0).abs() < 0.02,
            "direct-io from memory: {per_step}"
        );
    }
}

#[test]
fn sendfile_splice_and_tee_over_loopback_copy_nothing() {
    if !privileged("ledger_loopback") {
        return;
    }
    let dir = scratch_dir("ledger-lo", env!("CARGO_TARGET_TMPDIR"));
    for method in ["sendfile", "splice", "tee"] {
        let r = measure(method, &dir, &[]);
        check_ledger(&r);
        let per_step = copies_per_step(&r);
        assert!(per_step <= 0.05, "{method}: {per_step} copies per step");
        if let Err(why) = attached(&r, "net_dev_start_xmit") {
            skip("ledger_loopback packet check", &why);
            continue;
        }
        assert_eq!(path_bytes(&r, "page cache -> socket buffer"), 0, "{method}");
        // The receiver still copies every byte out of its socket; tee has two receivers. A
        // program run the kernel skipped (counted in `programs_skipped`: on 7.2, with lazy
        // preemption, a preempted program makes the kernel skip it for others on the CPU) misses
        // one copy of at most 64 KiB; none may go missing otherwise.
        if attached(&r, "skb_copy_datagram").is_ok() {
            let streams = if method == "tee" { 2 } else { 1 };
            let got = receiver_bytes(&r).unwrap_or(0);
            let missed = skipped(&r, "skb_copy_datagram") * (64 << 10);
            assert!(
                got <= streams * SIZE && got + missed >= streams * SIZE,
                "{method}: the receiver copied {got} of {} bytes ({missed} bytes of skipped \
                 runs allowed): {}",
                streams * SIZE,
                r["accounting"]
            );
        }
    }
}

/// The runs of the programs whose names start with `program` that the kernel skipped.
fn skipped(r: &Value, program: &str) -> u64 {
    r["accounting"]["programs_skipped"]
        .as_object()
        .map_or(0, |m| {
            m.iter()
                .filter(|(name, _)| name.starts_with(program))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
}

fn exec_json(args: &[&str]) -> Value {
    let mut all = vec!["exec", "--format", "json", "--"];
    all.extend(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "zcprof {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// This test executable as a workload, under `zcprof exec` (it exists wherever the tests run,
/// the VMs included, where cp is busybox's and copies through a buffer).
#[test]
fn workload() {
    let Ok(name) = std::env::var("ZCPROF_TEST_WORKLOAD") else {
        return;
    };
    let from = std::env::var("ZCPROF_TEST_FROM").unwrap();
    if name == "direct-reads" {
        direct_reads(&from);
        return;
    }
    let to = std::env::var("ZCPROF_TEST_TO").unwrap();
    assert_eq!(name, "copy-file-range");
    let src = std::fs::File::open(from).unwrap();
    let dst = std::fs::File::create(to).unwrap();
    let mut left = src.metadata().unwrap().len();
    while left > 0 {
        use std::os::fd::AsRawFd as _;
        // SAFETY: null offsets: the file positions advance.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                usize::try_from(left).unwrap(),
                0,
            )
        };
        assert!(
            n > 0,
            "copy_file_range: {}",
            std::io::Error::last_os_error()
        );
        left -= u64::try_from(n).unwrap();
    }
}

/// Reads `path` with `O_DIRECT` in 32 KiB blocks, as nginx does with `directio`.
fn direct_reads(path: &str) {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(32 << 10, 4096).unwrap();
    // SAFETY: non-zero size; freed below.
    let buf = unsafe { std::alloc::alloc(layout) };
    let mut offset = 0i64;
    loop {
        // SAFETY: buf is valid for layout.size() bytes.
        let n = unsafe { libc::pread(file.as_raw_fd(), buf.cast(), layout.size(), offset) };
        assert!(n >= 0, "pread: {}", std::io::Error::last_os_error());
        if n == 0 {
            break;
        }
        offset += i64::try_from(n).unwrap();
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
}

/// This executable as the workload `name` under `zcprof exec`, with `from` (and `to`).
fn workload_under_zcprof(name: &str, from: &Path, to: &Path) -> Value {
    zcprof_tests::exec_self(
        module_path!(),
        name,
        &[("ZCPROF_TEST_FROM", from), ("ZCPROF_TEST_TO", to)],
        &[],
        &to.with_extension("json"),
    )
}

#[test]
fn o_direct_reads_of_any_program_are_not_page_cache_copies() {
    if !privileged("ledger_o_direct") {
        return;
    }
    let dir = scratch_dir("ledger-odirect", env!("CARGO_TARGET_TMPDIR"));
    let fs = filesystem_of(&dir);
    if !matches!(fs.as_str(), "ext4" | "xfs" | "btrfs") {
        skip(
            "ledger_o_direct",
            &format!("the scratch directory is on {fs}, which does O_DIRECT through memory"),
        );
        return;
    }
    let file = data_file(&dir, SIZE);
    let r = workload_under_zcprof("direct-reads", &file, &dir.join("direct"));
    check_ledger(&r);
    if let Err(why) = attached(&r, "iomap_dio_complete") {
        skip("ledger_o_direct", &why);
        return;
    }
    let read: u64 = r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "pread64")
        .map(|s| s["bytes"].as_u64().unwrap_or(0))
        .sum();
    // The file, and a few KiB the test binary reads of itself.
    assert!(
        (SIZE..SIZE + SIZE / 100).contains(&read),
        "{read}: {}",
        r["syscalls_by_name"]
    );
    // The device wrote every byte into the user buffer: no page cache -> user copy for them
    // (a few KiB of the test binary's own reads may remain).
    let copied = path_bytes(&r, "page cache -> user buffer");
    assert!(
        copied < SIZE / 20,
        "O_DIRECT reads counted as copies: {copied}"
    );
}

/// ext4 has no reflink: `copy_file_range` copies every byte from page cache to page cache.
fn assert_page_cache_copy(r: &Value, test: &str) {
    check_ledger(r);
    if let Err(why) = attached(r, "ext4_da_write_end") {
        skip(test, &why);
        return;
    }
    let p = path(r, "page cache -> page cache").expect("a page cache -> page cache path");
    let bytes = p["bytes"].as_u64().unwrap();
    assert!(
        (SIZE..=SIZE + SIZE / 100).contains(&bytes),
        "{test}: page cache -> page cache: {bytes} of {SIZE}"
    );
    assert_eq!(p["evidence"], "measured");
}

#[test]
fn copy_file_range_on_ext4_copies_page_cache_to_page_cache() {
    if !privileged("ledger_copy_file_range") {
        return;
    }
    let dir = scratch_dir("ledger-cfr", env!("CARGO_TARGET_TMPDIR"));
    let fs = filesystem_of(&dir);
    if fs != "ext4" {
        skip(
            "ledger_copy_file_range",
            &format!("the scratch directory is on {fs}, not ext4"),
        );
        return;
    }
    let file = data_file(&dir, SIZE);
    let copy = dir.join("copy.bin");
    let r = workload_under_zcprof("copy-file-range", &file, &copy);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());
    assert_page_cache_copy(&r, "ledger_copy_file_range");

    // The same through the installed cp, where it uses copy_file_range (coreutils does).
    let copy = dir.join("cp.bin");
    let r = exec_json(&["cp", file.to_str().unwrap(), copy.to_str().unwrap()]);
    let uses_cfr = r["syscalls_by_name"]
        .get("copy_file_range")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 0);
    if uses_cfr {
        assert_page_cache_copy(&r, "ledger_cp");
    } else {
        skip(
            "ledger_cp",
            &format!("this cp copies with {}", r["syscalls_by_name"]),
        );
    }
}

#[test]
fn derived_copies_that_sampling_contradicts_are_not_counted() {
    if !privileged("ledger_dd_zero") {
        return;
    }
    // /dev/zero fills dd's buffer without copying, /dev/null discards without copying: syscall
    // semantics says 2 copies per MiB, the kernel makes none.
    let r = exec_json(&["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=4000"]);
    check_ledger(&r);
    if r["descriptors"]["classified"] == true {
        // The descriptors' kinds already say it (tests/attribution.rs): /dev/zero and /dev/null
        // have no copy path; what is left is the loader reading library headers.
        assert!(
            r["figures"]["cpu_copy_bytes"]["value"].as_u64() < Some(64 << 10),
            "{}",
            r["copies"]
        );
        return;
    }
    let samples = r["copies"]
        .as_array()
        .unwrap()
        .first()
        .and_then(|p| p["samples"].as_u64());
    let kernel = r["figures"]["copy_cpu_share"]["note"]
        .as_str()
        .unwrap_or("");
    let Some(p) = path(&r, "page cache -> user buffer") else {
        // filemap_read hooked: nothing was read from the page cache at all.
        assert_eq!(r["figures"]["cpu_copy_bytes"]["value"].as_u64(), Some(0));
        return;
    };
    if p["evidence"] == "measured" {
        assert_eq!(p["bytes"].as_u64(), Some(0));
        return;
    }
    if !p["contradicted"].as_bool().unwrap() {
        skip(
            "ledger_dd_zero",
            &format!("too few kernel samples to contradict ({samples:?}; {kernel})"),
        );
        return;
    }
    assert_eq!(r["figures"]["cpu_copy_bytes"]["value"].as_u64(), Some(0));
    assert!(p["note"].as_str().unwrap().contains("CONTRADICTED"));
}

/// Whether `--net veth` works here (no veth module, no `CAP_NET_ADMIN`, no `ip`: a loud skip).
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
    if out.status.success() {
        return true;
    }
    skip(
        test,
        &format!(
            "--net veth does not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    );
    false
}

#[test]
fn sendfile_and_splice_copy_every_page_without_scatter_gather_and_none_with_it() {
    if !privileged("ledger_veth") {
        return;
    }
    let dir = scratch_dir("ledger-veth", env!("CARGO_TARGET_TMPDIR"));
    if !veth_or_skip("ledger_veth", &dir) {
        return;
    }
    for method in ["sendfile", "splice"] {
        let off = measure(method, &dir, &["--net", "veth", "--sg", "off"]);
        check_ledger(&off);
        assert_eq!(off["net"]["scatter_gather"], false, "{}", off["net"]);
        if let Err(why) = attached(&off, "net_dev_start_xmit") {
            skip("ledger_veth", &why);
            return;
        }
        // Software segmentation copies every page into linear packet data: the note's one CPU
        // copy page cache -> socket buffer.
        let per_step = copies_per_step(&off);
        assert!(
            (0.9..=1.1).contains(&per_step),
            "{method} SG off: {per_step} copies per step: {}",
            off["copies"]
        );
        let p = path(&off, "page cache -> socket buffer").expect("page cache -> socket path");
        assert_eq!(p["evidence"], "measured");
        assert!(p["source"].as_str().unwrap().contains("net_dev_start_xmit"));
        if method == "sendfile" {
            assert_eq!(off["textbook"]["cpu_copies"], 1.0, "the plain sendfile row");
        }

        let on = measure(method, &dir, &["--net", "veth", "--sg", "on"]);
        check_ledger(&on);
        assert_eq!(on["net"]["scatter_gather"], true);
        let per_step = copies_per_step(&on);
        assert!(
            per_step <= 0.05,
            "{method} SG on: {per_step}: {}",
            on["copies"]
        );
        if method == "sendfile" {
            assert_eq!(
                on["textbook"]["cpu_copies"], 0.0,
                "the sendfile + SG-DMA row"
            );
        }
    }
}

#[test]
fn read_write_without_scatter_gather_copies_a_third_time() {
    if !privileged("ledger_veth_rw") {
        return;
    }
    let dir = scratch_dir("ledger-veth-rw", env!("CARGO_TARGET_TMPDIR"));
    if !veth_or_skip("ledger_veth_rw", &dir) {
        return;
    }
    let r = measure("read-write", &dir, &["--net", "veth", "--sg", "off"]);
    check_ledger(&r);
    if let Err(why) = attached(&r, "net_dev_start_xmit") {
        skip("ledger_veth_rw", &why);
        return;
    }
    // write() copies into the socket's page fragments; without scatter-gather segmentation
    // copies the same bytes again into linear packet data.
    let again = path_bytes(&r, "socket buffer -> packet (segmentation)");
    assert!(
        (SIZE..=SIZE + SIZE / 20).contains(&again),
        "segmentation copied {again} of {SIZE}"
    );
    let per_step = copies_per_step(&r);
    assert!(
        (2.9..=3.1).contains(&per_step),
        "read-write SG off: {per_step}"
    );
}
