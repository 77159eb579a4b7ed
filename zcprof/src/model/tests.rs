//! The report built from faked counts: figures, notes and textbook rows.
use zcprof_common::SyscallStat;

use super::*;

/// Counts shaped like a read-write run of 1 MiB in 64 KiB steps, with the kernel boundary
/// faked: 16 reads and 16 writes of 64 KiB, then `exit_group`.
pub(crate) fn read_write_counts() -> Counts {
    let mut syscalls = BTreeMap::new();
    let block = 64 << 10;
    let stat = |count, bytes| SyscallStat {
        count,
        errors: 0,
        total_ns: 1_000 * count,
        ret_sum: bytes,
        timed: count,
        ..SyscallStat::default()
    };
    syscalls.insert(sys(libc::SYS_read), stat(16, 16 * block));
    syscalls.insert(sys(libc::SYS_write), stat(16, 16 * block));
    syscalls.insert(
        sys(libc::SYS_exit_group),
        SyscallStat {
            count: 1,
            ..SyscallStat::default()
        },
    );
    Counts {
        syscalls,
        syscall_entries: 33,
        syscall_returns: 32,
        voluntary_switches: 3,
        involuntary_switches: 1,
        first_event_ns: 1_000_000,
        last_event_ns: 2_000_000,
        ..Counts::default()
    }
}

pub(crate) fn report(method: Method, counts: &Counts, block_device: bool) -> RunReport {
    build(RunInput {
        subject: Subject::Workload(method),
        bytes: 1 << 20,
        block_size: 64 << 10,
        kernel_release: "6.18.0-test",
        plan: &HookPlan::default(),
        counts,
        received: vec![1 << 20],
        usage: Some(ChildUsage {
            voluntary_switches: 5,
            involuntary_switches: 2,
        }),
        file: Some(FileInfo {
            path: "/tmp/x".into(),
            filesystem: "ext4".into(),
            block_device,
            cache: "warm".to_owned(),
        }),
        net: None,
        remote_receiver: None,
        zerocopy: None,
        uring: None,
        devices: Devices::default(),
        unmeasured_children: Vec::new(),
    })
}

#[test]
fn read_write_figures_come_from_the_counts() {
    let r = report(Method::ReadWrite, &read_write_counts(), true);
    assert_eq!(r.transfers, 16);
    assert_eq!(r.elapsed_ns, 1_000_000);
    assert_eq!(r.figures[&FigureId::Syscalls].value, Some(33.0));
    assert_eq!(r.figures[&FigureId::ModeSwitches].value, Some(65.0));
    assert_eq!(r.figures[&FigureId::ContextSwitches].value, Some(4.0));
    assert_eq!(
        r.figures[&FigureId::CpuCopyBytes].value,
        Some(2.0 * f64::from(1 << 20))
    );
    assert_eq!(
        r.figures[&FigureId::CpuCopyBytes].per_transfer,
        Some(2.0 * f64::from(64 << 10))
    );
    assert_eq!(r.syscalls_by_name["read"], 16);
    assert_eq!(r.textbook.cpu_copies, Some(2.0));
    assert!(
        r.figures[&FigureId::CpuCopyBytes]
            .source
            .contains("syscall semantics")
    );
    assert!(
        r.figures[&FigureId::Syscalls]
            .source
            .contains("counted in the kernel")
    );
}

#[test]
fn returns_without_an_entry_and_full_tables_are_reported() {
    let mut counts = read_write_counts();
    counts.refused_syscalls = 1000;
    counts.returns_before_start = 1;
    counts.in_flight_lost = 3;
    counts.sockets_lost = 2;
    let r = report(Method::ReadWrite, &counts, true);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["accounting"]["refused_syscalls"], 1000);
    assert_eq!(v["accounting"]["returns_before_start"], 1);
    assert_eq!(v["accounting"]["in_flight_lost"], 3);
    let has = |text: &str| r.notes.iter().any(|n| n.contains(text));
    assert!(
        has("1000 syscalls were refused before entry"),
        "{:?}",
        r.notes
    );
    assert!(has("1 of syscalls in progress when measuring began"));
    assert!(has("3 syscall entries") && has("2 sockets"));
    // Nothing to say when nothing was seen.
    let quiet = report(Method::ReadWrite, &read_write_counts(), true);
    assert!(
        !quiet
            .notes
            .iter()
            .any(|n| n.contains("refused") || n.contains("tables were full")),
        "{:?}",
        quiet.notes
    );
}

/// `dd if=/dev/zero of=/dev/null`: syscall semantics alone said two copies per MiB; the
/// descriptors' kinds say none (issue 21, item 5). A pipe's bytes are copies of their own path.
#[test]
fn reads_of_dev_zero_and_writes_to_dev_null_copy_nothing_and_pipes_do() {
    use zcprof_common::FdKind;
    let mut counts = read_write_counts();
    counts.fd_bytes[FdKind::DevZero as usize][0] = 1 << 20;
    counts.fd_bytes[FdKind::DevNull as usize][1] = 1 << 20;
    let r = report(Method::ReadWrite, &counts, true);
    assert_eq!(
        r.figures[&FigureId::CpuCopyBytes].value,
        Some(0.0),
        "{:?}",
        r.copies
    );
    assert!(
        r.notes.iter().any(|n| n.contains("/dev/zero")),
        "{:?}",
        r.notes
    );

    let mut counts = read_write_counts();
    counts.fd_bytes[FdKind::Pipe as usize][0] = 1 << 20;
    counts.fd_bytes[FdKind::Pipe as usize][1] = 1 << 20;
    let r = report(Method::ReadWrite, &counts, true);
    let paths: Vec<&Route> = r.copies.iter().map(|p| &p.path).collect();
    let has = |from, to| paths.contains(&&Route::plain(from, to));
    assert!(
        has(Station::PipeBuffer, Station::UserBuffer)
            && has(Station::UserBuffer, Station::PipeBuffer)
            && !has(Station::PageCache, Station::UserBuffer),
        "{paths:?}"
    );
    assert_eq!(
        r.figures[&FigureId::CpuCopyBytes].value,
        Some(2.0 * f64::from(1 << 20))
    );
}

#[test]
fn unmeasured_figures_are_null_with_a_reason() {
    let r = report(Method::Sendfile, &read_write_counts(), true);
    let dma = &r.figures[&FigureId::DmaBytes];
    assert_eq!(dma.value, None);
    assert!(!dma.note.is_empty());
    let empty = report(Method::Sendfile, &Counts::default(), true);
    assert_eq!(empty.figures[&FigureId::ElapsedNs].value, None);
    assert!(empty.notes.iter().any(|n| n.contains("did not fire")));
}

#[test]
fn direct_io_reads_from_a_block_device_are_not_cpu_copies() {
    let disk = report(Method::DirectIo, &read_write_counts(), true);
    assert_eq!(disk.figures[&FigureId::CpuCopyToUserBytes].value, Some(0.0));
    assert_eq!(
        disk.figures[&FigureId::CpuCopyBytes].value,
        Some(f64::from(1 << 20))
    );
    let memory = report(Method::DirectIo, &read_write_counts(), false);
    assert_eq!(
        memory.figures[&FigureId::CpuCopyToUserBytes].value,
        Some(f64::from(1 << 20))
    );
    assert!(memory.notes.iter().any(|n| n.contains("no block device")));
}

#[test]
fn programs_are_measured_per_mib_of_payload() {
    let r = build(RunInput {
        subject: Subject::Program("dd".into()),
        bytes: 0,
        block_size: 0,
        kernel_release: "6.18.0-test",
        plan: &HookPlan::default(),
        counts: &read_write_counts(),
        received: Vec::new(),
        usage: None,
        file: None,
        net: None,
        remote_receiver: None,
        zerocopy: None,
        uring: None,
        devices: Devices::default(),
        unmeasured_children: Vec::new(),
    });
    assert_eq!(r.method, "dd");
    assert_eq!(r.kind, "program");
    // 1 MiB read and written: the payload is 1 MiB, one step.
    assert_eq!(r.bytes, 1 << 20);
    assert_eq!(r.block_size, PROGRAM_STEP);
    assert_eq!(r.transfers, 1);
    assert_eq!(r.textbook.cpu_copies, None);
    assert!(r.notes.iter().any(|n| n.contains("1 MiB of payload")));
}

#[test]
fn program_figures_are_per_mib_of_the_exact_payload() {
    // dd of 32 MiB and 10 KiB: read and written once each, so 2.00 copies per MiB, not
    // 1.94 (the bytes spread over 33 whole steps).
    let mut counts = read_write_counts();
    let bytes = (32 << 20) + (10 << 10);
    for nr in [sys(libc::SYS_read), sys(libc::SYS_write)] {
        counts.syscalls.get_mut(&nr).unwrap().ret_sum = bytes;
    }
    let r = build(RunInput {
        subject: Subject::Program("dd".into()),
        bytes: 0,
        block_size: 0,
        kernel_release: "6.18.0-test",
        plan: &HookPlan::default(),
        counts: &counts,
        received: Vec::new(),
        usage: None,
        file: None,
        net: None,
        remote_receiver: None,
        zerocopy: None,
        uring: None,
        devices: Devices::default(),
        unmeasured_children: Vec::new(),
    });
    let per_mib = r.figures[&FigureId::CpuCopyBytes].per_transfer.unwrap();
    assert!(
        (per_mib - 2.0 * f64::from(1 << 20)).abs() < 1.0,
        "{per_mib}"
    );
    let step = r.copies[0].per_transfer.unwrap();
    assert!((step - f64::from(1 << 20)).abs() < 1.0, "{step}");
}

#[test]
fn json_contract() {
    let r = report(Method::ReadWrite, &read_write_counts(), true);
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "method",
        "bytes",
        "block_size",
        "transfers",
        "elapsed_ns",
        "kernel",
        "syscalls_by_name",
        "figures",
        "textbook",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["method"], "read-write");
    for key in [
        "syscalls",
        "mode_switches",
        "context_switches",
        "cpu_copy_bytes",
        "dma_bytes",
    ] {
        let f = &v["figures"][key];
        for field in ["value", "per_transfer", "source", "note"] {
            assert!(f.get(field).is_some(), "{key} lacks {field}");
        }
    }
    assert_eq!(v["accounting"]["refused_syscalls"], 0);
    // Whole numbers are integers in JSON, not 33.0.
    assert_eq!(v["figures"]["syscalls"]["value"], serde_json::json!(33));
    assert!(v["figures"]["dma_bytes"]["value"].is_null());
}

/// A syscall number of this architecture as the maps key it.
fn sys(n: libc::c_long) -> u32 {
    u32::try_from(n).expect("a syscall number")
}
